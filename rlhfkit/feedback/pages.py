"""Server-rendered pages: login, annotator task pages, admin overview and project quality page."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback import service
from rlhfkit.feedback.models import TASK_TYPES
from rlhfkit.feedback.security import PRELOGIN_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE
from rlhfkit.feedback.web import (AuthError, check_csrf, current_user, int_id, login_link, render,
                                  require)

router = APIRouter()
MAX_WEB_GENERATE = 200  # prompts one admin request may send to the model


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _checked_form(request: Request, role: str):
    """(user, form) of a state-changing request by ``role``, its CSRF token checked."""
    user = await require(request, role)
    form = await request.form()
    check_csrf(request, user, form)
    return user, form


# --------------------------------------------------------------------------------------------------
# login
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Identity:
    """Who a login token belongs to."""

    role: str
    id: int
    name: str
    token_hash: str
    version: int  # the user's current session version

    @property
    def key(self) -> str:
        return f"{self.role}:{self.id}"


def _identify(request: Request, token: str) -> _Identity:
    st = request.app.state
    if hmac.compare_digest(service.hash_token(token), st.admin_hash):
        return _Identity("admin", 0, "admin", st.admin_hash, service.admin_session_version(st.db))
    ann = service.annotator_by_token(st.db, token)
    if ann is None:
        raise AuthError(401, "this login link is not valid (it expired, or was replaced by a new one)")
    return _Identity("annotator", ann["id"], ann["name"], ann["token_hash"], ann["session_version"])


def _confirm_page(request: Request, who: _Identity, token: str, current, status: int = 200):
    """The one-click confirmation of a login link: a POST with a double-submit CSRF token, so
    another site can neither log this browser in as someone else nor switch its session."""
    signer = request.app.state.signer
    nonce = signer.new_nonce()
    switching = current is not None and f"{current.role}:{current.id}" != who.key
    response = render(request, "login_confirm.html", status=status, who=who, token=token,
                      login_csrf=signer.prelogin_csrf(nonce), switching=switching,
                      replace=f"{current.role}:{current.id}" if current is not None else "")
    response.set_cookie(PRELOGIN_COOKIE, nonce, httponly=True, samesite="strict",
                        secure=request.app.state.secure_cookies)
    return response


def _start_session(request: Request, who: _Identity) -> Response:
    st = request.app.state
    response = _see_other("/admin" if who.role == "admin" else "/")
    response.set_cookie(SESSION_COOKIE, st.signer.make_session(who.role, who.id, who.token_hash,
                                                               who.version),
                        httponly=True, samesite="lax", secure=st.secure_cookies,
                        max_age=SESSION_MAX_AGE)
    response.delete_cookie(PRELOGIN_COOKIE)
    return response


@router.get("/login")
async def login_page(request: Request, token: str | None = None):
    """A login link shows who it logs in (and whom it would replace) and waits for a click."""
    current = await current_user(request)
    if token:
        who = await run_in_threadpool(_identify, request, token)
        if current is not None and current.via == "cookie" and f"{current.role}:{current.id}" == who.key:
            return _see_other("/admin" if who.role == "admin" else "/")  # already this person
        return _confirm_page(request, who, token, current)
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
    who = await run_in_threadpool(_identify, request, token.strip())
    current = await current_user(request)
    if (current is not None and f"{current.role}:{current.id}" != who.key
            and form.get("replace") != f"{current.role}:{current.id}"):
        return _confirm_page(request, who, token.strip(), current, status=409)  # ask first
    return _start_session(request, who)


@router.post("/logout")
async def logout(request: Request):
    """End the session on the server (the user's session version moves on, so every cookie
    issued before, copies included, stops working), then drop the cookie."""
    user = await current_user(request)
    if user is not None:
        check_csrf(request, user, await request.form())
        if user.via == "cookie":
            await run_in_threadpool(service.end_sessions, request.app.state.db,
                                    None if user.role == "admin" else user.id)
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


def _next_url(db, project_id: int, annotator_id: int, saved: int | None = None) -> str:
    """The annotator's next task (or the project's end page); ``saved``: the task just answered,
    offered on the next page to undo / change."""
    view = service.next_task(db, project_id, annotator_id)
    query = f"?saved={saved}" if saved is not None else ""
    return (f"/tasks/{view.assignment_id}{query}" if view else f"/projects/{project_id}/done{query}")


@router.post("/projects/{project_id}/next")
async def start_next(request: Request, project_id: str):
    user, _form = await _checked_form(request, "annotator")
    pid = int_id(project_id, "project")
    return _see_other(await run_in_threadpool(_next_url, request.app.state.db, pid, user.id))


def _saved_task(db, saved: str | None, annotator_id: int):
    """The task named by ``?saved=`` when it is this annotator's answered task, else None."""
    if not saved:
        return None
    try:
        view = service.get_task(db, int_id(saved, "task"), annotator_id)
    except service.NotFound:
        return None
    return view if view.done else None


@router.get("/projects/{project_id}/done")
async def project_done(request: Request, project_id: str, saved: str | None = None):
    user = await require(request, "annotator")
    db = request.app.state.db
    mine = await run_in_threadpool(service.progress, db, int_id(project_id, "project"), user.id)
    last = await run_in_threadpool(_saved_task, db, saved, user.id)
    return render(request, "done.html", project=mine, saved=last)


def _task_context(db, aid: int, user_id: int, saved: str | None) -> dict:
    view = service.get_task(db, aid, user_id)
    return {"task": view, "mine": service.progress(db, view.project_id, user_id),
            "saved": _saved_task(db, saved, user_id)}


@router.get("/tasks/{assignment_id}")
async def task_page(request: Request, assignment_id: str, saved: str | None = None):
    user = await require(request, "annotator")
    ctx = await run_in_threadpool(_task_context, request.app.state.db,
                                  int_id(assignment_id, "task"), user.id, saved)
    return render(request, "task.html", error=None, **ctx)


ANSWER_FIELDS = ("choice", "reason", "order", "score", "critique", "thumb")
STEP_FIELD = re.compile(r"step_(\d{1,3})")


def _answer_fields(form) -> dict:
    """The answer keys of a task form; the steps task's radio groups ``step_0``, ``step_1``, ...
    become ``steps`` (a group left unmarked is None, so the error names that step)."""
    data = {k: form.get(k) for k in ANSWER_FIELDS if k in form}
    marked = {int(m[1]): form.get(k) for k in form.keys() if (m := STEP_FIELD.fullmatch(k))}
    if marked:
        data["steps"] = [marked.get(i) for i in range(max(marked) + 1)]
    return data


def _submit_and_next(db, aid: int, user_id: int, data: dict) -> str:
    service.submit_label(db, aid, user_id, data)  # committed before we answer
    view = service.get_task(db, aid, user_id)
    return _next_url(db, view.project_id, user_id, saved=aid)


@router.post("/tasks/{assignment_id}")
async def task_submit(request: Request, assignment_id: str):
    """Answer a task, or change the answer of an answered one (until the project closes)."""
    user, form = await _checked_form(request, "annotator")
    aid = int_id(assignment_id, "task")
    data = _answer_fields(form)
    db = request.app.state.db
    try:
        url = await run_in_threadpool(_submit_and_next, db, aid, user.id, data)
    except service.BadInput as err:  # show the form again with the message
        ctx = await run_in_threadpool(_task_context, db, aid, user.id, None)
        return render(request, "task.html", status=422, error=err.message, **ctx)
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


def _flag(form, key: str) -> bool:
    """A yes/no form field sent as "1" / "0"."""
    value = form.get(key)
    if value not in ("0", "1"):
        raise service.BadInput(f"{key}: expected 0 or 1")
    return value == "1"


async def _records_from_upload(form) -> list:
    from rlhfkit.feedback.ingest import read_prompt_bytes

    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return []
    data = await upload.read()
    try:
        return read_prompt_bytes(data, upload.filename[:100])
    except RecursionError:  # JSON nested deeper than the parser goes
        raise service.BadInput(f"{upload.filename[:100]}: json: nested too deeply") from None
    except ValueError as err:  # e.g. an integer longer than Python converts
        raise service.BadInput(f"{upload.filename[:100]}: json: {str(err)[:200]}") from None


def _generated(records: list, generate: dict) -> list:
    """Sample candidates for the records without responses (the admin's 'generate' option)."""
    if len(records) > MAX_WEB_GENERATE:
        raise service.BadInput(f"file: at most {MAX_WEB_GENERATE} prompts per web generation; "
                               "use `rlhfkit studio generate` for more")
    from rlhfkit.feedback.generate import generate_candidates

    todo = [r for r in records if not r.responses]
    try:
        outs = generate_candidates([r.prompt for r in todo], **generate)
    except (RuntimeError, OSError, ValueError) as err:  # ModelLoadError, missing files, ...
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise service.BadInput(f"model: cannot sample with {generate['model']!r}: {first}") from None
    for rec, cands in zip(todo, outs):
        rec.responses = cands
    return records


def _item_specs(task_type: str, records: list, generate: dict | None) -> list:
    from rlhfkit.feedback.ingest import items_for_task

    return items_for_task(task_type, _generated(records, generate) if generate else records)


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


PROJECT_FIELDS = ("name", "task_type", "overlap", "gold_rate", "gold_threshold", "min_gold",
                  "instructions", "assignment_minutes")


@router.post("/admin/projects")
async def admin_create_project(request: Request):
    """Create a project and import its file in one transaction: a bad file leaves nothing."""
    _admin, form = await _checked_form(request, "admin")
    db = request.app.state.db
    fields = {k: form.get(k) for k in PROJECT_FIELDS if form.get(k) not in (None, "")}
    fields.setdefault("name", "")
    fields.setdefault("task_type", "")
    spec = service.project_spec(fields)  # settings checked before any model is loaded
    records = await _records_from_upload(form)
    generate = _generate_options(form)

    def work() -> int:
        items = _item_specs(spec.task_type, records, generate) if records else []
        return service.create_project(db, **spec.model_dump(), items=items)

    pid = await run_in_threadpool(work)
    return _see_other(f"/admin/projects/{pid}")


@router.post("/admin/projects/{project_id}/import")
async def admin_import(request: Request, project_id: str):
    _admin, form = await _checked_form(request, "admin")
    pid = int_id(project_id, "project")
    records = await _records_from_upload(form)
    if not records:
        raise service.BadInput("file: choose a JSONL file to import")
    generate = _generate_options(form)
    db = request.app.state.db

    def work() -> int:
        task_type = service.project_info(db, pid)["task_type"]
        return service.add_items(db, pid, _item_specs(task_type, records, generate))

    await run_in_threadpool(work)
    return _see_other(f"/admin/projects/{pid}")


@router.post("/admin/projects/{project_id}/archive")
async def admin_archive(request: Request, project_id: str):
    """Archive (close) or reopen a project: ``archived`` = 1 or 0."""
    _admin, form = await _checked_form(request, "admin")
    pid = int_id(project_id, "project")
    await run_in_threadpool(service.set_archived, request.app.state.db, pid, _flag(form, "archived"))
    return _see_other(f"/admin/projects/{pid}")


@router.post("/admin/projects/{project_id}/delete")
async def admin_delete(request: Request, project_id: str):
    """Delete a project with all its labels; the form repeats the project's name to confirm."""
    _admin, form = await _checked_form(request, "admin")
    db = request.app.state.db
    pid = int_id(project_id, "project")
    name = (await run_in_threadpool(service.project_info, db, pid))["name"]
    if form.get("confirm") != name:
        raise service.BadInput("confirm: type the project's name to delete it and all its labels")
    await run_in_threadpool(service.delete_project, db, pid)
    return _see_other("/admin")


@router.get("/admin/projects/{project_id}")
async def admin_project(request: Request, project_id: str):
    await require(request, "admin")
    from rlhfkit.feedback.report import project_report
    from rlhfkit.feedback.tasks import NO_INTEROP

    report = await run_in_threadpool(project_report, request.app.state.db,
                                     int_id(project_id, "project"))
    return render(request, "project.html", report=report, interop_less=NO_INTEROP)


def _expires_days(form) -> float | None:
    raw = form.get("expires_days")
    return None if raw in (None, "") else _num(form, "expires_days", float, None)


@router.post("/admin/annotators")
async def admin_add_annotator(request: Request):
    _admin, form = await _checked_form(request, "admin")
    db = request.app.state.db
    name = str(form.get("name") or "")
    _aid, token = await run_in_threadpool(service.add_annotator, db, name, _expires_days(form))
    link = {"name": name.strip(), "url": login_link(request, token)}
    ctx = await run_in_threadpool(_admin_context, db)
    return render(request, "admin.html", new_link=link, **ctx)


@router.post("/admin/annotators/{annotator_id}/rotate")
async def admin_rotate(request: Request, annotator_id: str):
    _admin, form = await _checked_form(request, "admin")
    aid = int_id(annotator_id, "annotator")
    db = request.app.state.db

    def work():
        name = next((a["name"] for a in service.list_annotators(db) if a["id"] == aid), None)
        if name is None:
            raise service.NotFound(f"no annotator {aid}")
        return {"name": name, "url": login_link(request, service.rotate_token(db, name,
                                                                               _expires_days(form)))}

    link = await run_in_threadpool(work)
    ctx = await run_in_threadpool(_admin_context, db)
    return render(request, "admin.html", new_link=link, **ctx)


@router.post("/admin/annotators/{annotator_id}/active")
async def admin_set_active(request: Request, annotator_id: str):
    _admin, form = await _checked_form(request, "admin")
    await run_in_threadpool(service.set_active, request.app.state.db,
                            int_id(annotator_id, "annotator"), _flag(form, "active"))
    return _see_other("/admin")

