"""Studio operations: projects, items, annotators, assignments and labels.

Every function takes a :class:`~rlhfkit.feedback.db.Database` and does its work in one transaction
(retried when a unique constraint reports that a concurrent request won a race). The web app and
the CLI both call these; nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from rlhfkit.data.records import MAX_STEPS, split_steps
from rlhfkit.errors import RlhfkitError
from rlhfkit.feedback import schemas, tasks
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.ingest import ItemSpec, prompt_from_json, prompt_to_json
from rlhfkit.feedback.models import (Annotator, Assignment, Item, Label, LabelHistory, Project,
                                     Setting, utcnow)

MAX_NAME = 100
ASSIGN_RETRIES = 40
PICK_POOL = 64  # candidate items per draw: larger = fewer collisions between concurrent annotators


class StudioError(RlhfkitError):
    """An operation failed for a reason the user can act on; ``status`` is the HTTP status."""

    status = 400

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class NotFound(StudioError):
    status = 404


class Conflict(StudioError):
    status = 409


class BadInput(StudioError):
    status = 422


# --------------------------------------------------------------------------------------------------
# Projects and items
# --------------------------------------------------------------------------------------------------

def _valid(model, data: dict):
    """``data`` checked by its schema (:mod:`rlhfkit.feedback.schemas`); BadInput otherwise."""
    try:
        return schemas.validate(model, data)
    except schemas.InvalidInput as err:
        raise BadInput(str(err)) from None


def project_spec(fields: dict) -> schemas.ProjectSpec:
    """A new project's settings checked (BadInput naming the field otherwise)."""
    return _valid(schemas.ProjectSpec, fields)


def annotator_spec(fields: dict) -> schemas.AnnotatorSpec:
    return _valid(schemas.AnnotatorSpec, fields)


def create_project(db: Database, name: str, task_type: str, overlap: int = 3, gold_rate: float = 0.1,
                   gold_threshold: float = 0.7, min_gold: int = 3, instructions: str = "",
                   assignment_minutes: int = 60, items: Iterable[ItemSpec] = ()) -> int:
    """Create a project with its first ``items`` in one transaction (all or nothing); returns its
    id. ``overlap`` = annotators per regular item (r)."""
    spec = project_spec(dict(
        name=name, task_type=task_type, overlap=overlap, gold_rate=gold_rate,
        gold_threshold=gold_threshold, min_gold=min_gold, instructions=instructions,
        assignment_minutes=assignment_minutes))
    try:
        with db.transaction() as s:
            project = Project(**spec.model_dump())
            s.add(project)
            s.flush()
            _insert_items(s, project, items)
            return project.id
    except IntegrityError:
        raise Conflict(f"a project named {spec.name!r} already exists") from None


def find_project(s, ref: Any) -> Project:
    """A project by id (int or digits) or by name; NotFound otherwise."""
    project = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()
                                and len(ref) < 10):
        project = s.get(Project, int(ref))
    if project is None and isinstance(ref, str):
        project = s.execute(select(Project).where(Project.name == ref)).scalar_one_or_none()
    if project is None:
        raise NotFound(f"no project {ref!r}")
    return project


def project_info(db: Database, ref: Any) -> dict:
    with db.read() as s:
        p = find_project(s, ref)
        return {"id": p.id, "name": p.name, "task_type": p.task_type, "overlap": p.overlap,
                "gold_rate": p.gold_rate, "gold_threshold": p.gold_threshold,
                "min_gold": p.min_gold, "instructions": p.instructions, "archived": p.archived,
                "assignment_minutes": p.assignment_minutes}


def _check_item(spec: ItemSpec, task_type: str) -> None:
    where = spec.source or "item"
    lo, hi = tasks.candidates_needed(task_type)
    if not lo <= len(spec.candidates) <= hi:
        raise BadInput(f"{where}: {task_type} items need {lo}..{hi} candidates, "
                       f"got {len(spec.candidates)}")
    if spec.gold is not None and task_type == "critique":
        raise BadInput(f"{where}: critique projects have no gold items")
    if task_type == "steps":
        _check_steps(spec, where)
    if not any(m.content.strip() for m in spec.prompt):
        raise BadInput(f"{where}: prompt: must not be empty")
    texts = [(f"prompt[{i}].content", m.content) for i, m in enumerate(spec.prompt)]
    texts += [(f"responses[{i}]", c) for i, c in enumerate(spec.candidates)]
    for fieldname, text in texts:
        problem = schemas.text_problem(text)
        if problem:
            raise BadInput(f"{where}: {fieldname}: {problem}")


def _check_steps(spec: ItemSpec, where: str) -> None:
    """A steps item's answer must split into 1..MAX_STEPS steps, one gold mark per step."""
    n = len(split_steps(spec.candidates[0]))
    if not 1 <= n <= MAX_STEPS:
        raise BadInput(f"{where}: responses[0]: expected 1..{MAX_STEPS} steps (split on blank lines "
                       f"and numbered lines), got {n}")
    if spec.gold is not None and len(spec.gold["steps"]) != n:
        raise BadInput(f"{where}: gold: {len(spec.gold['steps'])} marks for {n} steps")


def _steps_json(task_type: str, spec: ItemSpec) -> str | None:
    if task_type != "steps":
        return None
    return json.dumps(split_steps(spec.candidates[0]), ensure_ascii=False)


def item_steps(item: Item) -> list:
    """The steps of a steps item as split when it was created ([] for other items)."""
    return json.loads(item.steps_json) if item.steps_json else []


def _insert_items(s, project: Project, specs: Iterable[ItemSpec]) -> int:
    """Check and add items inside the caller's transaction; returns how many."""
    n = 0
    for spec in specs:
        _check_item(spec, project.task_type)
        s.add(Item(project_id=project.id, prompt_json=prompt_to_json(spec.prompt),
                   candidates_json=json.dumps(spec.candidates, ensure_ascii=False),
                   is_gold=spec.gold is not None,
                   gold_json=None if spec.gold is None else json.dumps(spec.gold),
                   source=(spec.source or "")[:500], steps_json=_steps_json(project.task_type, spec)))
        n += 1
    return n


def add_items(db: Database, project_ref: Any, specs: Iterable[ItemSpec]) -> int:
    """Insert items (all or nothing); candidates must fit the project's task type."""
    with db.transaction() as s:
        return _insert_items(s, find_project(s, project_ref), specs)


def check_interop(db: Database, project_ref: Any, what: str = "Label Studio / Argilla") -> None:
    """BadInput unless interop.py maps the project's task type (not yet: binary and steps)."""
    task = project_info(db, project_ref)["task_type"]
    if task in tasks.NO_INTEROP:
        raise BadInput(f"{what}: {task} projects have no Label Studio / Argilla mapping yet; "
                       "use `rlhfkit studio export` (format=records)")


def set_archived(db: Database, project_ref: Any, archived: bool = True) -> None:
    """Archive (close) a project: annotators no longer see it, get tasks or change answers; its
    labels stay for reports and export. ``archived=False`` reopens it."""
    with db.transaction() as s:
        find_project(s, project_ref).archived = bool(archived)


def delete_project(db: Database, project_ref: Any) -> str:
    """Delete a project with its items, assignments and labels; returns its name."""
    with db.transaction() as s:
        project = find_project(s, project_ref)
        name = project.name
        s.execute(delete(LabelHistory).where(LabelHistory.label_id.in_(
            select(Label.id).where(Label.project_id == project.id))))
        for model in (Label, Assignment, Item):  # explicit: no reliance on ON DELETE CASCADE
            s.execute(delete(model).where(model.project_id == project.id))
        s.delete(project)
    return name


def list_projects(db: Database) -> list[dict]:
    with db.read() as s:
        projects = s.execute(select(Project).order_by(Project.id)).scalars().all()
        item_counts = dict(s.execute(select(Item.project_id, func.count(Item.id))
                                     .where(Item.is_gold.is_(False)).group_by(Item.project_id)).all())
        label_counts = dict(s.execute(select(Label.project_id, func.count(Label.id))
                                      .group_by(Label.project_id)).all())
        return [{"id": p.id, "name": p.name, "task_type": p.task_type, "overlap": p.overlap,
                 "items": item_counts.get(p.id, 0), "labels": label_counts.get(p.id, 0),
                 "archived": p.archived, "assignment_minutes": p.assignment_minutes}
                for p in projects]


# --------------------------------------------------------------------------------------------------
# Annotators and tokens
# --------------------------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _expiry(expires_days: float | None) -> dt.datetime | None:
    return None if expires_days is None else utcnow() + dt.timedelta(days=expires_days)


def add_annotator(db: Database, name: str, expires_days: float | None = None) -> tuple[int, str]:
    """Create an annotator; returns ``(id, login token)``. Only the token's hash is stored; the
    token stops working after ``expires_days`` (never when None)."""
    spec = annotator_spec({"name": name, "expires_days": expires_days})
    token = new_token()
    try:
        with db.transaction() as s:
            ann = Annotator(name=spec.name, token_hash=hash_token(token),
                            token_expires_at=_expiry(spec.expires_days))
            s.add(ann)
            s.flush()
            return ann.id, token
    except IntegrityError:
        raise Conflict(f"an annotator named {spec.name!r} already exists") from None


def rotate_token(db: Database, name: str, expires_days: float | None = None) -> str:
    """Issue a new login token for an annotator: the old link stops working and every session
    made with it ends."""
    spec = annotator_spec({"name": name, "expires_days": expires_days})
    token = new_token()
    with db.transaction() as s:
        ann = s.execute(select(Annotator).where(Annotator.name == spec.name)).scalar_one_or_none()
        if ann is None:
            raise NotFound(f"no annotator {spec.name!r}")
        ann.token_hash = hash_token(token)
        ann.token_expires_at = _expiry(spec.expires_days)
        ann.session_version += 1
    return token


def set_active(db: Database, annotator_id: int, active: bool) -> None:
    """Enable or disable an annotator; disabling hands their unanswered tasks back to the pool."""
    with db.transaction() as s:
        ann = s.get(Annotator, annotator_id)
        if ann is None:
            raise NotFound(f"no annotator {annotator_id}")
        ann.active = active
        if not active:
            s.execute(delete(Assignment).where(Assignment.annotator_id == annotator_id,
                                               Assignment.done.is_(False)))


def _usable(ann: Annotator | None) -> dict | None:
    """The annotator as a dict when active and within the token's expiry, else None."""
    if ann is None or not ann.active:
        return None
    if ann.token_expires_at is not None and ann.token_expires_at <= utcnow():
        return None
    return {"id": ann.id, "name": ann.name, "token_hash": ann.token_hash,
            "session_version": ann.session_version}


def annotator_by_token(db: Database, token: str) -> dict | None:
    """The active annotator owning ``token`` (constant-time compare on the hash), else None."""
    if not isinstance(token, str) or not 8 <= len(token) <= 200:
        return None
    digest = hash_token(token)
    with db.read() as s:
        ann = s.execute(select(Annotator).where(Annotator.token_hash == digest)).scalar_one_or_none()
        if ann is not None and not hmac.compare_digest(ann.token_hash, digest):
            return None
        return _usable(ann)


def annotator_by_id(db: Database, annotator_id: int) -> dict | None:
    with db.read() as s:
        return _usable(s.get(Annotator, annotator_id))


ADMIN_SESSIONS_KEY = "admin_session_version"


def admin_session_version(db: Database) -> int:
    with db.read() as s:
        row = s.get(Setting, ADMIN_SESSIONS_KEY)
        return int(row.value) if row is not None else 0


def end_sessions(db: Database, annotator_id: int | None) -> None:
    """Log out everywhere: every session cookie of the annotator (None: of the admin) stops
    working, because it carries the previous session version."""
    if annotator_id is not None:
        with db.transaction() as s:
            ann = s.get(Annotator, annotator_id)
            if ann is not None:
                ann.session_version += 1
        return
    for _attempt in range(2):  # two first-ever admin logouts at once: one insert wins, retry
        try:
            with db.transaction() as s:
                row = s.get(Setting, ADMIN_SESSIONS_KEY, with_for_update=True)
                if row is None:
                    s.add(Setting(key=ADMIN_SESSIONS_KEY, value="1"))
                else:
                    row.value = str(int(row.value) + 1)
            return
        except IntegrityError:
            continue


def list_annotators(db: Database) -> list[dict]:
    with db.read() as s:
        anns = s.execute(select(Annotator).order_by(Annotator.id)).scalars().all()
        counts = dict(s.execute(select(Label.annotator_id, func.count(Label.id))
                                .group_by(Label.annotator_id)).all())
        return [{"id": a.id, "name": a.name, "active": a.active, "labels": counts.get(a.id, 0),
                 "expires": a.token_expires_at} for a in anns]


# --------------------------------------------------------------------------------------------------
# Assignments
# --------------------------------------------------------------------------------------------------

@dataclass
class TaskView:
    """What an annotator sees for one assignment (candidates already in display order).

    ``answer``: the annotator's current answer in form terms (``{"choice": "A"}``, ``{"order":
    "2,1,3"}``, ...) when the task is done; ``closed``: the project is archived, so the answer can
    no longer change. ``steps``: the steps of a steps task, in order.
    """

    assignment_id: int
    project_id: int
    project_name: str
    task_type: str
    instructions: str
    prompt: tuple
    shown: list
    done: bool
    answer: dict | None = None
    closed: bool = False
    extra: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"assignment_id": self.assignment_id, "project_id": self.project_id,
                "project": self.project_name, "task_type": self.task_type,
                "instructions": self.instructions,
                "prompt": [{"role": m.role, "content": m.content} for m in self.prompt],
                "candidates": self.shown, "done": self.done, "answer": self.answer,
                "closed": self.closed, **({"steps": self.steps} if self.steps else {})}


def _form_answer(task_type: str, value: dict, order: list) -> dict:
    """A stored label (candidate terms) back in the display terms of its assignment's form."""
    if task_type == "pairwise":
        pref = value["preferred"]
        choice = "tie" if pref == "tie" else "AB"[order.index(pref)]
        return {"choice": choice, "reason": value.get("reason", "")}
    if task_type == "ranking":
        return {"order": ",".join(str(order.index(c) + 1) for c in value["ranking"])}
    if task_type == "binary":
        return {"thumb": "up" if value["label"] else "down", "reason": value.get("reason", "")}
    return dict(value)


def _view(project: Project, item: Item, a: Assignment, label: Label | None = None) -> TaskView:
    cands = json.loads(item.candidates_json)
    order = json.loads(a.order_json)
    answer = None
    if label is not None:
        answer = _form_answer(project.task_type, json.loads(label.value_json), order)
    return TaskView(a.id, project.id, project.name, project.task_type, project.instructions,
                    prompt_from_json(item.prompt_json), [cands[i] for i in order], a.done, answer,
                    project.archived, steps=item_steps(item))


class _Retry(Exception):
    """A concurrent annotator changed what this transaction read; start it again."""


def _pick_gold(s, project: Project, annotator_id: int, rng: random.Random) -> Item | None:
    seen = select(Assignment.item_id).where(Assignment.annotator_id == annotator_id,
                                            Assignment.project_id == project.id)
    ids = s.execute(select(Item.id).where(Item.project_id == project.id, Item.is_gold.is_(True),
                                          Item.id.not_in(seen))).scalars().all()
    return s.get(Item, rng.choice(ids)) if ids else None


def _pick_regular(s, project: Project, annotator_id: int, rng: random.Random):
    """An unseen regular item with a free slot, drawn at random from the ``PICK_POOL`` items closest
    to completion (finishing items early while spreading concurrent annotators apart)."""
    seen = select(Assignment.item_id).where(Assignment.annotator_id == annotator_id,
                                            Assignment.project_id == project.id)
    n = func.count(Assignment.id)
    rows = s.execute(
        select(Item.id, n).outerjoin(Assignment, Assignment.item_id == Item.id)
        .where(Item.project_id == project.id, Item.is_gold.is_(False), Item.id.not_in(seen))
        .group_by(Item.id).having(n < project.overlap).order_by(n.desc(), Item.id).limit(PICK_POOL)
    ).all()
    if not rows:
        return None, None
    item_id = rng.choice(rows)[0]
    used = set(s.execute(select(Assignment.slot).where(Assignment.item_id == item_id)).scalars())
    free = set(range(project.overlap)) - used
    if not free:  # filled by a concurrent commit since the count above (READ COMMITTED)
        raise _Retry()
    return s.get(Item, item_id), min(free)


def _release_expired(s, project: Project) -> None:
    """Hand unanswered tasks older than the project's time limit back to the pool."""
    cutoff = utcnow() - dt.timedelta(minutes=project.assignment_minutes)
    s.execute(delete(Assignment).where(Assignment.project_id == project.id,
                                       Assignment.done.is_(False), Assignment.created_at < cutoff))


def _open_project(s, project_ref: Any) -> Project:
    project = find_project(s, project_ref)
    if project.archived:
        raise Conflict(f"project {project.name!r} is closed")
    return project


def _assign(s, project: Project, annotator_id: int, rng: random.Random) -> TaskView | None:
    """The annotator's open assignment, or a new one (None when nothing is left for them)."""
    _release_expired(s, project)
    open_a = s.execute(select(Assignment).where(
        Assignment.project_id == project.id, Assignment.annotator_id == annotator_id,
        Assignment.done.is_(False))).scalar_one_or_none()
    if open_a is not None:
        return _view(project, s.get(Item, open_a.item_id), open_a)
    item, slot = _pick_regular(s, project, annotator_id, rng)
    if item is None:
        return None
    if rng.random() < project.gold_rate:
        gold = _pick_gold(s, project, annotator_id, rng)
        if gold is not None:
            item, slot = gold, None
    order = list(range(len(json.loads(item.candidates_json))))
    rng.shuffle(order)  # left/right (display) order randomised per assignment
    a = Assignment(project_id=project.id, item_id=item.id, annotator_id=annotator_id,
                   slot=slot, order_json=json.dumps(order))
    s.add(a)
    s.flush()  # the unique indexes refuse a second slot holder or a second open task here
    return _view(project, item, a)


def next_task(db: Database, project_ref: Any, annotator_id: int,
              rng: random.Random | None = None) -> TaskView | None:
    """The annotator's open assignment in the project, or a new one; None when nothing is left.

    Gold items are mixed in with probability ``project.gold_rate`` (unannounced: they look like
    any other item) while regular work remains. At most one assignment per annotator and project
    is open (a unique index, so concurrent requests agree); open assignments older than
    ``project.assignment_minutes`` are handed to someone else. A closed project is a Conflict.
    """
    rng = rng or random.Random()
    for _attempt in range(ASSIGN_RETRIES):
        try:
            with db.transaction() as s:
                return _assign(s, _open_project(s, project_ref), annotator_id, rng)
        except (IntegrityError, OperationalError, _Retry):
            continue  # a concurrent request took the slot (or opened our task) first: again
    raise Conflict("too many annotators are competing for the same items; try again")


def get_task(db: Database, assignment_id: int, annotator_id: int) -> TaskView:
    """An assignment of this annotator (with their answer when done); NotFound for unknown ids,
    other people's tasks and tasks that expired unanswered."""
    with db.read() as s:
        a = s.get(Assignment, assignment_id)
        if a is None or a.annotator_id != annotator_id:
            raise NotFound(f"no task {assignment_id} (unanswered tasks are handed to someone "
                           "else after the project's time limit)")
        label = s.execute(select(Label).where(Label.assignment_id == a.id)).scalar_one_or_none()
        return _view(s.get(Project, a.project_id), s.get(Item, a.item_id), a, label)


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------

@dataclass
class LabelAck:
    label_id: int
    assignment_id: int
    duplicate: bool = False
    revised: bool = False


def submit_label(db: Database, assignment_id: int, annotator_id: int, data: dict) -> LabelAck:
    """Validate and store one label in one transaction; returns only after the commit.

    A repeated identical submission returns the stored label (``duplicate=True``); a different
    answer to an answered task revises the label (``revised=True``; the old value goes to
    ``label_history``) until the project is closed, then it is a Conflict. Unique constraints make
    concurrent duplicates impossible; the loser of a race gets the same answers as a sequential
    repeat.
    """
    value: dict = {}
    try:
        with db.transaction() as s:
            a = s.get(Assignment, assignment_id, with_for_update=True)
            if a is None or a.annotator_id != annotator_id:
                raise NotFound(f"no task {assignment_id} (unanswered tasks are handed to someone "
                               "else after the project's time limit)")
            project = s.get(Project, a.project_id)
            n_steps = len(item_steps(s.get(Item, a.item_id))) if project.task_type == "steps" else 0
            try:
                value, shown = tasks.parse_submission(project.task_type, data, json.loads(a.order_json),
                                                      n_steps)
            except tasks.InvalidSubmission as err:
                raise BadInput(str(err)) from None
            existing = s.execute(select(Label).where(Label.assignment_id == a.id)).scalar_one_or_none()
            if existing is not None:
                return _repeat(s, project, existing, value, shown)
            if project.archived:
                raise Conflict(f"project {project.name!r} is closed")
            seconds = (utcnow() - a.created_at).total_seconds() if a.created_at else None
            label = Label(assignment_id=a.id, project_id=a.project_id, item_id=a.item_id,
                          annotator_id=annotator_id, value_json=json.dumps(value, ensure_ascii=False),
                          display_choice=shown, seconds=seconds)
            s.add(label)
            a.done = True
            s.flush()
            ack = LabelAck(label.id, a.id)
        return ack
    except IntegrityError:
        with db.transaction() as s:
            existing = s.execute(select(Label).where(Label.assignment_id == assignment_id)
                                 ).scalar_one_or_none()
            if existing is None:
                raise NotFound(f"no task {assignment_id}") from None
            if json.loads(existing.value_json) == value:
                return LabelAck(existing.id, existing.assignment_id, duplicate=True)
            raise Conflict("this task was answered at the same moment; reload it") from None


def _repeat(s, project: Project, existing: Label, value: dict, shown: str | None) -> LabelAck:
    """An answered task answered again: the same answer is a duplicate, another one a revision."""
    if json.loads(existing.value_json) == value:
        return LabelAck(existing.id, existing.assignment_id, duplicate=True)
    if project.archived:
        raise Conflict(f"project {project.name!r} is closed; answers can no longer change")
    s.add(LabelHistory(label_id=existing.id, value_json=existing.value_json,
                       display_choice=existing.display_choice,
                       given_at=existing.revised_at or existing.created_at))
    existing.value_json = json.dumps(value, ensure_ascii=False)
    existing.display_choice = shown
    existing.revised_at = utcnow()
    return LabelAck(existing.id, existing.assignment_id, revised=True)


def label_history(db: Database, label_id: int) -> list[dict]:
    """Earlier values of a label, oldest first (the current value is on the label itself)."""
    with db.read() as s:
        rows = s.execute(select(LabelHistory).where(LabelHistory.label_id == label_id)
                         .order_by(LabelHistory.id)).scalars().all()
        return [{"value": json.loads(r.value_json), "display_choice": r.display_choice,
                 "given_at": r.given_at, "replaced_at": r.replaced_at} for r in rows]


def record_label(s, project: Project, item: Item, annotator: Annotator, value: dict,
                 display_choice: str | None = None) -> Label:
    """Store an already-validated label with its assignment (imports); caller owns the transaction."""
    slot = None
    if not item.is_gold:
        used = set(s.execute(select(Assignment.slot).where(Assignment.item_id == item.id)).scalars())
        slot = next(i for i in range(len(used) + 1) if i not in used)
    n = len(json.loads(item.candidates_json))
    a = Assignment(project_id=project.id, item_id=item.id, annotator_id=annotator.id, slot=slot,
                   order_json=json.dumps(list(range(n))), done=True)
    s.add(a)
    s.flush()
    label = Label(assignment_id=a.id, project_id=project.id, item_id=item.id,
                  annotator_id=annotator.id, value_json=json.dumps(value, ensure_ascii=False),
                  display_choice=display_choice)
    s.add(label)
    s.flush()
    return label


def get_or_create_annotator(s, name: str) -> Annotator:
    """An annotator by name inside an open transaction (imports); new ones get an unusable token
    until an admin issues one with ``rotate_token``."""
    name = name.strip()[:MAX_NAME] or "imported"
    ann = s.execute(select(Annotator).where(Annotator.name == name)).scalar_one_or_none()
    if ann is None:
        ann = Annotator(name=name, token_hash=hash_token(new_token()))
        s.add(ann)
        s.flush()
    return ann


def _remaining(s, project: Project, annotator_id: int) -> int:
    """Regular tasks still open to this annotator: their open one plus unseen items with a free
    slot (an upper bound while others label at the same time)."""
    seen = select(Assignment.item_id).where(Assignment.annotator_id == annotator_id,
                                            Assignment.project_id == project.id)
    taken = (select(Assignment.item_id).where(Assignment.project_id == project.id)
             .group_by(Assignment.item_id).having(func.count(Assignment.id) >= project.overlap))
    free = s.execute(select(func.count(Item.id)).where(
        Item.project_id == project.id, Item.is_gold.is_(False), Item.id.not_in(seen),
        Item.id.not_in(taken))).scalar_one()
    mine_open = s.execute(select(func.count(Assignment.id)).where(
        Assignment.project_id == project.id, Assignment.annotator_id == annotator_id,
        Assignment.done.is_(False))).scalar_one()
    return free + mine_open


def _progress(s, p: Project, annotator_id: int) -> dict:
    done = s.execute(select(func.count(Label.id)).where(
        Label.project_id == p.id, Label.annotator_id == annotator_id)).scalar_one()
    return {"id": p.id, "name": p.name, "task_type": p.task_type, "instructions": p.instructions,
            "archived": p.archived, "done": done, "remaining": _remaining(s, p, annotator_id)}


def progress(db: Database, project_ref: Any, annotator_id: int) -> dict:
    """One project as this annotator sees it: ``done`` (their answers, gold included) and
    ``remaining`` (see :func:`_remaining`)."""
    with db.read() as s:
        return _progress(s, find_project(s, project_ref), annotator_id)


def annotator_summary(db: Database, annotator_id: int) -> list[dict]:
    """:func:`progress` of every open project with items (no one else's labels are shown);
    archived and empty projects are left out."""
    with db.read() as s:
        regular = dict(s.execute(select(Item.project_id, func.count(Item.id))
                                 .where(Item.is_gold.is_(False)).group_by(Item.project_id)).all())
        projects = s.execute(select(Project).where(Project.archived.is_(False))
                             .order_by(Project.id)).scalars().all()
        return [_progress(s, p, annotator_id) for p in projects if regular.get(p.id)]
