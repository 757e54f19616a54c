"""Database access for the studio: SQLite file (default, WAL mode) or PostgreSQL by URL.

``open_database(url)`` creates the engine, runs the Alembic migrations to head and returns a
:class:`Database` whose :meth:`Database.transaction` is the only way the studio writes: one
transaction per unit of work, committed before the caller acknowledges anything.

SQLite notes: every transaction starts with ``BEGIN IMMEDIATE`` (takes the write lock up front, so
two writers never dead-lock on a read->write upgrade; they queue on ``busy_timeout`` instead), the
journal is WAL (readers never block the writer) and foreign keys are enforced.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rlhfkit.errors import RlhfkitError
from rlhfkit.feedback.models import Setting

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 30_000


class StudioDBError(RlhfkitError, RuntimeError):
    """The database URL is unusable or the database cannot be reached; one line says why."""


def normalize_url(db: str) -> str:
    """A plain file path becomes ``sqlite:///<absolute path>``; ``postgresql://`` uses psycopg 3."""
    text = str(db).strip()
    if not text:
        raise StudioDBError("empty database URL")
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().resolve())
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if text in ("sqlite://", "sqlite:///:memory:"):
        raise StudioDBError("an in-memory SQLite database cannot be shared by the server's threads; "
                            "give a file path")
    return text


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover
        readonly = conn.get_execution_options().get("studio_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    try:
        if url.startswith("sqlite"):
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False,
                                                      "timeout": SQLITE_BUSY_MS / 1000},
                                   pool_size=20, max_overflow=60, pool_timeout=60)
            _sqlite_events(engine)
        else:
            engine = create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True,
                                   pool_timeout=60)
    except Exception as err:  # bad dialect name, missing driver, ...
        raise StudioDBError(f"cannot use database {url!r}: {err}") from err
    return engine


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to head (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as err:
        if type(err).__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
            raise StudioDBError(f"cannot migrate database {engine.url!r}: "
                                f"{str(err).splitlines()[0]}") from err
        raise


class Database:
    """Engine + session factory; use ``with db.transaction() as s:`` for every unit of work."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(engine.execution_options(studio_readonly=True),
                                     expire_on_commit=False)
        # SQLite has one writer at a time: queue this process's writers on a lock instead of
        # letting them poll the file lock with sleeps (busy_timeout still covers other processes).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on normal exit, rolled back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._sessions() as session:
            with session.begin():
                yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (SQLite: a deferred BEGIN, so it never waits for writers)."""
        with self._readers() as session:  # autobegins on first use; close() rolls back
            yield session

    def secret(self) -> str:
        """The per-database secret that signs cookies (created on first use, shared by workers)."""
        from sqlalchemy.exc import IntegrityError

        try:
            with self.transaction() as s:
                row = s.get(Setting, "cookie_secret")
                if row is None:
                    row = Setting(key="cookie_secret", value=secrets.token_hex(32))
                    s.add(row)
                return row.value
        except IntegrityError:  # another process created it at the same moment
            with self.read() as s:
                return s.get(Setting, "cookie_secret").value

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, migrate: bool = True) -> Database:
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return Database(engine)


def table_names(db: Database) -> list[str]:
    from sqlalchemy import inspect

    return sorted(inspect(db.engine).get_table_names())


def get_setting(db: Database, key: str) -> str | None:
    with db.read() as s:
        return s.execute(select(Setting.value).where(Setting.key == key)).scalar_one_or_none()
