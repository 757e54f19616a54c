"""Request helpers shared by the HTML pages and the JSON API: who is asking, CSRF, rendering.

Credentials: ``Authorization: Bearer <token>`` (admin token or an annotator's token; used by
scripts and the API, never sent by a browser on its own, so no CSRF check) or the signed session
cookie set by ``/login`` (browsers; every state-changing request must carry the CSRF token, as
the ``csrf_token`` form field or the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback import service
from rlhfkit.feedback.security import SESSION_COOKIE, fingerprint


class AuthError(Exception):
    """401 (no valid credential) or 403 (valid credential, wrong role / bad CSRF token)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


class BodyTooLarge(Exception):
    pass


@dataclass
class User:
    role: str  # "admin" | "annotator"
    id: int
    name: str
    via: str  # "bearer" | "cookie"
    session_raw: str | None = None


def _lookup(request: Request) -> User | None:
    st = request.app.state
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if hmac.compare_digest(service.hash_token(token), st.admin_hash):
            return User("admin", 0, "admin", "bearer")
        ann = service.annotator_by_token(st.db, token)
        if ann is None:
            raise AuthError(401, "invalid, expired or revoked token")
        return User("annotator", ann["id"], ann["name"], "bearer")
    sess = st.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if sess is None:
        return None
    if sess.role == "admin":
        ok = (hmac.compare_digest(sess.fingerprint, fingerprint(st.admin_hash))
              and sess.version == service.admin_session_version(st.db))
        return User("admin", 0, "admin", "cookie", sess.raw) if ok else None
    ann = service.annotator_by_id(st.db, sess.user_id)
    if (ann is None or not hmac.compare_digest(sess.fingerprint, fingerprint(ann["token_hash"]))
            or sess.version != ann["session_version"]):
        return None
    return User("annotator", ann["id"], ann["name"], "cookie", sess.raw)


async def current_user(request: Request) -> User | None:
    if not hasattr(request.state, "user"):
        request.state.user = await run_in_threadpool(_lookup, request)
    return request.state.user


async def require(request: Request, role: str) -> User:
    user = await current_user(request)
    if user is None:
        raise AuthError(401, "please log in with your login link")
    if user.role != role:
        raise AuthError(403, f"this page is for the {role} only")
    return user


def check_csrf(request: Request, user: User, form: Any = None) -> None:
    """Cookie-authenticated writes need the CSRF token (form field or X-CSRF-Token header)."""
    if user.via == "bearer":
        return
    token = request.headers.get("x-csrf-token")
    if token is None and form is not None:
        token = form.get("csrf_token")
    if not request.app.state.signer.check_csrf(user.session_raw or "", token):
        raise AuthError(403, "missing or invalid CSRF token: reload the page and try again")


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def render(request: Request, template: str, status: int = 200, **ctx: Any):
    user = getattr(request.state, "user", None)
    csrf = None
    if user is not None and user.session_raw:
        csrf = request.app.state.signer.csrf_for(user.session_raw)
    ctx.update(request=request, user=user, csrf_token=csrf)
    response = request.app.state.templates.TemplateResponse(request, template, ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def login_link(request: Request, token: str) -> str:
    """A login link built from the configured public URL (never from the request's Host header,
    which a client chooses)."""
    return f"{request.app.state.base_url}/login?token={token}"


def int_id(value: Any, what: str) -> int:
    """A database id from a path or form value; StudioError 404 for anything that is not one."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise service.NotFound(f"no {what} {text[:40]!r}")
    return int(text)
