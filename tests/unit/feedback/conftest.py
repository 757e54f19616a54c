"""Fixtures for the feedback studio tests: a fresh SQLite database per test."""

import pytest

pytest.importorskip("sqlalchemy", reason="the studio needs sqlalchemy (pip install sqlalchemy alembic)")
pytest.importorskip("alembic", reason="the studio needs alembic")


@pytest.fixture
def db(tmp_path):
    from rlhfkit.feedback.db import open_database

    database = open_database(str(tmp_path / "studio.sqlite3"))
    yield database
    database.close()


def engine_at_revision(url, revision):
    """A SQLite engine whose database is migrated up to ``revision`` only (to test upgrades)."""
    from alembic import command
    from alembic.config import Config

    from rlhfkit.feedback.db import MIGRATIONS_DIR, make_engine

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def pair_records(n, gold=()):
    """n pairwise prompt records with two responses each; indices in ``gold`` get gold answer 0."""
    out = []
    for i in range(n):
        rec = {"prompt": f"question {i}", "responses": [f"good answer {i}", f"bad answer {i}"]}
        if i in gold:
            rec["gold"] = 0
        out.append(rec)
    return out


def _add_pairwise_project(db, n=4, overlap=2, gold=(), gold_rate=0.0, name="p", **kw):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    pid = service.create_project(db, name, "pairwise", overlap=overlap, gold_rate=gold_rate, **kw)
    recs = [parse_record(r, f"t:{i + 1}") for i, r in enumerate(pair_records(n, gold))]
    service.add_items(db, pid, items_for_task("pairwise", recs))
    return pid


@pytest.fixture
def make_pairwise():
    """``make_pairwise(db, n=4, overlap=2, gold=(), gold_rate=0.0, name="p")`` -> project id."""
    return _add_pairwise_project


@pytest.fixture
def pair_rows():
    return pair_records
