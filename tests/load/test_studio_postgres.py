"""The studio's integrity rules on a real PostgreSQL (started for the test with Debian's initdb /
pg_ctl, skipped when PostgreSQL or psycopg is missing): one open task per annotator and project
under concurrent requests, text PostgreSQL cannot store refused as a 422, abandoned tasks expire.
"""

import datetime as dt
import importlib.util
import random
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="the studio needs sqlalchemy")

_spec = importlib.util.spec_from_file_location("studio_load", Path(__file__).with_name("studio_load.py"))
studio_load = sys.modules.setdefault("studio_load", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(studio_load)


@pytest.fixture(scope="module")
def pg_url():
    try:
        with studio_load.temp_postgres() as url:
            yield url
    except studio_load.Unavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def pg(pg_url):
    """A fresh schema: drop everything, migrate to head."""
    from sqlalchemy import create_engine, text

    from rlhfkit.feedback.db import open_database

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    db = open_database(pg_url)
    yield db
    db.close()


def _project(db, n=20, overlap=1, name="p"):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    recs = [parse_record({"prompt": f"q{i}", "responses": [f"a{i}", f"b{i}"]}, f"t:{i}") for i in range(n)]
    return service.create_project(db, name, "pairwise", overlap=overlap, gold_rate=0,
                                  items=items_for_task("pairwise", recs))


def test_concurrent_next_requests_open_one_task(pg):
    """Issue 11 item 19: 8 simultaneous `next` requests of one annotator opened 4 tasks."""
    from sqlalchemy import func, select

    from rlhfkit.feedback import service
    from rlhfkit.feedback.models import Assignment

    pid = _project(pg)
    aid, _ = service.add_annotator(pg, "ann")
    barrier, views, errors = threading.Barrier(8), [], []

    def ask(seed):
        try:
            barrier.wait()
            views.append(service.next_task(pg, pid, aid, random.Random(seed)))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    for _round in range(3):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pg.read() as s:
            n_open = s.execute(select(func.count(Assignment.id)).where(
                Assignment.annotator_id == aid, Assignment.done.is_(False))).scalar_one()
        assert not errors and n_open == 1 and len({v.assignment_id for v in views}) == 1
        service.submit_label(pg, views[0].assignment_id, aid, {"choice": "A"})
        views.clear()


@pytest.mark.parametrize("reason,problem", [("nul \x00 byte", "NUL"), ("lone \ud800", "Unicode")])
def test_text_postgresql_cannot_store_is_a_bad_input(pg, reason, problem):
    """Issue 11 item 16: NUL characters and lone surrogates crashed with 500 on PostgreSQL."""
    from rlhfkit.feedback import service
    from rlhfkit.feedback.ingest import ItemSpec
    from rlhfkit.data.records import Message

    pid = _project(pg, n=1)
    aid, _ = service.add_annotator(pg, "ann")
    view = service.next_task(pg, pid, aid)
    with pytest.raises(service.BadInput, match=problem):
        service.submit_label(pg, view.assignment_id, aid, {"choice": "A", "reason": reason})
    with pytest.raises(service.BadInput, match=problem):
        service.add_items(pg, pid, [ItemSpec((Message("user", "q"),), ["a", reason], None, "t:9")])
    with pytest.raises(service.BadInput, match=problem):
        service.create_project(pg, f"x{reason}", "score")
    with pytest.raises(service.BadInput, match=problem):
        service.add_annotator(pg, reason)
    assert service.submit_label(pg, view.assignment_id, aid, {"choice": "A"}).label_id


def test_abandoned_task_expires(pg):
    """Issue 11 item 19 on PostgreSQL: an unanswered task goes back to the pool after the limit."""
    from rlhfkit.feedback import service
    from rlhfkit.feedback.models import Assignment

    pid = _project(pg, n=1)
    alice, _ = service.add_annotator(pg, "alice")
    bob, _ = service.add_annotator(pg, "bob")
    held = service.next_task(pg, pid, alice)
    assert service.next_task(pg, pid, bob) is None
    with pg.transaction() as s:
        s.get(Assignment, held.assignment_id).created_at -= dt.timedelta(minutes=61)
    assert service.next_task(pg, pid, bob) is not None
