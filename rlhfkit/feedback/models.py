"""Database schema of the feedback studio (SQLAlchemy 2 ORM). Migrations live in ``migrations/``.

Integrity rules are enforced by the database, not by application checks alone:

* ``assignments (item_id, annotator_id)`` unique: an annotator sees an item at most once;
* ``assignments (item_id, slot)`` unique: a regular item has at most ``overlap`` assignments
  (slots 0..overlap-1; gold items use slot NULL, which unique constraints ignore);
* ``assignments (project_id, annotator_id) WHERE NOT done`` unique: at most one open assignment per
  annotator and project, however many ``next`` requests race;
* ``labels (assignment_id)`` and ``labels (item_id, annotator_id)`` unique: one label per assignment,
  so concurrent or repeated submissions can never create duplicates. A revised label keeps its row;
  the value it replaced goes to ``label_history``.

JSON payloads are stored as text (portable between SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, false, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rlhfkit.feedback import TASK_TYPES  # noqa: F401  (re-exported: the values of task_type)

OPEN_ONLY = text("NOT done")  # the partial-index condition (SQLite and PostgreSQL)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Key/value settings, e.g. the secret that signs session cookies (created once per database)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task_type: Mapped[str] = mapped_column(String(16))
    overlap: Mapped[int] = mapped_column(Integer, default=3)  # annotators per regular item (r)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1)  # P(next task is a gold item)
    gold_threshold: Mapped[float] = mapped_column(Float, default=0.7)  # flag below this accuracy
    min_gold: Mapped[int] = mapped_column(Integer, default=3)  # gold answers needed before flagging
    instructions: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # archived = closed: hidden from annotators, no new tasks, labels can no longer be revised
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # an open task is handed to someone else after this many minutes without an answer
    assignment_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default=text("60"))


class Item(Base):
    """One unit of work: a prompt and its candidates (2 for pairwise, k for ranking, 1 otherwise).

    ``steps_json`` (step projects only): the answer split into steps when the item was created, so
    a label's marks always refer to the steps its annotator saw, whatever the splitting rules later.
    """

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    prompt_json: Mapped[str] = mapped_column(Text)
    candidates_json: Mapped[str] = mapped_column(Text)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    steps_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class Annotator(Base):
    """A person with a login token; only the token's SHA-256 is stored."""

    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # None: never
    # part of every session cookie; logout and token rotation increment it, ending all sessions
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Assignment(Base):
    """An item handed to an annotator, with the order its candidates were shown in."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_assignment_item_annotator"),
        UniqueConstraint("item_id", "slot", name="uq_assignment_item_slot"),
        Index("ix_assignment_project_annotator", "project_id", "annotator_id", "done"),
        Index("uq_assignment_open", "project_id", "annotator_id", unique=True,
              sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"))
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    order_json: Mapped[str] = mapped_column(Text)  # display position -> candidate index
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Label(Base):
    """One submitted judgement, stored in candidate indices (independent of the display order)."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("assignment_id", name="uq_label_assignment"),
        UniqueConstraint("item_id", "annotator_id", name="uq_label_item_annotator"),
        Index("ix_label_project", "project_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"))
    value_json: Mapped[str] = mapped_column(Text)
    display_choice: Mapped[str | None] = mapped_column(String(8), nullable=True)  # left/right/tie
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revised_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # last change


class LabelHistory(Base):
    """A value a label held before its annotator revised it (oldest first by ``id``)."""

    __tablename__ = "label_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)
    value_json: Mapped[str] = mapped_column(Text)
    display_choice: Mapped[str | None] = mapped_column(String(8), nullable=True)
    given_at: Mapped[dt.datetime] = mapped_column(DateTime)  # when this value was submitted
    replaced_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
