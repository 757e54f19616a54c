"""JSON API (``/api/...``) and export downloads. Authenticate with ``Authorization: Bearer <token>``
(or the browser session plus the ``X-CSRF-Token`` header for writes).

Annotator endpoints::

    GET  /api/me                                   -> {"name", "projects": [{"id", "name", "task_type",
                                                       "done", "remaining"}]} (open projects with items)
    POST /api/projects/{id}/next                   -> a task (candidates in display order; a steps task
                                                      also has "steps") or {"done": true}
                                                      (409 when the project is closed)
    GET  /api/tasks/{assignment_id}                -> the task (own assignments only; 404 otherwise),
                                                      with "answer" once answered
    POST /api/tasks/{assignment_id}/label  {json}  -> 201 {"label_id", "assignment_id", "duplicate",
                                                      "revised"}; the same answer again: 200 duplicate;
                                                      another answer: 200 revised (409 once closed);
                                                      the body per task type is the table in tasks.py,
                                                      e.g. {"choice": "A"}, {"thumb": true}, {"steps":
                                                      [1, 0, -1]}

Admin endpoints::

    GET  /api/admin/projects                       -> projects with counts
    POST /api/admin/projects  {name, task_type, overlap, gold_rate, gold_threshold, min_gold,
                               instructions, assignment_minutes, records?}
                                                   -> 201 {"id", "items"} (project and records: one
                                                      transaction)
    POST /api/admin/projects/{id}/items  {"records": [...]}  -> 201 {"items"}
    POST /api/admin/projects/{id}/archive  {"archived": true|false}  -> 200 {"archived"}
    DELETE /api/admin/projects/{id}                -> 200 {"deleted": name}
    POST /api/admin/annotators  {"name", "expires_days"?}  -> 201 {"id", "name", "token", "login_url"}
    GET  /api/admin/projects/{id}/report           -> the quality report
    GET  /admin/projects/{id}/export?format=records|labelstudio|argilla&method=...&soft=1
         (also under /api/admin/...)               -> a file download
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback import service
from rlhfkit.feedback.web import check_csrf, int_id, login_link, require

router = APIRouter()
MAX_JSON_BODY_KEYS = 32


async def _json_body(request: Request) -> dict:
    """The request's JSON object; every parse failure is a 422 (nesting too deep for the parser,
    integers too long to convert, invalid UTF-8), never a crash."""
    try:
        data = await request.json()
    except RecursionError:
        raise service.BadInput("body: JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise service.BadInput(f"body: expected a JSON object ({str(err)[:120]})") from None
    if not isinstance(data, dict) or len(data) > MAX_JSON_BODY_KEYS:
        raise service.BadInput("body: expected a JSON object")
    return data


def _parse_records(task_type: str, records) -> list:
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    if not isinstance(records, list) or not records:
        raise service.BadInput("records: expected a non-empty list of {prompt, responses} objects")
    return items_for_task(task_type, [parse_record(r, f"records[{i}]") for i, r in enumerate(records)])


@router.get("/api/me")
async def me(request: Request):
    user = await require(request, "annotator")
    projects = await run_in_threadpool(service.annotator_summary, request.app.state.db, user.id)
    keys = ("id", "name", "task_type", "done", "remaining")
    return {"name": user.name, "projects": [{k: p[k] for k in keys} for p in projects]}


@router.post("/api/projects/{project_id}/next")
async def api_next(request: Request, project_id: str):
    user = await require(request, "annotator")
    check_csrf(request, user)
    view = await run_in_threadpool(service.next_task, request.app.state.db,
                                   int_id(project_id, "project"), user.id)
    return {"done": True} if view is None else view.to_json()


@router.get("/api/tasks/{assignment_id}")
async def api_task(request: Request, assignment_id: str):
    user = await require(request, "annotator")
    view = await run_in_threadpool(service.get_task, request.app.state.db,
                                   int_id(assignment_id, "task"), user.id)
    return view.to_json()


@router.post("/api/tasks/{assignment_id}/label")
async def api_label(request: Request, assignment_id: str):
    user = await require(request, "annotator")
    check_csrf(request, user)
    data = await _json_body(request)
    ack = await run_in_threadpool(service.submit_label, request.app.state.db,
                                  int_id(assignment_id, "task"), user.id, data)
    body = {"label_id": ack.label_id, "assignment_id": ack.assignment_id, "duplicate": ack.duplicate,
            "revised": ack.revised}
    return JSONResponse(body, status_code=200 if ack.duplicate or ack.revised else 201)


# --------------------------------------------------------------------------------------------------
# admin
# --------------------------------------------------------------------------------------------------

@router.get("/api/admin/projects")
async def api_projects(request: Request):
    await require(request, "admin")
    return await run_in_threadpool(service.list_projects, request.app.state.db)


@router.post("/api/admin/projects")
async def api_create_project(request: Request):
    user = await require(request, "admin")
    check_csrf(request, user)
    data = await _json_body(request)
    records = data.pop("records", None)
    spec = service.project_spec(data)

    def work() -> int:
        items = _parse_records(spec.task_type, records) if records is not None else []
        return service.create_project(request.app.state.db, **spec.model_dump(), items=items), len(items)

    pid, n = await run_in_threadpool(work)
    return JSONResponse({"id": pid, "items": n}, status_code=201)


@router.post("/api/admin/projects/{project_id}/items")
async def api_add_items(request: Request, project_id: str):
    user = await require(request, "admin")
    check_csrf(request, user)
    data = await _json_body(request)
    pid = int_id(project_id, "project")
    db = request.app.state.db

    def work() -> int:
        task = service.project_info(db, pid)["task_type"]
        return service.add_items(db, pid, _parse_records(task, data.get("records")))

    return JSONResponse({"items": await run_in_threadpool(work)}, status_code=201)


@router.post("/api/admin/projects/{project_id}/archive")
async def api_archive(request: Request, project_id: str):
    user = await require(request, "admin")
    check_csrf(request, user)
    archived = (await _json_body(request)).get("archived", True)
    if not isinstance(archived, bool):
        raise service.BadInput("archived: expected true or false")
    await run_in_threadpool(service.set_archived, request.app.state.db,
                            int_id(project_id, "project"), archived)
    return {"archived": archived}


@router.delete("/api/admin/projects/{project_id}")
async def api_delete(request: Request, project_id: str):
    user = await require(request, "admin")
    check_csrf(request, user)
    name = await run_in_threadpool(service.delete_project, request.app.state.db,
                                   int_id(project_id, "project"))
    return {"deleted": name}


@router.post("/api/admin/annotators")
async def api_add_annotator(request: Request):
    user = await require(request, "admin")
    check_csrf(request, user)
    data = await _json_body(request)
    spec = service.annotator_spec(data)
    aid, token = await run_in_threadpool(service.add_annotator, request.app.state.db, spec.name,
                                         spec.expires_days)
    return JSONResponse({"id": aid, "name": spec.name, "token": token,
                         "login_url": login_link(request, token)}, status_code=201)


@router.get("/api/admin/projects/{project_id}/report")
async def api_report(request: Request, project_id: str):
    from rlhfkit.feedback.report import project_report

    await require(request, "admin")
    return await run_in_threadpool(project_report, request.app.state.db, int_id(project_id, "project"))


def _export_body(db, pid: int, fmt: str, method: str, soft: bool, gold: bool, as_pairs: bool):
    from rlhfkit.feedback import export, interop

    name = service.project_info(db, pid)["name"]
    if fmt != "records":
        service.check_interop(db, pid, f"format: {fmt}")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "project"
    if fmt == "records":
        recs = export.export_records(db, pid, method=method, soft=soft, include_gold=gold,
                                     as_pairs=as_pairs)
        return export.records_to_jsonl(recs), f"{safe}.{method}.jsonl", "application/x-ndjson"
    if fmt == "labelstudio":
        return (json.dumps(interop.to_labelstudio(db, pid), ensure_ascii=False, indent=1),
                f"{safe}.labelstudio.json", "application/json")
    return (json.dumps(interop.to_argilla(db, pid), ensure_ascii=False, indent=1),
            f"{safe}.argilla.json", "application/json")


@router.get("/admin/projects/{project_id}/export")
@router.get("/api/admin/projects/{project_id}/export")
async def export_download(request: Request, project_id: str, format: str = "records",
                          method: str = "majority", soft: bool = False, include_gold: bool = False,
                          as_pairs: bool = False):
    from rlhfkit.feedback.export import METHODS, ExportError

    await require(request, "admin")
    if format not in ("records", "labelstudio", "argilla"):
        raise service.BadInput(f"format: expected records, labelstudio or argilla, got {format[:40]!r}")
    if method not in METHODS:
        raise service.BadInput(f"method: expected one of {', '.join(METHODS)}, got {method[:40]!r}")
    try:
        body, filename, mime = await run_in_threadpool(
            _export_body, request.app.state.db, int_id(project_id, "project"), format, method, soft,
            include_gold, as_pairs)
    except ExportError as err:
        raise service.BadInput(str(err)) from None
    return Response(body, media_type=mime, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})
