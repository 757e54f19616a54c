"""People as the judge: answer pairs for the studio and the studio's verdicts read back into win
rates (hand-made labels; the studio's own import is checked on the file eval writes)."""

import json

import pytest

from rlhfkit.data.records import PreferencePair, as_conversation
from rlhfkit.eval.people import people_pair_rows, people_verdicts
from tests.conftest import run_cli

QUESTIONS = ["What is 2+2?", "Name a colour.", "Say hi.", "Capital of France?"]
PROMPTS = [as_conversation(q) for q in QUESTIONS]  # as eval holds them
POLICY = [["Four."], ["Blue"], [""], ["Paris, of course."]]
BASELINE = [["4"], ["Blue"], ["Hi"], ["Lyon"]]


def test_pairs_skip_empty_and_identical_answers_and_hide_which_is_which():
    rows = people_pair_rows(1, "runs/ppo", PROMPTS, POLICY, BASELINE, n=10, seed=0)
    assert [r["eval"]["prompt_index"] for r in rows] == [0, 3]  # "Blue" twice and an empty answer skipped
    for r in rows:
        p = r["eval"]["prompt_index"]
        assert r["responses"][r["eval"]["policy_response"]] == POLICY[p][0]
        assert set(r["responses"]) == {POLICY[p][0], BASELINE[p][0]}
        assert r["prompt"] == QUESTIONS[p]  # a single user turn is written as its text
    orders = {people_pair_rows(1, "x", PROMPTS, POLICY, BASELINE, 10, seed)[0]["eval"]["policy_response"]
              for seed in range(20)}
    assert orders == {0, 1}  # the policy's answer is shown first or second at random
    assert len(people_pair_rows(1, "x", PROMPTS, POLICY, BASELINE, n=1, seed=0)) == 1


def test_verdicts_from_the_studio_export():
    rows = people_pair_rows(1, "runs/ppo", PROMPTS, POLICY, BASELINE, n=10, seed=0)
    labels = [PreferencePair(PROMPTS[0], "Four.", "4"),  # the policy's answer chosen: 1
              PreferencePair(PROMPTS[0], "4", "Four.", label=0.5),  # a tie: 0.5
              PreferencePair(PROMPTS[3], "Lyon", " Paris, of course. ", label=0.8),  # baseline, soft: 0.2
              PreferencePair(PROMPTS[1], "Red", "Green")]  # not from this file: ignored
    assert people_verdicts(rows, labels) == {1: [(0, 1.0), (0, 0.5), (3, pytest.approx(0.2))]}


def test_eval_people_reads_verdicts_into_a_win_rate(tmp_path, capsys):
    rows = people_pair_rows(1, "runs/ppo", PROMPTS, POLICY, BASELINE, n=10, seed=0)
    pairs = tmp_path / "people_pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = tmp_path / "labels.jsonl"  # as rlhfkit studio export writes PreferencePair records
    labels.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": QUESTIONS[0], "chosen": "Four.", "rejected": "4", "label": 1.0},
        {"prompt": QUESTIONS[0], "chosen": "Four.", "rejected": "4", "label": 1.0},
        {"prompt": QUESTIONS[3], "chosen": "Lyon", "rejected": "Paris, of course.", "label": 0.5}]))
    assert run_cli("eval", "people", f"pairs={pairs}", f"labels={labels}", "bootstrap=200") == 0
    assert "3 of 3 exported labels matched" in capsys.readouterr().out
    s = json.loads((tmp_path / "people.json").read_text())
    (p,) = s["policies"]
    assert (p["name"], p["labels"], p["prompts"], p["wins"], p["ties"], p["losses"]) == ("runs/ppo", 3, 2, 2, 1, 0)
    assert p["win_rate"] == pytest.approx(2.5 / 3)
    # resampling 2 prompts: both from prompt 0 -> 1.0; both from prompt 3 -> 0.5; one of each -> 2.5/3
    assert p["win_rate_ci"] == [0.5, 1.0]
    assert run_cli("report", str(tmp_path)) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Judged by people" in page and "could not read" not in page
    wrong = tmp_path / "other.jsonl"
    wrong.write_text(json.dumps({"prompt": "x", "chosen": "a", "rejected": "b"}) + "\n")
    assert run_cli("eval", "people", f"pairs={pairs}", f"labels={wrong}") == 2
    assert "no label matches" in capsys.readouterr().err


def test_the_studio_imports_the_pairs_file(tmp_path):
    rows = people_pair_rows(1, "runs/ppo", PROMPTS, POLICY, BASELINE, n=10, seed=0)
    pairs = tmp_path / "people_pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = str(tmp_path / "studio.sqlite3")
    assert run_cli("studio", "create-project", "eval", "--task", "pairwise", "--db", db) == 0
    assert run_cli("studio", "import", "eval", str(pairs), "--db", db) == 0
