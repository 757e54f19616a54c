"""``rlhfkit rounds`` on the tiny model: 2 rounds with AI-judge labels and DPO, killed in round 2
before its reward model, rerun: it resumes at that step, never redoing a finished one; the round
table (JSON, PNG, printed); a third run has nothing left to do; a changed config is refused."""

import json
import logging

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["model=tiny", "rounds=2", "eval_prompts=2", "prompts_per_round=3", "sampling.n=2",
        "sampling.max_new_tokens=8", "budget=3", "judge.model=tiny", "rm.ensemble.members=2",
        "rm.train.max_steps=2", "rm.max_length=64", "dpo.train.max_steps=2", "dpo.max_length=64",
        "dpo.optim.lr=1e-3", "dpo.samples.prompts=0", "eval_judge=length", "eval_sampling.max_new_tokens=8",
        "bootstrap=50"]


def state(out):
    return {int(r): steps for r, steps in json.loads((out / "state.json").read_text())["rounds"].items()}


def test_two_rounds_killed_mid_round_resume_without_redoing(tmp_path, capsys, caplog, monkeypatch):
    from rlhfkit.stages import reward

    args = [*ARGS, "reference=sft", "dpo_data=all", f"output_dir={tmp_path / 'run'}"]
    caplog.set_level(logging.INFO, logger="rlhfkit")
    out = tmp_path / "run"
    real_rm, calls = reward.run, []

    def rm_killed_in_round_2(cfg):
        calls.append(cfg.train.output_dir)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in round 2's reward model
        return real_rm(cfg)

    monkeypatch.setattr(reward, "run", rm_killed_in_round_2)
    assert run_cli("rounds", *args) == 130
    first = state(out)
    assert set(first[1]) == {"sample", "select", "label", "rm", "policy", "eval"}
    assert set(first[2]) == {"sample", "select", "label"}  # stopped mid-round
    samples_mtime = (out / "round-2" / "samples.jsonl").stat().st_mtime_ns

    monkeypatch.setattr(reward, "run", real_rm)
    capsys.readouterr()
    caplog.clear()
    assert run_cli("rounds", *args) == 0
    printed, said = capsys.readouterr(), caplog.text
    second = state(out)
    for r, steps in first.items():  # nothing finished before was run again
        for step, info in steps.items():
            assert second[r][step]["finished_at"] == info["finished_at"], (r, step)
    assert (out / "round-2" / "samples.jsonl").stat().st_mtime_ns == samples_mtime
    assert "resuming" in said and "round 2/2: rm" in said and "round 1/2" not in said

    # round 2: selected by the disagreement of round 1's ensemble, RM warm-started from round 1's
    r2 = second[2]
    assert r2["select"]["strategy"] == "disagreement" and r2["select"]["scored_by"] == first[1]["rm"]["model_dir"]
    assert second[1]["select"]["strategy"] == "random"  # round 1 has no reward model yet
    assert r2["rm"]["warm_start"] == first[1]["rm"]["model_dir"]
    assert r2["policy"]["start"] == first[1]["policy"]["model_dir"]
    assert r2["policy"]["reference"] == "tiny"  # reference=sft: kept at the SFT model
    n_train = first[1]["label"]["train"] + r2["label"]["train"]  # dpo_data=all: both rounds' labels
    assert len((out / "round-2" / "dpo_pairs.jsonl").read_text().splitlines()) == n_train
    selected = [json.loads(line) for line in (out / "round-2" / "selected.jsonl").read_text().splitlines()]
    stds = [row["reward_diff_std"] for row in selected]
    assert stds == sorted(stds, reverse=True)  # most disagreement first
    labels = (out / "round-2" / "labels.jsonl").read_text().splitlines()
    assert len(labels) == r2["label"]["train"] and json.loads(labels[0])["meta"]["judge"] == "ai:tiny"

    table = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [row["round"] for row in table] == [1, 2]
    assert [row["labels_total"] for row in table] == [3, 6] and table[0]["source"] == "ai:tiny"
    for row in table:
        lo, hi = row["win_vs_sft_ci"]
        assert lo <= row["win_vs_sft"] <= hi and 0 <= row["rm_heldout_accuracy"] <= 1
        assert row["kl_to_reference"] > 0  # DPO moved the policy away from its reference
    assert (out / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "win vs prev [CI]" in printed.out and "ai:tiny" in printed.out

    assert run_cli("rounds", *args) == 0  # nothing left to do
    assert "already finished" in capsys.readouterr().out and state(out) == second
    assert run_cli("rounds", *args, "rounds=3", "budget=2") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "budget: 3 -> 2" in err


def test_one_round_labelled_by_people_in_the_studio_web_app(tmp_path, capsys):
    pytest.importorskip("httpx", reason="TestClient needs httpx")
    from fastapi.testclient import TestClient

    from rlhfkit.feedback import service
    from rlhfkit.feedback.app import create_app
    from rlhfkit.feedback.db import open_database

    out, dbfile = tmp_path / "run", tmp_path / "studio.sqlite3"
    args = [*ARGS, "rounds=1", "labels=studio", f"studio.db={dbfile}", "studio.project=hh", f"output_dir={out}",
            "eval_judge=ai:tiny"]  # people made the labels, so the tiny AI judge may evaluate
    assert run_cli("rounds", *args) == 0  # stops: nobody has labelled yet
    printed = capsys.readouterr().out
    assert "studio project 'hh-round-1' (created): 0 of 3 pairs labelled" in printed and "rerun" in printed
    assert set(state(out)[1]) == {"sample", "select"}

    db = open_database(str(dbfile))
    _id, token = service.add_annotator(db, "alice")
    web = TestClient(create_app(db, "admin-token-for-tests-0123456789"))
    bearer = {"Authorization": f"Bearer {token}"}
    pid = service.project_info(db, "hh-round-1")["id"]
    for n, choice in enumerate(("A", "B", "A")):
        task = web.post(f"/api/projects/{pid}/next", headers=bearer).json()
        assert web.post(f"/api/tasks/{task['assignment_id']}/label", json={"choice": choice},
                        headers=bearer).status_code == 201
        if n == 0:  # a rerun while people are still labelling reports progress and waits again
            assert run_cli("rounds", *args) == 0
            assert "(waiting): 1 of 3 pairs labelled" in capsys.readouterr().out
    assert web.post(f"/api/projects/{pid}/next", headers=bearer).json() == {"done": True}
    db.close()

    assert run_cli("rounds", *args) == 0
    done = state(out)[1]
    assert set(done) == {"sample", "select", "label", "rm", "policy", "eval"}
    assert done["label"]["source"] == "studio:hh-round-1" and done["label"]["labels"] == 3
    table = json.loads((out / "rounds.json").read_text())["rounds"]
    assert table[0]["source"] == "studio:hh-round-1" and table[0]["labels"] == 3
    assert table[0]["eval_judge"] == "ai:tiny" and table[0]["win_vs_sft_ci"][0] <= table[0]["win_vs_sft"]


def test_a_ppo_round_optimises_against_its_reward_model(tmp_path):
    out = tmp_path / "run"
    ppo = ["policy=ppo", "ppo.train.max_steps=1", "ppo.ppo.prompts_per_batch=2", "ppo.ppo.samples_per_prompt=2",
           "ppo.train.micro_batch_size=2", "ppo.train.grad_accum=2", "ppo.rollout.max_new_tokens=8",
           "ppo.data.eval_prompts=0", "ppo.samples.prompts=0", "ppo.value_model=head"]
    assert run_cli("rounds", *ARGS, "rounds=1", *ppo, f"output_dir={out}") == 0
    done = state(out)[1]
    assert done["policy"]["method"] == "ppo" and done["policy"]["steps"] == 1
    run_cfg = (out / "round-1" / "policy" / "config.yaml").read_text()
    assert f"reward: {done['rm']['model_dir']}" in run_cfg  # PPO's reward is the round's reward model
    assert (out / "round-1" / "prompts.jsonl").read_text().count("\n") == 3  # the round's prompts


def test_the_labelling_model_cannot_be_the_eval_judge(tmp_path, capsys):
    from rlhfkit.models.loading import resolve_model_path

    same = f"eval_judge=ai:{resolve_model_path('tiny')}"  # the tiny judge, named by its folder
    assert run_cli("rounds", "model=tiny", "judge.model=tiny", same, f"output_dir={tmp_path / 'r'}") == 2
    err = capsys.readouterr().err.strip()
    assert "the same model as the labelling judge" in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # refused before anything was written
