"""The studio web application (FastAPI + server-rendered Jinja pages + a little vanilla JavaScript).

``create_app(db_url, admin_token)`` opens the database (running the migrations), and wires pages,
the JSON API, static files, security headers, a request-body size limit and error pages: every
error is a clear 4xx page (HTML) or ``{"error": ...}`` (API), never a stack trace.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhfkit.data.records import DataError
from rlhfkit.feedback import service
from rlhfkit.feedback.db import Database, open_database
from rlhfkit.feedback.schemas import InvalidInput
from rlhfkit.feedback.security import Signer, install_log_redaction
from rlhfkit.feedback.web import AuthError, BodyTooLarge, render, wants_json

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MAX_BODY = 256 * 1024  # labels, logins, JSON API calls
MAX_UPLOAD = 32 * 1024 * 1024  # admin imports
ADMIN_ENV = "RLHFKIT_STUDIO_ADMIN_TOKEN"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"), (b"content-security-policy", CSP.encode())]


class LimitsAndHeaders:
    """ASGI middleware: security headers on every response (errors included), bodies over the
    limit refused (413), and ``HEAD`` answered like ``GET`` without the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = scope.get("method") == "HEAD"
        if head:
            scope = dict(scope, method="GET")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            elif head and message["type"] == "http.response.body":
                message = dict(message, body=b"")
            await send(message)

        path = scope.get("path", "")
        limit = MAX_UPLOAD if path.startswith(("/admin/", "/api/admin/")) else MAX_BODY
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > limit):
            response = JSONResponse({"error": f"request body too large (limit {limit} bytes)"},
                                    status_code=413)
            return await response(scope, receive, send_with_headers)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send_with_headers)


def _error(request: Request, status: int, message: str):
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return render(request, "error.html", status=status, status_code=status, message=message)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(service.StudioError)
    async def _studio(request: Request, err: service.StudioError):
        return _error(request, err.status, err.message)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, err: AuthError):
        return _error(request, err.status, err.message)

    @app.exception_handler(DataError)
    async def _data(request: Request, err: DataError):
        return _error(request, 422, str(err))

    @app.exception_handler(InvalidInput)
    async def _invalid_input(request: Request, err: InvalidInput):
        return _error(request, 422, str(err))

    @app.exception_handler(BodyTooLarge)
    async def _large(request: Request, _err: BodyTooLarge):
        return _error(request, 413, "request body too large")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body", "path"))
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return _error(request, 422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        return _error(request, err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception):  # pragma: no cover - a bug if reached
        log.exception("unhandled error on %s", request.url.path)
        return _error(request, 500, "internal error (logged on the server)")


def _fmt(value) -> str:
    """Statistics on pages: 3 decimals, ``n/a`` when undefined."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def create_app(db: str | Database, admin_token: str, secure_cookies: bool = False,
               base_url: str = DEFAULT_BASE_URL) -> FastAPI:
    """Build the app. ``db``: URL / SQLite path (migrated now) or an open Database; ``base_url``:
    the public address login links are built from (never the request's Host header)."""
    if not isinstance(admin_token, str) or len(admin_token) < 16:
        raise ValueError("the admin token must be at least 16 characters")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"the base URL must start with http:// or https://, got {base_url!r}")
    install_log_redaction()
    database = db if isinstance(db, Database) else open_database(db)
    app = FastAPI(title="rlhfkit feedback studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = database
    app.state.signer = Signer(database.secret())
    app.state.admin_hash = service.hash_token(admin_token)
    app.state.secure_cookies = secure_cookies
    app.state.base_url = base_url.rstrip("/")
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates.env.globals["candidate_letter"] = lambda i: "ABCDEFGHIJKLMNOP"[i]
    app.state.templates.env.globals["fmt"] = _fmt
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from rlhfkit.feedback import api, pages

    app.include_router(pages.router)
    app.include_router(api.router)

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    _install_errors(app)
    app.add_middleware(LimitsAndHeaders)
    return app


class BackgroundServer:
    """Run the app with uvicorn in a daemon thread on a free loopback port (tests, notebooks).

    ``with BackgroundServer(app) as url: ...`` -- the server is up when the block starts and is
    shut down (in-flight requests finished) when it ends.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self._server = self._thread = None

    def start(self, timeout: float = 20.0) -> str:
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="off",
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True, name="studio-server")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the studio server did not start")
            time.sleep(0.02)
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
