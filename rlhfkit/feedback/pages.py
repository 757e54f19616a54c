"""Server-rendered pages: login, annotator task pages, admin overview and project quality page."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback import service
from rlhfkit.feedback.models import TASK_TYPES
from rlhfkit.feedback.security import PRELOGIN_COOKIE, SESSION_COOKIE
from rlhfkit.feedback.web import (AuthError, base_url, check_csrf, current_user, int_id, render,
                                  require)

router = APIRouter()
MAX_WEB_GENERATE = 200  # prompts one admin request may send to the model


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --------------------------------------------------------------------------------------------------
# login
# --------------------------------------------------------------------------------------------------

def _login_response(request: Request, token: str) -> Response:
    st = request.app.state
    if hmac.compare_digest(service.hash_token(token), st.admin_hash):
        cookie, target = st.signer.make_session("admin", 0, st.admin_hash), "/admin"
    else:
        ann = service.annotator_by_token(st.db, token)
        if ann is None:
            raise AuthError(401, "this login link is not valid (or was replaced by a new one)")
        cookie, target = st.signer.make_session("annotator", ann["id"], ann["token_hash"]), "/"
    response = _see_other(target)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax",
                        secure=st.secure_cookies, max_age=14 * 24 * 3600)
    response.delete_cookie(PRELOGIN_COOKIE)
    return response


@router.get("/login")
async def login_page(request: Request, token: str | None = None):
    if token:  # a login link: set the session, then drop the token from the address bar
        return await run_in_threadpool(_login_response, request, token)
    nonce = request.app.state.signer.new_nonce()
    response = render(request, "login.html", login_csrf=request.app.state.signer.prelogin_csrf(nonce))
    response.set_cookie(PRELOGIN_COOKIE, nonce, httponly=True, samesite="strict",
                        secure=request.app.state.secure_cookies)
    return response


@router.post("/login")
async def login_submit(request: Request):
    form = await request.form()
    if not request.app.state.signer.check_prelogin(request.cookies.get(PRELOGIN_COOKIE),
                                                   form.get("csrf_token")):
        raise AuthError(403, "missing or invalid CSRF token: reload the login page and try again")
    token = form.get("token")
    if not isinstance(token, str) or not token.strip():
        raise service.BadInput("token: paste the token from your login link")
    return await run_in_threadpool(_login_response, request, token.strip())


@router.post("/logout")
async def logout(request: Request):
    user = await current_user(request)
    if user is not None:
        check_csrf(request, user, await request.form())
    response = _see_other("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


# --------------------------------------------------------------------------------------------------
# annotators
# --------------------------------------------------------------------------------------------------

@router.get("/")
async def home(request: Request):
    user = await current_user(request)
    if user is None:
        return _see_other("/login")
    if user.role == "admin":
        return _see_other("/admin")
    projects = await run_in_threadpool(service.annotator_summary, request.app.state.db, user.id)
    return render(request, "home.html", projects=projects)


def _next_url(db, project_id: int, annotator_id: int) -> str:
    view = service.next_task(db, project_id, annotator_id)
    return f"/tasks/{view.assignment_id}" if view else f"/projects/{project_id}/done"


@router.post("/projects/{project_id}/next")
async def start_next(request: Request, project_id: str):
    user = await require(request, "annotator")
    check_csrf(request, user, await request.form())
    pid = int_id(project_id, "project")
    return _see_other(await run_in_threadpool(_next_url, request.app.state.db, pid, user.id))


@router.get("/projects/{project_id}/done")
async def project_done(request: Request, project_id: str):
    user = await require(request, "annotator")
    info = await run_in_threadpool(service.project_info, request.app.state.db,
                                   int_id(project_id, "project"))
    summary = await run_in_threadpool(service.annotator_summary, request.app.state.db, user.id)
    done = next((p["done"] for p in summary if p["id"] == info["id"]), 0)
    return render(request, "done.html", project=info, done=done)


@router.get("/tasks/{assignment_id}")
async def task_page(request: Request, assignment_id: str):
    user = await require(request, "annotator")
    view = await run_in_threadpool(service.get_task, request.app.state.db,
                                   int_id(assignment_id, "task"), user.id)
    return render(request, "task.html", task=view, error=None)


def _submit_and_next(db, aid: int, user_id: int, data: dict) -> tuple[str, int]:
    service.submit_label(db, aid, user_id, data)  # committed before we answer
    view = service.get_task(db, aid, user_id)
    return _next_url(db, view.project_id, user_id), view.project_id


@router.post("/tasks/{assignment_id}")
async def task_submit(request: Request, assignment_id: str):
    user = await require(request, "annotator")
    form = await request.form()
    check_csrf(request, user, form)
    aid = int_id(assignment_id, "task")
    data = {k: form.get(k) for k in ("choice", "reason", "order", "score", "critique") if k in form}
    try:
        url, _pid = await run_in_threadpool(_submit_and_next, request.app.state.db, aid, user.id, data)
    except service.BadInput as err:  # show the form again with the message
        view = await run_in_threadpool(service.get_task, request.app.state.db, aid, user.id)
        return render(request, "task.html", status=422, task=view, error=err.message)
    return _see_other(url)


# --------------------------------------------------------------------------------------------------
# admin
# --------------------------------------------------------------------------------------------------

def _admin_context(db) -> dict:
    return {"projects": service.list_projects(db), "annotators": service.list_annotators(db),
            "task_types": TASK_TYPES}


@router.get("/admin")
async def admin_home(request: Request):
    await require(request, "admin")
    ctx = await run_in_threadpool(_admin_context, request.app.state.db)
    return render(request, "admin.html", new_link=None, **ctx)


def _num(form, key: str, cast, default):
    raw = form.get(key)
    if raw in (None, ""):
        return default
    try:
        return cast(raw)
    except (TypeError, ValueError):
        raise service.BadInput(f"{key}: expected a number, got {str(raw)[:40]!r}") from None


async def _records_from_upload(form) -> list:
    from rlhfkit.feedback.ingest import read_prompt_bytes

    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return []
    data = await upload.read()
    return read_prompt_bytes(data, upload.filename[:100])


def _import(db, project_id: int, records: list, generate: dict | None) -> int:
    from rlhfkit.feedback.ingest import items_for_task

    if generate:
        if len(records) > MAX_WEB_GENERATE:
            raise service.BadInput(f"file: at most {MAX_WEB_GENERATE} prompts per web generation; "
                                   "use `rlhfkit studio generate` for more")
        from rlhfkit.feedback.generate import generate_candidates

        todo = [r for r in records if not r.responses]
        outs = generate_candidates([r.prompt for r in todo], **generate)
        for rec, cands in zip(todo, outs):
            rec.responses = cands
    task_type = service.project_info(db, project_id)["task_type"]
    return service.add_items(db, project_id, items_for_task(task_type, records))


def _generate_options(form) -> dict | None:
    if form.get("generate") not in ("on", "1", "true"):
        return None
    model = str(form.get("model") or "default").strip()
    if not model or len(model) > 200:
        raise service.BadInput("model: give a model name such as 'default' or 'tiny'")
    k = _num(form, "k", int, 2)
    max_new = _num(form, "max_new_tokens", int, 48)
    if not 1 <= k <= 16:
        raise service.BadInput(f"k: expected 1..16 candidates per prompt, got {k}")
    if not 1 <= max_new <= 512:
        raise service.BadInput(f"max_new_tokens: expected 1..512, got {max_new}")
    return {"model": model, "k": k, "max_new_tokens": max_new}


@router.post("/admin/projects")
async def admin_create_project(request: Request):
    user = await require(request, "admin")
    form = await request.form()
    check_csrf(request, user, form)
    db = request.app.state.db
    records = await _records_from_upload(form)
    generate = _generate_options(form)

    def work() -> int:
        pid = service.create_project(
            db, str(form.get("name") or ""), str(form.get("task_type") or ""),
            overlap=_num(form, "overlap", int, 3), gold_rate=_num(form, "gold_rate", float, 0.1),
            gold_threshold=_num(form, "gold_threshold", float, 0.7),
            min_gold=_num(form, "min_gold", int, 3),
            instructions=str(form.get("instructions") or ""))
        if records:
            _import(db, pid, records, generate)
        return pid

    pid = await run_in_threadpool(work)
    return _see_other(f"/admin/projects/{pid}")


@router.post("/admin/projects/{project_id}/import")
async def admin_import(request: Request, project_id: str):
    user = await require(request, "admin")
    form = await request.form()
    check_csrf(request, user, form)
    pid = int_id(project_id, "project")
    records = await _records_from_upload(form)
    if not records:
        raise service.BadInput("file: choose a JSONL file to import")
    await run_in_threadpool(_import, request.app.state.db, pid, records, _generate_options(form))
    return _see_other(f"/admin/projects/{pid}")


@router.get("/admin/projects/{project_id}")
async def admin_project(request: Request, project_id: str):
    await require(request, "admin")
    from rlhfkit.feedback.report import project_report

    report = await run_in_threadpool(project_report, request.app.state.db,
                                     int_id(project_id, "project"))
    return render(request, "project.html", report=report)


def _new_annotator_link(request: Request, name: str) -> dict:
    _aid, token = service.add_annotator(request.app.state.db, name)
    return {"name": name.strip(), "url": f"{base_url(request)}/login?token={token}"}


@router.post("/admin/annotators")
async def admin_add_annotator(request: Request):
    user = await require(request, "admin")
    form = await request.form()
    check_csrf(request, user, form)
    link = await run_in_threadpool(_new_annotator_link, request, str(form.get("name") or ""))
    ctx = await run_in_threadpool(_admin_context, request.app.state.db)
    return render(request, "admin.html", new_link=link, **ctx)


@router.post("/admin/annotators/{annotator_id}/rotate")
async def admin_rotate(request: Request, annotator_id: str):
    user = await require(request, "admin")
    check_csrf(request, user, await request.form())
    aid = int_id(annotator_id, "annotator")
    db = request.app.state.db

    def work():
        name = next((a["name"] for a in service.list_annotators(db) if a["id"] == aid), None)
        if name is None:
            raise service.NotFound(f"no annotator {aid}")
        token = service.rotate_token(db, name)
        return {"name": name, "url": f"{base_url(request)}/login?token={token}"}

    link = await run_in_threadpool(work)
    ctx = await run_in_threadpool(_admin_context, db)
    return render(request, "admin.html", new_link=link, **ctx)


@router.post("/admin/annotators/{annotator_id}/active")
async def admin_set_active(request: Request, annotator_id: str):
    user = await require(request, "admin")
    form = await request.form()
    check_csrf(request, user, form)
    active = form.get("active")
    if active not in ("0", "1"):
        raise service.BadInput("active: expected 0 or 1")
    await run_in_threadpool(service.set_active, request.app.state.db,
                            int_id(annotator_id, "annotator"), active == "1")
    return _see_other("/admin")

