"""``rlhfkit constitution`` on the tiny model: the supervised phase (revisions with provenance, the
revision win-rate report, SFT), the RL phase (AI preference pairs with soft labels, then DPO, or a
reward model and PPO), reruns that skip finished phases, and one-line errors."""

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["model=tiny", "max_prompts=3", "batch_size=4", "sl.answer_tokens=6", "sl.critique_tokens=6",
         "sl.revision_tokens=6", "sl.sft.train.max_steps=1", "sl.sft.train.progress=false",
         "rl.max_new_tokens=6"]
DPO = ["rl.method=dpo", "rl.dpo.train.max_steps=1", "rl.dpo.train.progress=false"]
PPO = ["rl.method=ppo", "rl.rm.train.max_steps=1", "rl.rm.freeze_layers=0", "rl.rm.train.progress=false",
       "rl.ppo.train.max_steps=1", "rl.ppo.ppo.prompts_per_batch=2", "rl.ppo.train.micro_batch_size=2",
       "rl.ppo.train.grad_accum=1", "rl.ppo.ppo.epochs=1", "rl.ppo.rollout.max_new_tokens=6",
       "rl.ppo.data.eval_prompts=1", "rl.ppo.train.progress=false"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def state(out):
    return json.loads((out / "state.json").read_text())["phases"]


def check_sl_outputs(out, k):
    from rlhfkit.data import read_records
    from rlhfkit.judge.constitution import load_constitution
    from rlhfkit.resources import demo_path

    c = load_constitution()
    records = read_records(out / "sl" / "sft_data.jsonl", "sft").records
    demo = [r["prompt"] for r in rows(demo_path("prompts.jsonl"))]
    assert [r.prompt[-1].content for r in records] == demo[:3]
    drawn = c.draw(3, k, seed=0, stream="revise")  # the seeded draw the run used
    for rec, principles in zip(records, drawn):
        prov = rec.meta["constitution"]
        assert prov["principles"] == [p.name for p in principles]
        assert [s["principle"] for s in prov["steps"]] == prov["principles"]
        assert all({"critique", "revision"} <= set(s) for s in prov["steps"])
        assert prov["original"] and rec.response  # the SFT target is the final revision
        assert rec.response == next((s["revision"] for s in reversed(prov["steps"]) if s["revision"]),
                                    prov["original"])
    report = json.loads((out / "report" / "revision_winrate.json").read_text())
    assert report["judge"] == "ai:tiny" and set(report["per_principle"]) <= set(c.names())
    judged = rows(out / "report" / "revision_verdicts.jsonl")
    assert report["all"]["pairs"] == len(judged) == sum(b["pairs"] for b in report["per_principle"].values())
    ok = [v for v in judged if v["status"] == "ok"]
    assert report["all"]["revision_preferred"] == sum(v["p_revision"] > 0.5 for v in ok)
    assert (out / "sl" / "sft" / "final" / "config.json").exists()


def check_rl_pairs(out):
    from rlhfkit.data import read_records
    from rlhfkit.judge.constitution import load_constitution

    wording = {p.name: p.principle for p in load_constitution().principles}
    pairs = read_records(out / "rl" / "pairs.jsonl", "pairs").records
    assert pairs
    for p in pairs:  # the judge's pick is chosen; its probability is the soft label
        assert 0.5 < p.label <= 1.0 and p.meta["judge"] == "ai:tiny"
        assert p.meta["principle"] == wording[p.meta["principle_name"]]
    summary = json.loads((out / "rl" / "judge_summary.json").read_text())
    assert summary["preference_pairs"] == len(pairs)


def test_both_phases_with_dpo_then_a_rerun_skips_everything(tmp_path, capsys):
    out = tmp_path / "cai"
    assert run_cli("constitution", *SMALL, "sl.revisions=2", *DPO, f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "revisions preferred over the originals by ai:tiny" in printed and "  all " in printed
    assert list(state(out)) == ["revise", "revision_report", "sl_train", "rl_data", "rl_policy"]
    check_sl_outputs(out, k=2)
    check_rl_pairs(out)
    assert (out / "rl" / "dpo" / "final" / "config.json").exists()
    dpo_config = (out / "rl" / "dpo" / "config.yaml").read_text()
    assert "soft_labels: true" in dpo_config and f"train: {out / 'rl' / 'pairs.jsonl'}" in dpo_config
    assert f"RL-CAI model (dpo): {out / 'rl' / 'dpo' / 'final'}" in printed

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "config.yaml"}
    assert run_cli("constitution", *SMALL, "sl.revisions=2", *DPO, f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert ("ran nothing; skipped (finished before) revise, revision_report, sl_train, rl_data, "
            "rl_policy") in printed
    assert "revisions preferred over the originals" in printed  # the report is shown again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten

    assert run_cli("constitution", *SMALL, "sl.revisions=1", *DPO, f"output_dir={out}") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "phase revise finished with other settings (sl.revisions: 2 -> 1)" in err


def test_sl_phase_alone_then_rl_with_a_reward_model_and_ppo(tmp_path, capsys):
    out = tmp_path / "cai"
    assert run_cli("constitution", *SMALL, "until=sl", "sl.report=false", f"output_dir={out}") == 0
    assert list(state(out)) == ["revise", "sl_train"] and not (out / "rl").exists()
    sft_data = (out / "sl" / "sft_data.jsonl").read_text()
    capsys.readouterr()
    assert run_cli("constitution", *SMALL, "until=rl", "sl.report=false", *PPO, f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "ran rl_data, rl_reward, rl_policy; skipped (finished before) revise, sl_train" in printed
    assert (out / "sl" / "sft_data.jsonl").read_text() == sft_data
    check_rl_pairs(out)
    assert (out / "rl" / "rm" / "final").is_dir() and (out / "rl" / "ppo" / "final" / "config.json").exists()
    assert state(out)["rl_policy"]["outputs"] == {"model": "rl/ppo/final", "method": "ppo"}


def test_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("principles:\n  - name: x\n    principle: p\n    critique: c\n")
    assert run_cli("constitution", "model=tiny", f"constitution={bad}", f"output_dir={tmp_path / 'o'}") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rlhfkit constitution: error: {bad}:2: principles[0].revision: expected a non-empty string"
    assert not (tmp_path / "o").exists()  # refused before the run folder or any model
    assert run_cli("constitution", "model=tiny", "rl.method=sft") == 2
    assert "rl.method: expected one of 'ppo', 'dpo'" in capsys.readouterr().err
    assert run_cli("constitution", "model=tiny", f"prompts={tmp_path / 'none.jsonl'}",
                   f"output_dir={tmp_path / 'o'}") == 2
    assert "no such data file" in capsys.readouterr().err
