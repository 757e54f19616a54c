"""Schema, migrations, assignment and label rules of the studio (SQLite)."""

import json
import random
import threading

import pytest

from rlhfkit.data.records import DataError
from rlhfkit.feedback import service
from rlhfkit.feedback.ingest import items_for_task, parse_record, read_prompt_file
from tests.unit.feedback.conftest import engine_at_revision


def test_migrations_match_the_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from rlhfkit.feedback.db import table_names
    from rlhfkit.feedback.models import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"projects", "items", "annotators", "assignments", "labels", "alembic_version"} <= set(
        table_names(db))


def test_sqlite_runs_in_wal_mode_and_reopening_is_idempotent(db, tmp_path):
    from rlhfkit.feedback.db import open_database

    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    again = open_database(str(tmp_path / "studio.sqlite3"))  # migrations already at head
    assert again.secret() == db.secret()
    again.close()


def test_bad_database_url_is_one_clear_error():
    from rlhfkit.feedback.db import StudioDBError, open_database

    with pytest.raises(StudioDBError, match="cannot use database"):
        open_database("nosuchdialect://x/y")
    with pytest.raises(StudioDBError, match="in-memory"):
        open_database("sqlite://")


def test_each_item_goes_to_exactly_overlap_annotators(db, make_pairwise):
    pid = make_pairwise(db, n=3, overlap=2)
    anns = [service.add_annotator(db, f"a{i}")[0] for i in range(4)]
    seen = {a: [] for a in anns}
    for a in anns:
        while True:
            view = service.next_task(db, pid, a, random.Random(a))
            if view is None:
                break
            service.submit_label(db, view.assignment_id, a, {"choice": "A"})
            seen[a].append(view.assignment_id)
    info = service.list_projects(db)[0]
    assert info["labels"] == 3 * 2  # 3 items x overlap 2: nobody gets more work than that
    from rlhfkit.feedback.report import load_project

    _info, _items, labels = load_project(db, pid)
    per_item = {}
    for lab in labels:
        per_item.setdefault(lab.item_id, set()).add(lab.annotator)
    assert all(len(v) == 2 for v in per_item.values()) and len(per_item) == 3


def test_open_assignment_is_returned_again_until_answered(db, make_pairwise):
    pid = make_pairwise(db, n=3)
    aid, _ = service.add_annotator(db, "ann")
    first = service.next_task(db, pid, aid)
    assert service.next_task(db, pid, aid).assignment_id == first.assignment_id


def test_display_order_is_random_recorded_and_mapped_back(db, make_pairwise):
    pid = make_pairwise(db, n=40, overlap=1)
    aid, _ = service.add_annotator(db, "ann")
    rng = random.Random(0)
    swapped = 0
    while (view := service.next_task(db, pid, aid, rng)) is not None:
        # always pick whatever is shown on the left
        service.submit_label(db, view.assignment_id, aid, {"choice": "A"})
        swapped += view.shown[0].startswith("bad")
    from rlhfkit.feedback.report import load_project

    _info, items, labels = load_project(db, pid)
    cands = {i.item_id: i.candidates for i in items}
    assert 5 < swapped < 35  # the left side holds the "bad" answer about half of the time
    for lab in labels:
        assert lab.display_choice == "left"
    preferred_bad = sum(cands[lab.item_id][lab.value["preferred"]].startswith("bad") for lab in labels)
    assert preferred_bad == swapped  # stored in candidate terms, not screen terms


def test_gold_items_are_mixed_in_and_screened(db, make_pairwise):
    pid = make_pairwise(db, n=6, overlap=1, gold={0, 1, 2}, gold_rate=1.0, min_gold=2)
    aid, _ = service.add_annotator(db, "careless")
    answered = 0
    while (view := service.next_task(db, pid, aid, random.Random(1))) is not None:
        # pick the *bad* answer every time
        choice = "A" if view.shown[0].startswith("bad") else "B"
        service.submit_label(db, view.assignment_id, aid, {"choice": choice})
        answered += 1
    assert answered == 6  # 3 regular + 3 gold, gold looked like any other task
    from rlhfkit.feedback.report import project_report

    row = project_report(db, pid)["annotators"][0]
    assert (row["gold_answered"], row["gold_correct"], row["flagged"]) == (3, 0, True)


def test_no_gold_once_regular_work_is_done(db, make_pairwise):
    pid = make_pairwise(db, n=2, overlap=1, gold={0}, gold_rate=0.0)
    aid, _ = service.add_annotator(db, "ann")
    view = service.next_task(db, pid, aid)
    service.submit_label(db, view.assignment_id, aid, {"choice": "tie"})
    assert service.next_task(db, pid, aid) is None  # the gold item alone is never served


def test_submit_validation_duplicates_and_ownership(db, make_pairwise):
    pid = make_pairwise(db, n=2)
    alice, _ = service.add_annotator(db, "alice")
    bob, _ = service.add_annotator(db, "bob")
    view = service.next_task(db, pid, alice)
    with pytest.raises(service.NotFound):
        service.submit_label(db, view.assignment_id, bob, {"choice": "A"})
    with pytest.raises(service.NotFound):
        service.get_task(db, view.assignment_id, bob)
    with pytest.raises(service.BadInput, match="choice"):
        service.submit_label(db, view.assignment_id, alice, {"choice": "C"})
    with pytest.raises(service.BadInput, match="reason: too long"):
        service.submit_label(db, view.assignment_id, alice, {"choice": "A", "reason": "x" * 2001})
    ack = service.submit_label(db, view.assignment_id, alice, {"choice": "A", "reason": "clearer"})
    again = service.submit_label(db, view.assignment_id, alice, {"choice": "A", "reason": "clearer"})
    assert again.duplicate and again.label_id == ack.label_id
    assert service.list_projects(db)[0]["labels"] == 1


def test_an_annotator_revises_their_label_until_the_project_closes(db, make_pairwise):
    pid = make_pairwise(db, n=2)
    alice, _ = service.add_annotator(db, "alice")
    view = service.next_task(db, pid, alice)
    first = service.submit_label(db, view.assignment_id, alice, {"choice": "A", "reason": "r1"})
    again = service.submit_label(db, view.assignment_id, alice, {"choice": "tie"})
    assert (again.label_id, again.revised, again.duplicate) == (first.label_id, True, False)
    left = view.shown[0]
    from rlhfkit.feedback.report import load_project

    _info, items, labels = load_project(db, pid)
    assert len(labels) == 1 and labels[0].value == {"preferred": "tie", "reason": ""}
    assert labels[0].display_choice == "tie"
    history = service.label_history(db, first.label_id)
    cands = {i.item_id: i.candidates for i in items}[labels[0].item_id]
    assert [h["value"] for h in history] == [{"preferred": cands.index(left), "reason": "r1"}]
    assert history[0]["display_choice"] == "left"
    assert service.get_task(db, view.assignment_id, alice).answer == {"choice": "tie", "reason": ""}
    service.set_archived(db, pid)
    with pytest.raises(service.Conflict, match="closed"):
        service.submit_label(db, view.assignment_id, alice, {"choice": "B"})
    assert service.get_task(db, view.assignment_id, alice).closed
    assert len(service.label_history(db, first.label_id)) == 1


def _race(n, call):
    """Run ``call`` in ``n`` threads at once; returns (results, exceptions)."""
    results, errors = [], []
    barrier = threading.Barrier(n)

    def run():
        barrier.wait()
        try:
            results.append(call())
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_identical_submissions_store_one_label(db, make_pairwise):
    pid = make_pairwise(db, n=1)
    aid, _ = service.add_annotator(db, "ann")
    view = service.next_task(db, pid, aid)
    results, errors = _race(8, lambda: service.submit_label(db, view.assignment_id, aid, {"choice": "B"}))
    assert not errors
    assert len({r.label_id for r in results}) == 1 and sum(not r.duplicate for r in results) == 1
    assert service.list_projects(db)[0]["labels"] == 1


@pytest.mark.parametrize("task,data,stored", [
    ("ranking", {"order": "2,3,1"}, None),
    ("score", {"score": "6"}, {"score": 6}),
    ("critique", {"critique": "  too vague  "}, {"critique": "too vague"}),
])
def test_other_task_types_store_candidate_terms(db, task, data, stored):
    pid = service.create_project(db, task, task, overlap=1)
    rec = parse_record({"prompt": "p", "responses": ["r0", "r1", "r2"]}, "t:1")
    service.add_items(db, pid, items_for_task(task, [rec]))
    aid, _ = service.add_annotator(db, "ann")
    view = service.next_task(db, pid, aid)
    service.submit_label(db, view.assignment_id, aid, data)
    from rlhfkit.feedback.report import load_project

    _info, items, labels = load_project(db, pid)
    if task == "ranking":  # display positions 2,3,1 -> the candidates shown there
        expected = [items[0].candidates.index(view.shown[p - 1]) for p in (2, 3, 1)]
        assert labels[0].value == {"ranking": expected}
    else:
        assert len(items) == 3  # score / critique: one item per response
        assert labels[0].value == stored


@pytest.mark.parametrize("task,data,message", [
    ("ranking", {"order": "1,1,2"}, "each position"),
    ("ranking", {"order": "x"}, "whole numbers"),
    ("score", {"score": "8"}, "1..7"),
    ("score", {"score": True}, "1..7"),
    ("critique", {"critique": "   "}, "empty"),
])
def test_invalid_submissions_name_the_field(db, task, data, message):
    pid = service.create_project(db, task, task, overlap=1)
    rec = parse_record({"prompt": "p", "responses": ["r0", "r1", "r2"]}, "t:1")
    service.add_items(db, pid, items_for_task(task, [rec]))
    aid, _ = service.add_annotator(db, "ann")
    view = service.next_task(db, pid, aid)
    with pytest.raises(service.BadInput, match=message):
        service.submit_label(db, view.assignment_id, aid, data)


def test_project_and_annotator_validation(db):
    with pytest.raises(service.BadInput, match="task_type"):
        service.create_project(db, "x", "essay")
    with pytest.raises(service.BadInput, match="overlap"):
        service.create_project(db, "x", "pairwise", overlap="many")
    with pytest.raises(service.BadInput, match="gold_rate"):
        service.create_project(db, "x", "pairwise", gold_rate=2)
    service.create_project(db, "x", "pairwise")
    with pytest.raises(service.Conflict, match="already exists"):
        service.create_project(db, "x", "score")
    service.add_annotator(db, "ann")
    with pytest.raises(service.Conflict):
        service.add_annotator(db, "ann")
    with pytest.raises(service.NotFound):
        service.project_info(db, "nope")


def test_tokens_are_hashed_rotated_and_disabled(db):
    aid, token = service.add_annotator(db, "ann")
    assert service.annotator_by_token(db, token)["id"] == aid
    from sqlalchemy import select

    from rlhfkit.feedback.models import Annotator

    with db.read() as s:
        stored = s.execute(select(Annotator.token_hash)).scalar_one()
    assert token not in stored and stored == service.hash_token(token)
    new = service.rotate_token(db, "ann")
    assert service.annotator_by_token(db, token) is None
    assert service.annotator_by_token(db, new)["id"] == aid
    service.set_active(db, aid, False)
    assert service.annotator_by_token(db, new) is None


# ------------------------------------------------------------------------------- ingestion ----

def test_read_prompt_file_shapes_and_errors(tmp_path):
    good = tmp_path / "c.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "a", "responses": ["x", "y", "z"]},
        {"prompt": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "b"}],
         "chosen": "c", "rejected": "d"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ans"}]},
        {"prompt": "only a prompt"},
    ]) + "\n")
    recs = read_prompt_file(good)
    assert [len(r.responses) for r in recs] == [3, 2, 1, 0]
    assert recs[1].prompt[0].role == "system" and recs[2].prompt[-1].content == "q"
    pairs = items_for_task("pairwise", recs[:2])
    assert len(pairs) == 3 + 1  # 3 candidates -> all 3 pairs; chosen/rejected -> 1
    with pytest.raises(DataError, match=r"c.jsonl:4: responses: missing"):
        items_for_task("score", recs)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "responses": ["x", "y"]}\n{"prompt": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: prompt"):
        read_prompt_file(bad)
    bad.write_text('{"prompt": "a", "responses": ["x", ""]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: responses\[1\]"):
        read_prompt_file(bad)
    bad.write_text('{"prompt": "a"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: json"):
        read_prompt_file(bad)
    bad.write_text('{"prompt": "a", "responses": ["x", "y"], "gold": 5}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: gold"):
        items_for_task("pairwise", read_prompt_file(bad))
    with pytest.raises(DataError, match="no such file"):
        read_prompt_file(tmp_path / "missing.jsonl")


def test_upgrade_from_the_first_schema_keeps_data_and_one_open_task(tmp_path):
    """0001 -> head on a database holding work: nothing lost, duplicate open tasks of one annotator
    (possible before 0002 under concurrency) reduced to the oldest."""
    from sqlalchemy import text

    from rlhfkit.feedback.db import open_database

    url = str(tmp_path / "old.sqlite3")
    engine = engine_at_revision(url, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO projects VALUES (1, 'p', 'pairwise', 2, 0, 0.7, 3, '', "
                             "'2026-01-01 00:00:00')")
        for i in (1, 2):
            conn.exec_driver_sql(f"INSERT INTO items VALUES ({i}, 1, '[]', '[\"a\", \"b\"]', 0, NULL, "
                                 "'', '2026-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO annotators VALUES (1, 'ann', 'h', 1, '2026-01-01 00:00:00')")
        for i in (1, 2):
            conn.exec_driver_sql(f"INSERT INTO assignments VALUES ({i}, 1, {i}, 1, 0, '[0, 1]', 0, "
                                 "'2026-01-01 00:00:00')")
    engine.dispose()
    db = open_database(url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM items")).scalar() == 2
        assert conn.execute(text("SELECT id FROM assignments")).scalars().all() == [1]
        row = conn.execute(text("SELECT archived, assignment_minutes FROM projects")).one()
        assert (bool(row[0]), row[1]) == (False, 60)
    db.close()


# --------------------------------------------------------------------- lifecycle (issue 11) ----

def _age_open_tasks(db, minutes):
    import datetime as dt

    from sqlalchemy import select

    from rlhfkit.feedback.models import Assignment

    with db.transaction() as s:
        for a in s.execute(select(Assignment).where(Assignment.done.is_(False))).scalars():
            a.created_at -= dt.timedelta(minutes=minutes)


def test_abandoned_tasks_expire_and_disabled_annotators_release_theirs(db, make_pairwise):
    pid = make_pairwise(db, n=1, overlap=1)
    service.create_project(db, "timed", "pairwise", assignment_minutes=5)
    alice, _ = service.add_annotator(db, "alice")
    bob, _ = service.add_annotator(db, "bob")
    held = service.next_task(db, pid, alice)
    assert service.next_task(db, pid, bob) is None  # the only slot is alice's
    _age_open_tasks(db, 59)
    assert service.next_task(db, pid, bob) is None  # within the default hour
    _age_open_tasks(db, 2)
    view = service.next_task(db, pid, bob)  # 61 minutes: handed to bob
    assert view is not None and view.shown and service.get_task(db, view.assignment_id, bob)
    with pytest.raises(service.NotFound, match="time limit"):
        service.submit_label(db, held.assignment_id, alice, {"choice": "A"})
    service.set_active(db, bob, False)  # disabled: bob's open task goes back to the pool
    assert service.next_task(db, pid, alice) is not None
    assert service.project_info(db, "timed")["assignment_minutes"] == 5
    with pytest.raises(service.BadInput, match="assignment_minutes"):
        service.create_project(db, "t2", "pairwise", assignment_minutes=0)


def test_one_open_task_per_annotator_even_when_requests_race(db, make_pairwise):
    pid = make_pairwise(db, n=20, overlap=1)
    aid, _ = service.add_annotator(db, "ann")
    views, errors = _race(8, lambda: service.next_task(db, pid, aid))
    assert not errors and len({v.assignment_id for v in views}) == 1
    from sqlalchemy.exc import IntegrityError

    from rlhfkit.feedback.models import Assignment

    with pytest.raises(IntegrityError):  # the unique index itself refuses a second open task
        with db.transaction() as s:
            s.add(Assignment(project_id=pid, item_id=views[0].assignment_id + 1, annotator_id=aid,
                             slot=0, order_json="[0, 1]"))


def test_project_creation_with_items_is_all_or_nothing(db, pair_rows):
    bad = [parse_record(r, f"t:{i + 1}") for i, r in enumerate(pair_rows(2))]
    bad[1].responses = ["only one"]
    with pytest.raises(service.BadInput, match="t:2"):
        service.create_project(db, "demo", "pairwise", items=items_for_task("pairwise", bad[:1]) + [
            service.ItemSpec(bad[1].prompt, ["only one"], None, "t:2")])
    with pytest.raises(service.NotFound):
        service.project_info(db, "demo")  # the name is still free
    good = [parse_record(r, f"t:{i + 1}") for i, r in enumerate(pair_rows(2))]
    pid = service.create_project(db, "demo", "pairwise", items=items_for_task("pairwise", good))
    assert service.list_projects(db)[0]["items"] == 2 and pid


def test_archive_hides_a_project_and_delete_removes_everything(db, make_pairwise):
    pid = make_pairwise(db, n=2, overlap=1)
    service.create_project(db, "empty", "pairwise")
    aid, _ = service.add_annotator(db, "ann")
    view = service.next_task(db, pid, aid)
    service.submit_label(db, view.assignment_id, aid, {"choice": "A"})
    service.submit_label(db, view.assignment_id, aid, {"choice": "B"})  # one history row
    summary = service.annotator_summary(db, aid)
    assert [(p["name"], p["done"], p["remaining"]) for p in summary] == [("p", 1, 1)]  # no "empty"
    service.set_archived(db, pid)
    assert service.annotator_summary(db, aid) == []
    with pytest.raises(service.Conflict, match="closed"):
        service.next_task(db, pid, aid)
    service.set_archived(db, pid, False)
    assert len(service.annotator_summary(db, aid)) == 1
    assert service.delete_project(db, pid) == "p"
    from sqlalchemy import func, select

    from rlhfkit.feedback.models import Assignment, Item, Label, LabelHistory

    with db.read() as s:
        for model in (Item, Assignment, Label, LabelHistory):
            assert s.execute(select(func.count()).select_from(model)).scalar_one() == 0, model
    assert [p["name"] for p in service.list_projects(db)] == ["empty"]


def test_progress_counts_done_and_remaining(db, make_pairwise):
    pid = make_pairwise(db, n=3, overlap=2)
    alice, _ = service.add_annotator(db, "alice")
    bob, _ = service.add_annotator(db, "bob")
    mine = lambda who: service.annotator_summary(db, who)[0]  # noqa: E731
    assert (mine(alice)["done"], mine(alice)["remaining"]) == (0, 3)
    view = service.next_task(db, pid, alice)
    assert mine(alice)["remaining"] == 3  # 1 open + 2 unseen
    service.submit_label(db, view.assignment_id, alice, {"choice": "A"})
    assert (mine(alice)["done"], mine(alice)["remaining"]) == (1, 2)
    assert mine(bob)["remaining"] == 3  # overlap 2: alice's item still has a slot for bob


def test_token_expiry(db):
    import datetime as dt

    from rlhfkit.feedback.models import Annotator

    aid, token = service.add_annotator(db, "ann", expires_days=1)
    assert service.annotator_by_token(db, token)["id"] == aid
    with db.transaction() as s:
        s.get(Annotator, aid).token_expires_at -= dt.timedelta(days=2)
    assert service.annotator_by_token(db, token) is None
    assert service.annotator_by_id(db, aid) is None  # sessions made with it end too
    new = service.rotate_token(db, "ann")  # no expiry given: never expires
    assert service.annotator_by_token(db, new)["id"] == aid
    with pytest.raises(service.BadInput, match="expires_days"):
        service.add_annotator(db, "other", expires_days=float("inf"))


@pytest.mark.parametrize("record,message", [
    ({"prompt": "", "responses": ["x", "y"]}, "prompt: must not be empty"),
    ({"prompt": "a\x00b", "responses": ["x", "y"]}, "NUL"),
    ({"prompt": "q", "responses": ["x\ud800", "y"]}, r"responses\[0\]: contains invalid Unicode"),
])
def test_items_a_database_cannot_store_are_refused(db, record, message):
    pid = service.create_project(db, "p", "pairwise")
    with pytest.raises(service.BadInput, match=message):
        service.add_items(db, pid, items_for_task("pairwise", [parse_record(record, "t:1")]))
    assert service.list_projects(db)[0]["items"] == 0
