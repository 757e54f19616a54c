"""``rlhfkit judge`` on the tiny model: verdicts, judged pairs with soft labels, the summary, the
confidence filter, the studio route, and one-line errors."""

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge_writes_verdicts_pairs_and_summary(tmp_path, capsys):
    from rlhfkit.data import read_records

    out = tmp_path / "j"
    assert run_cli("judge", "model=tiny", "max_pairs=5", "batch_size=2", f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "5 pairs judged: 5 ok, 0 unparseable, 0 refused" in printed and "position-inconsistent" in printed
    verdicts = rows(out / "verdicts.jsonl")
    assert len(verdicts) == 5 and all(v["status"] == "ok" and v["kept"] for v in verdicts)
    for v in verdicts:  # the average of the two orders, and the label of the demo pair (A = chosen)
        assert v["prob"] == pytest.approx((v["p_ab"] + v["p_ba"]) / 2) and v["label"] == 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == "ai:tiny" and summary["labelled"] == 5
    assert summary["inconsistent"] == sum(not v["consistent"] for v in verdicts)
    judged = read_records(out / "judged_pairs.jsonl", "pairs").records
    assert len(judged) == sum(v["prob"] != 0.5 for v in verdicts)
    for pair, v in zip(judged, verdicts):  # chosen = the judge's pick, label = its probability
        assert pair.label == pytest.approx(max(v["prob"], 1 - v["prob"]), abs=1e-6)
        assert pair.chosen == (v["response_a"] if v["prob"] > 0.5 else v["response_b"])
        assert pair.meta["judge"] == "ai:tiny"


def test_confidence_filter_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "sure"
    assert run_cli("judge", "model=tiny", "max_pairs=3", "min_confidence=0.99", f"output_dir={out}") == 0
    assert not any(v["kept"] for v in rows(out / "verdicts.jsonl"))
    assert (out / "judged_pairs.jsonl").read_text() == ""
    capsys.readouterr()
    assert run_cli("judge", "model=tiny", "prompt.reasoning=true", f"output_dir={out}") == 2
    assert "prompt.reasoning needs backend=http" in capsys.readouterr().err
    assert run_cli("judge", "model=tiny", "min_confidence=2", f"output_dir={out}") == 2
    assert run_cli("judge", "modle=tiny") == 2
    assert "modle: unknown config key" in capsys.readouterr().err
    assert run_cli("judge", "model=tiny", f"pairs={tmp_path / 'none.jsonl'}", f"output_dir={out}") == 2
    assert "no such data file" in capsys.readouterr().err


def test_judge_labels_a_studio_project(tmp_path, capsys):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.ingest import items_for_task, parse_record
    from rlhfkit.feedback.report import project_report

    url = str(tmp_path / "studio.sqlite3")
    db = open_database(url)
    pid = service.create_project(db, "demo", "pairwise", overlap=2, gold_rate=0.0)
    recs = [parse_record({"prompt": f"q{i}", "responses": [f"yes {i}", f"no {i}"]}, f"t:{i}") for i in range(3)]
    service.add_items(db, pid, items_for_task("pairwise", recs))
    db.close()
    args = ["judge", "model=tiny", f"studio_db={url}", "studio_project=demo", f"output_dir={tmp_path / 'o'}"]
    assert run_cli(*args) == 0
    db = open_database(url)
    rows_ = project_report(db, "demo")["annotators"]
    db.close()
    assert [(r["annotator"], r["labels"]) for r in rows_] == [("ai:tiny", 3)]
    assert run_cli(*args) == 0  # a rerun judges nothing new and stores nothing twice
    db = open_database(url)
    assert project_report(db, "demo")["progress"]["labels"] == 3
    db.close()
    assert rows(tmp_path / "o" / "verdicts.jsonl") == []
    capsys.readouterr()
    assert run_cli("judge", "model=tiny", f"studio_db={url}", "studio_project=nope",
                   f"output_dir={tmp_path / 'o'}") == 2
    assert "studio_project=nope: no project 'nope'" in capsys.readouterr().err
