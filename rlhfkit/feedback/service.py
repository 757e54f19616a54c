"""Studio operations: projects, items, annotators, assignments and labels.

Every function takes a :class:`~rlhfkit.feedback.db.Database` and does its work in one transaction
(retried when a unique constraint reports that a concurrent request won a race). The web app and
the CLI both call these; nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from rlhfkit.feedback import tasks
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.ingest import ItemSpec, prompt_from_json, prompt_to_json
from rlhfkit.feedback.models import Annotator, Assignment, Item, Label, Project, utcnow

MAX_NAME = 100
ASSIGN_RETRIES = 40
PICK_POOL = 64  # candidate items per draw: larger = fewer collisions between concurrent annotators


class StudioError(Exception):
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

def _check_name(name: str, what: str, limit: int) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{what}: must not be empty")
    name = name.strip()
    if len(name) > limit:
        raise BadInput(f"{what}: at most {limit} characters")
    return name


def _number(value: Any, what: str, cast, lo, hi):
    """``value`` as int/float within [lo, hi], else BadInput naming the field."""
    ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
    try:
        out = cast(value) if ok else None
        if cast is int and ok and float(value) != out:
            out = None
    except (TypeError, ValueError):
        out = None
    if out is None or out != out or not lo <= out <= hi:
        raise BadInput(f"{what}: expected a number in {lo}..{hi}, got {str(value)[:40]!r}")
    return out


def create_project(db: Database, name: str, task_type: str, overlap: int = 3, gold_rate: float = 0.1,
                   gold_threshold: float = 0.7, min_gold: int = 3, instructions: str = "") -> int:
    """Create a project; returns its id. ``overlap`` = annotators per regular item (r)."""
    name = _check_name(name, "name", 200)
    try:
        tasks.check_task_type(task_type)
    except ValueError as err:
        raise BadInput(f"task_type: {err}") from None
    overlap = _number(overlap, "overlap", int, 1, 50)
    gold_rate = _number(gold_rate, "gold_rate", float, 0.0, 1.0)
    gold_threshold = _number(gold_threshold, "gold_threshold", float, 0.0, 1.0)
    min_gold = _number(min_gold, "min_gold", int, 0, 10_000)
    if not isinstance(instructions, str) or len(instructions) > 20_000:
        raise BadInput("instructions: expected text of at most 20000 characters")
    try:
        with db.transaction() as s:
            project = Project(name=name, task_type=task_type, overlap=overlap, gold_rate=gold_rate,
                              gold_threshold=gold_threshold, min_gold=min_gold,
                              instructions=instructions)
            s.add(project)
            s.flush()
            return project.id
    except IntegrityError:
        raise Conflict(f"a project named {name!r} already exists") from None


def find_project(s, ref: Any) -> Project:
    """A project by id (int or digits) or by name; NotFound otherwise."""
    project = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and len(ref) < 10):
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
                "min_gold": p.min_gold, "instructions": p.instructions}


def add_items(db: Database, project_ref: Any, specs: Iterable[ItemSpec]) -> int:
    """Insert items (all or nothing); candidates must fit the project's task type."""
    specs = list(specs)
    with db.transaction() as s:
        project = find_project(s, project_ref)
        lo, hi = tasks.candidates_needed(project.task_type)
        for spec in specs:
            if not lo <= len(spec.candidates) <= hi:
                raise BadInput(f"{spec.source or 'item'}: {project.task_type} items need "
                               f"{lo}..{hi} candidates, got {len(spec.candidates)}")
            if spec.gold is not None and project.task_type == "critique":
                raise BadInput(f"{spec.source or 'item'}: critique projects have no gold items")
            s.add(Item(project_id=project.id, prompt_json=prompt_to_json(spec.prompt),
                       candidates_json=json.dumps(spec.candidates, ensure_ascii=False),
                       is_gold=spec.gold is not None,
                       gold_json=None if spec.gold is None else json.dumps(spec.gold),
                       source=(spec.source or "")[:500]))
    return len(specs)


def list_projects(db: Database) -> list[dict]:
    with db.read() as s:
        projects = s.execute(select(Project).order_by(Project.id)).scalars().all()
        item_counts = dict(s.execute(select(Item.project_id, func.count(Item.id))
                                     .where(Item.is_gold.is_(False)).group_by(Item.project_id)).all())
        label_counts = dict(s.execute(select(Label.project_id, func.count(Label.id))
                                      .group_by(Label.project_id)).all())
        return [{"id": p.id, "name": p.name, "task_type": p.task_type, "overlap": p.overlap,
                 "items": item_counts.get(p.id, 0), "labels": label_counts.get(p.id, 0)}
                for p in projects]


# --------------------------------------------------------------------------------------------------
# Annotators and tokens
# --------------------------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def add_annotator(db: Database, name: str) -> tuple[int, str]:
    """Create an annotator; returns ``(id, login token)``. Only the token's hash is stored."""
    name = _check_name(name, "name", MAX_NAME)
    token = new_token()
    try:
        with db.transaction() as s:
            ann = Annotator(name=name, token_hash=hash_token(token))
            s.add(ann)
            s.flush()
            return ann.id, token
    except IntegrityError:
        raise Conflict(f"an annotator named {name!r} already exists") from None


def rotate_token(db: Database, name: str) -> str:
    """Issue a new login token for an annotator (the old link stops working)."""
    token = new_token()
    with db.transaction() as s:
        ann = s.execute(select(Annotator).where(Annotator.name == name)).scalar_one_or_none()
        if ann is None:
            raise NotFound(f"no annotator {name!r}")
        ann.token_hash = hash_token(token)
    return token


def set_active(db: Database, annotator_id: int, active: bool) -> None:
    with db.transaction() as s:
        ann = s.get(Annotator, annotator_id)
        if ann is None:
            raise NotFound(f"no annotator {annotator_id}")
        ann.active = active


def annotator_by_token(db: Database, token: str) -> dict | None:
    """The active annotator owning ``token`` (constant-time compare on the hash), else None."""
    if not isinstance(token, str) or not 8 <= len(token) <= 200:
        return None
    digest = hash_token(token)
    with db.read() as s:
        ann = s.execute(select(Annotator).where(Annotator.token_hash == digest)).scalar_one_or_none()
        if ann is None or not ann.active or not hmac.compare_digest(ann.token_hash, digest):
            return None
        return {"id": ann.id, "name": ann.name, "token_hash": ann.token_hash}


def annotator_by_id(db: Database, annotator_id: int) -> dict | None:
    with db.read() as s:
        ann = s.get(Annotator, annotator_id)
        if ann is None or not ann.active:
            return None
        return {"id": ann.id, "name": ann.name, "token_hash": ann.token_hash}


def list_annotators(db: Database) -> list[dict]:
    with db.read() as s:
        anns = s.execute(select(Annotator).order_by(Annotator.id)).scalars().all()
        counts = dict(s.execute(select(Label.annotator_id, func.count(Label.id))
                                .group_by(Label.annotator_id)).all())
        return [{"id": a.id, "name": a.name, "active": a.active, "labels": counts.get(a.id, 0)}
                for a in anns]


# --------------------------------------------------------------------------------------------------
# Assignments
# --------------------------------------------------------------------------------------------------

@dataclass
class TaskView:
    """What an annotator sees for one assignment (candidates already in display order)."""

    assignment_id: int
    project_id: int
    project_name: str
    task_type: str
    instructions: str
    prompt: tuple
    shown: list
    done: bool
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"assignment_id": self.assignment_id, "project_id": self.project_id,
                "project": self.project_name, "task_type": self.task_type,
                "instructions": self.instructions,
                "prompt": [{"role": m.role, "content": m.content} for m in self.prompt],
                "candidates": self.shown, "done": self.done}


def _view(project: Project, item: Item, a: Assignment) -> TaskView:
    cands = json.loads(item.candidates_json)
    order = json.loads(a.order_json)
    return TaskView(a.id, project.id, project.name, project.task_type, project.instructions,
                    prompt_from_json(item.prompt_json), [cands[i] for i in order], a.done)


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


def next_task(db: Database, project_ref: Any, annotator_id: int,
              rng: random.Random | None = None) -> TaskView | None:
    """The annotator's open assignment in the project, or a new one; None when nothing is left.

    Gold items are mixed in with probability ``project.gold_rate`` (unannounced: they look like
    any other item) while regular work remains.
    """
    rng = rng or random.Random()
    for _attempt in range(ASSIGN_RETRIES):
        try:
            with db.transaction() as s:
                project = find_project(s, project_ref)
                open_a = s.execute(select(Assignment).where(
                    Assignment.project_id == project.id, Assignment.annotator_id == annotator_id,
                    Assignment.done.is_(False)).order_by(Assignment.id).limit(1)).scalar_one_or_none()
                if open_a is not None:
                    return _view(project, s.get(Item, open_a.item_id), open_a)
                item, slot = _pick_regular(s, project, annotator_id, rng)
                if item is None:
                    return None
                if rng.random() < project.gold_rate:
                    gold = _pick_gold(s, project, annotator_id, rng)
                    if gold is not None:
                        item, slot = gold, None
                n = len(json.loads(item.candidates_json))
                order = list(range(n))
                rng.shuffle(order)  # left/right (display) order randomised per assignment
                a = Assignment(project_id=project.id, item_id=item.id, annotator_id=annotator_id,
                               slot=slot, order_json=json.dumps(order))
                s.add(a)
                s.flush()
                return _view(project, item, a)
        except (IntegrityError, OperationalError, _Retry):
            continue  # a concurrent annotator took the slot (or the item) first: pick again
    raise Conflict("too many annotators are competing for the same items; try again")


def get_task(db: Database, assignment_id: int, annotator_id: int) -> TaskView:
    """An assignment of this annotator; NotFound for unknown ids and for other people's tasks."""
    with db.read() as s:
        a = s.get(Assignment, assignment_id)
        if a is None or a.annotator_id != annotator_id:
            raise NotFound(f"no task {assignment_id}")
        return _view(s.get(Project, a.project_id), s.get(Item, a.item_id), a)


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------

@dataclass
class LabelAck:
    label_id: int
    assignment_id: int
    duplicate: bool = False


def submit_label(db: Database, assignment_id: int, annotator_id: int, data: dict) -> LabelAck:
    """Validate and store one label in one transaction; returns only after the commit.

    A repeated identical submission returns the stored label (``duplicate=True``); a different
    second answer for the same task is a Conflict. Unique constraints make concurrent duplicates
    impossible; the loser of a race gets the same answers as a sequential repeat.
    """
    try:
        with db.transaction() as s:
            a = s.get(Assignment, assignment_id)
            if a is None or a.annotator_id != annotator_id:
                raise NotFound(f"no task {assignment_id}")
            project = s.get(Project, a.project_id)
            try:
                value, shown = tasks.parse_submission(project.task_type, data, json.loads(a.order_json))
            except tasks.InvalidSubmission as err:
                raise BadInput(str(err)) from None
            existing = s.execute(select(Label).where(Label.assignment_id == a.id)).scalar_one_or_none()
            if existing is not None:
                return _repeat(existing, value)
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
            existing = s.execute(select(Label).where(Label.assignment_id == assignment_id)).scalar_one()
            return _repeat(existing, value)


def _repeat(existing: Label, value: dict) -> LabelAck:
    if json.loads(existing.value_json) == value:
        return LabelAck(existing.id, existing.assignment_id, duplicate=True)
    raise Conflict("this task already has your answer; it cannot be changed")


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


def annotator_summary(db: Database, annotator_id: int) -> list[dict]:
    """Per project: how many tasks this annotator finished (no one else's labels are shown)."""
    with db.read() as s:
        projects = s.execute(select(Project).order_by(Project.id)).scalars().all()
        mine = dict(s.execute(select(Label.project_id, func.count(Label.id))
                              .where(Label.annotator_id == annotator_id)
                              .group_by(Label.project_id)).all())
        return [{"id": p.id, "name": p.name, "task_type": p.task_type, "done": mine.get(p.id, 0),
                 "instructions": p.instructions} for p in projects]
