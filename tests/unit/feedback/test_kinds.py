"""Binary (thumbs up/down) and step-level feedback in the studio: submissions, gold, agreement
(hand-computed), export read back by the data readers, the migration, and the two task pages."""

import json
import math

import pytest

from rlhfkit.data.readers import read_records
from rlhfkit.data.records import DataError
from rlhfkit.feedback import service, tasks
from rlhfkit.feedback.ingest import items_for_task, parse_record
from tests.unit.feedback.conftest import engine_at_revision

STEPS_TEXT = "12 + 7 = 19\n\n19 * 3 = 56\n\n56 - 5 = 51\n\nThe answer is 51."


def make_project(db, task, records, overlap=2, name="k"):
    pid = service.create_project(db, name, task, overlap=overlap, gold_rate=0.0)
    service.add_items(db, pid, items_for_task(task, [parse_record(r, f"in.jsonl:{i + 1}")
                                                     for i, r in enumerate(records)]))
    return pid


def answer_all(db, pid, annotator_id, answer):
    """Give every task of the project ``answer(view)``; returns {prompt text: assignment id}."""
    done = {}
    while (view := service.next_task(db, pid, annotator_id)) is not None:
        service.submit_label(db, view.assignment_id, annotator_id, answer(view))
        done[view.prompt[-1].content] = view.assignment_id
    return done


# ------------------------------------------------------------------------------- task rules ----

def test_binary_and_step_submissions_gold_and_units():
    value, shown = tasks.parse_submission("binary", {"thumb": "Up", "reason": " clear "}, [0])
    assert (value, shown) == ({"label": True, "reason": "clear"}, None)
    assert tasks.parse_submission("binary", {"thumb": False}, [0])[0]["label"] is False
    for bad in ({"thumb": "yes"}, {"thumb": 1}, {}, {"thumb": "up", "score": 3}):
        with pytest.raises(tasks.InvalidSubmission):
            tasks.parse_submission("binary", bad, [0])
    assert tasks.parse_submission("steps", {"steps": ["good", "neutral", "bad"]}, [0], 3)[0] == {
        "steps": [1, 0, -1]}
    assert tasks.parse_submission("steps", {"steps": "1,-1"}, [0], 2)[0] == {"steps": [1, -1]}
    with pytest.raises(tasks.InvalidSubmission, match="steps: expected 3 marks"):
        tasks.parse_submission("steps", {"steps": [1, 1]}, [0], 3)
    with pytest.raises(tasks.InvalidSubmission, match="step 2: choose good, neutral or bad"):
        tasks.parse_submission("steps", {"steps": ["1", None]}, [0], 2)
    assert tasks.parse_gold("binary", False, 1) == {"label": False}
    assert tasks.parse_gold("steps", [1, -1, -1], 1) == {"steps": [1, -1, -1]}
    for task, raw in (("binary", 1), ("binary", "true"), ("steps", [1, 2]), ("steps", [True]), ("steps", [])):
        with pytest.raises(ValueError):
            tasks.parse_gold(task, raw, 1)
    # steps gold: right when the first bad step is found (neutral vs good does not matter)
    assert tasks.gold_correct("steps", {"steps": [0, 1, -1, 1]}, {"steps": [1, 1, -1, -1]})
    assert not tasks.gold_correct("steps", {"steps": [1, -1, -1, -1]}, {"steps": [1, 1, -1, -1]})
    assert tasks.gold_correct("steps", {"steps": [1, 0]}, {"steps": [1, 1]})
    assert tasks.agreement_units("binary", 7, {"label": True}) == [(7, True)]
    assert tasks.agreement_units("steps", 7, {"steps": [1, -1]}) == [((7, 0), 1), ((7, 1), -1)]


# ----------------------------------------------------------------------------------- binary ----

def test_binary_project_agreement_export_and_readers(db, tmp_path):
    """alice: up up down down; bob: up down down down (items q0..q3).
    Cohen: p_o = 3/4, p_e = (2*1 + 2*3)/16 = 1/2 -> kappa = 0.5. Fleiss: P_bar = 3/4,
    p_up = 3/8 -> P_e = 34/64 -> (3/4 - 34/64) / (30/64) = 7/15. Krippendorff (nominal):
    o_up,down = o_down,up = 1, n_up = 3, n_down = 5 -> alpha = 1 - 7 * 2 / (2 * 3 * 5) = 8/15."""
    from rlhfkit.feedback.export import export_jsonl, export_records
    from rlhfkit.feedback.report import project_report

    pid = make_project(db, "binary", [{"prompt": f"q{i}", "response": f"answer {i}"} for i in range(4)])
    a, _ = service.add_annotator(db, "alice")
    b, _ = service.add_annotator(db, "bob")
    alice = {"q0": "up", "q1": "up", "q2": "down", "q3": "down"}
    bob = {"q0": "up", "q1": "down", "q2": "down", "q3": "down"}
    answer_all(db, pid, a, lambda v: {"thumb": alice[v.prompt[-1].content], "reason": "r"})
    answer_all(db, pid, b, lambda v: {"thumb": bob[v.prompt[-1].content]})
    agr = project_report(db, pid)["agreement"]
    assert agr["units"] == 4 and agr["cohen_pairs"][0]["kappa"] == 0.5
    assert agr["fleiss_kappa"] == round(7 / 15, 4) and agr["alpha_nominal"] == round(8 / 15, 4)

    from collections import Counter

    dropped = Counter()
    recs = export_records(db, pid, dropped=dropped)
    assert [(r.prompt[-1].content, r.label) for r in recs] == [("q0", True), ("q2", False), ("q3", False)]
    assert dropped == Counter({"split vote": 1})  # q1: one up, one down
    assert recs[0].meta["votes"] == {"up": 2, "down": 0} and recs[0].meta["reasons"] == ["r"]
    assert len(export_records(db, pid, method="raw")) == 8
    ds = export_records(db, pid, method="dawid-skene")
    assert len(ds) == 4 and set(ds[1].meta["posterior"]) == {"true", "false"}

    path = tmp_path / "thumbs.jsonl"
    assert export_jsonl(db, pid, path) == 3
    first = json.loads(path.read_text().splitlines()[0])
    assert (first["prompt"], first["response"], first["label"]) == ("q0", "answer 0", True)
    back = read_records(path, "binary")
    assert [r.label for r in back.records] == [True, False, False] and not back.dropped


def test_binary_gold_screening_and_revision(db):
    from rlhfkit.feedback.report import project_report

    pid = service.create_project(db, "g", "binary", overlap=1, gold_rate=1.0, min_gold=1)
    recs = [{"prompt": "gold q", "response": "bad answer", "gold": False},
            {"prompt": "q", "response": "fine answer"}]
    service.add_items(db, pid, items_for_task("binary", [parse_record(r, f"f:{i}") for i, r in enumerate(recs)]))
    a, _ = service.add_annotator(db, "alice")
    done = answer_all(db, pid, a, lambda v: {"thumb": "up"})
    row = project_report(db, pid)["annotators"][0]
    assert (row["gold_answered"], row["gold_correct"], row["flagged"]) == (1, 0, True)
    ack = service.submit_label(db, done["gold q"], a, {"thumb": "down"})
    assert ack.revised and service.get_task(db, done["gold q"], a).answer == {"thumb": "down", "reason": ""}
    assert project_report(db, pid)["annotators"][0]["gold_correct"] == 1
    with pytest.raises(DataError, match="f:9: gold: expected true"):
        items_for_task("binary", [parse_record({"prompt": "x", "response": "y", "gold": 1}, "f:9")])


# ------------------------------------------------------------------------------------ steps ----

def test_steps_item_split_once_marks_agreement_and_export(db, tmp_path):
    """alice [1, 1, -1, -1], bob [1, 0, -1, -1] on one 4-step answer: units are steps.
    Cohen: p_o = 3/4, p_e = (2*1 + 2*2)/16 = 3/8 -> kappa = (3/4 - 3/8) / (5/8) = 0.6.
    Fleiss: P_bar = 3/4, p = (3, 1, 4)/8 -> P_e = 26/64 -> (48 - 26) / (64 - 26) = 22/38.
    Krippendorff: n = (n_good, n_neutral, n_bad) = (3, 1, 4), one good/neutral disagreement (o = 1
    each way). Nominal: 1 - 7 * 2 / (64 - 26) = 24/38. Ordinal (bad < neutral < good):
    d2(neutral, good) = ((1 + 3) / 2)^2 = 4, d2(bad, neutral) = 2.5^2, d2(bad, good) = (8 - 3.5)^2;
    expected = 2 * (3*1*4 + 4*1*6.25 + 4*3*20.25) = 560 -> 1 - 7 * (2 * 4) / 560 = 0.9.
    Majority per step: step 2 splits (good vs neutral) -> neutral 0."""
    from rlhfkit.feedback.export import export_jsonl
    from rlhfkit.feedback.report import project_report

    pid = make_project(db, "steps", [{"prompt": "Start with 12, add 7, multiply by 3, subtract 5.",
                                      "response": STEPS_TEXT}])
    a, _ = service.add_annotator(db, "alice")
    b, _ = service.add_annotator(db, "bob")
    view = service.next_task(db, pid, a)
    assert view.steps == ["12 + 7 = 19", "19 * 3 = 56", "56 - 5 = 51", "The answer is 51."]
    assert view.to_json()["steps"] == view.steps
    with pytest.raises(service.BadInput, match="steps: expected 4 marks"):
        service.submit_label(db, view.assignment_id, a, {"steps": [1, 1, -1]})
    service.submit_label(db, view.assignment_id, a, {"steps": [1, 1, -1, -1]})
    assert service.get_task(db, view.assignment_id, a).answer == {"steps": [1, 1, -1, -1]}
    answer_all(db, pid, b, lambda v: {"steps": ["good", "neutral", "bad", "bad"]})
    agr = project_report(db, pid)["agreement"]
    assert agr["units"] == 4 and agr["cohen_pairs"][0]["kappa"] == 0.6
    assert agr["fleiss_kappa"] == round(22 / 38, 4) and agr["alpha_nominal"] == round(24 / 38, 4)
    assert agr["alpha_ordinal"] == 0.9

    path = tmp_path / "steps.jsonl"
    assert export_jsonl(db, pid, path) == 1
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert row["steps"] == view.steps and row["step_labels"] == [1, 0, -1, -1]
    assert row["meta"]["split_steps"] == [1] and row["meta"]["step_agreement"] == [1.0, 0.5, 1.0, 1.0]
    (rec,) = read_records(path, "steps").records
    assert rec.step_labels == (1, 0, -1, -1)
    assert export_jsonl(db, pid, path, method="raw") == 2
    assert export_jsonl(db, pid, path, method="dawid-skene") == 1


def test_steps_items_are_checked_on_import(db):
    pid = service.create_project(db, "s", "steps", overlap=1)
    with pytest.raises(service.BadInput, match=r"f:1: gold: 2 marks for 4 steps"):
        service.add_items(db, pid, items_for_task("steps", [parse_record(
            {"prompt": "p", "response": STEPS_TEXT, "gold": [1, -1]}, "f:1")]))
    long = "\n\n".join(f"step {i}" for i in range(101))
    with pytest.raises(service.BadInput, match=r"responses\[0\]: expected 1..100 steps"):
        service.add_items(db, pid, items_for_task("steps", [parse_record({"prompt": "p", "response": long}, "f:2")]))
    assert service.list_projects(db)[0]["items"] == 0


def test_upgrade_from_0002_adds_item_steps(tmp_path):
    from sqlalchemy import text

    from rlhfkit.feedback.db import open_database

    url = str(tmp_path / "old.sqlite3")
    engine = engine_at_revision(url, "0002")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO projects (id, name, task_type, overlap, gold_rate, gold_threshold, "
                             "min_gold, instructions, created_at) VALUES (1, 'p', 'score', 1, 0, 0.7, 3, '', "
                             "'2026-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO items VALUES (1, 1, '[{\"role\": \"user\", \"content\": \"q\"}]', "
                             "'[\"a\"]', 0, NULL, '', '2026-01-01 00:00:00')")
    engine.dispose()
    db = open_database(url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT id, steps_json FROM items")).all() == [(1, None)]
    db.close()


def test_kappa_values_are_finite_floats():  # guards the hand-computed numbers above
    from rlhfkit.feedback import quality

    assert math.isclose(quality.cohen_kappa([1, 1, -1, -1], [1, 0, -1, -1]), 0.6)
    assert math.isclose(quality.cohen_kappa([True, True, False, False], [True, False, False, False]), 0.5)


def test_cli_binary_project_export_counts_split_votes(tmp_path, capsys):
    from rlhfkit.feedback import cli
    from rlhfkit.feedback.db import open_database

    db_path = str(tmp_path / "s.sqlite3")
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"r{i}"}) + "\n" for i in range(2)))
    assert cli.main(["studio", "create-project", "t", "--task", "binary", "--overlap", "2", "--gold-rate", "0",
                     "--db", db_path, "--file", str(items)]) == 0
    db = open_database(db_path)
    a, _ = service.add_annotator(db, "alice")
    b, _ = service.add_annotator(db, "bob")
    answer_all(db, "t", a, lambda v: {"thumb": "up"})
    answer_all(db, "t", b, lambda v: {"thumb": "up" if v.prompt[-1].content == "q0" else "down"})
    db.close()
    capsys.readouterr()
    out = tmp_path / "thumbs.jsonl"
    assert cli.main(["studio", "export", "t", "--db", db_path, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 1 records to {out} (left out: split vote: 1)"
    assert [r.label for r in read_records(out, "binary").records] == [True]


@pytest.mark.parametrize("command", ["export-labelstudio", "export-argilla", "import-labelstudio",
                                     "import-argilla"])
def test_cli_interop_refuses_binary_and_steps_in_one_line(tmp_path, capsys, command):
    from rlhfkit.feedback import cli

    db_path = str(tmp_path / "s.sqlite3")
    assert cli.main(["studio", "create-project", "t", "--task", "steps", "--db", db_path]) == 0
    capsys.readouterr()
    target = ["--out", str(tmp_path / "x.json")] if command.startswith("export") else [str(tmp_path / "x.json")]
    assert cli.main(["studio", command, "t", "--db", db_path, *target]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("Label Studio / Argilla: steps projects have no Label Studio / Argilla mapping yet; "
                        "use `rlhfkit studio export` (format=records)") and "\n" not in err
