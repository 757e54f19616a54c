"""Reward modelling through the CLI on the tiny model: it learns, evaluates, interoperates with HF,
trains ensembles and mixed objectives from several files, LoRA and frozen layers."""

import json

import pytest
import torch

from tests.conftest import run_cli

BASE = ["model=tiny", "train.progress=false", "normalize.max_examples=32"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rm_train_learns_then_eval_reports_and_writes_scores(tmp_path, capsys):
    out = tmp_path / "rm"
    assert run_cli("rm", "train", *BASE, f"train.output_dir={out}", "train.max_steps=16",
                   "optim.lr=3e-3", "train.eval_every=8", "train.early_stopping_patience=0") == 0
    train = [r for r in rows(out / "metrics.jsonl") if "loss" in r]
    first = sum(r["accuracy"] for r in train[:4]) / 4
    last = sum(r["accuracy"] for r in train[-4:]) / 4
    assert last > first and last >= 0.75, (first, last)
    assert train[-1]["loss"] < train[0]["loss"]
    printed = capsys.readouterr().out
    assert "dev after: accuracy" in printed and "normalisation: mean" in printed
    info = json.loads((out / "final" / "rlhfkit_reward.json").read_text())
    assert info["normalization"]["std"] > 0 and info["calibration"]["n"] == 32

    scores = tmp_path / "scores.jsonl"
    assert run_cli("rm", "eval", "--model", str(out / "final"), "--data", "demo:pairs",
                   "--out", str(scores)) == 0
    printed = capsys.readouterr().out
    for text in ("accuracy", "mean loss", "reward margin", "ECE", "RESULT name=rm_eval"):
        assert text in printed
    per_pair = rows(scores)
    assert len(per_pair) == 40
    accuracy = float(printed.split("RESULT name=rm_eval accuracy=")[1].split()[0])
    assert accuracy == pytest.approx(sum(r["correct"] for r in per_pair) / 40)
    assert accuracy >= 0.75  # mostly training pairs: the model fits them

    from transformers import AutoModelForSequenceClassification

    from rlhfkit import load_reward_model
    from rlhfkit.data.collate import pad
    from rlhfkit.data.sources import load
    from rlhfkit.data.tokenize import encode_example

    hf = AutoModelForSequenceClassification.from_pretrained(out / "final")
    rm = load_reward_model(out / "final")
    pair = load("demo:pairs", "pairs").records[0]
    ids = [encode_example(rm.tokenizer, pair.prompt, r, 512).input_ids for r in (pair.chosen, pair.rejected)]
    with torch.no_grad():
        theirs = hf(input_ids=pad(ids, 0), attention_mask=pad([[1] * len(s) for s in ids], 0)).logits[:, 0]
    ours = rm.score([pair.prompt, pair.prompt], [pair.chosen, pair.rejected], normalize=False)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert per_pair[0]["r_chosen"] == pytest.approx(float(ours[0]), abs=1e-4)


def test_ensemble_trains_members_and_reports_disagreement(tmp_path, capsys):
    out = tmp_path / "ens"
    assert run_cli("rm", "train", *BASE, f"train.output_dir={out}", "train.max_steps=3",
                   "optim.lr=1e-3", "ensemble.members=2") == 0
    printed = capsys.readouterr().out
    assert "member 0:" in printed and "member 1:" in printed and "disagreement" in printed
    from rlhfkit.models.reward import RewardEnsemble, load_reward_model

    ens = load_reward_model(out / "final")
    assert isinstance(ens, RewardEnsemble) and len(ens.members) == 2
    a, b = (m.model.score.weight for m in ens.members)
    assert not torch.equal(a, b)  # different seeds
    assert ens.calibration_range is not None
    assert run_cli("rm", "eval", "--model", str(out / "final"), "--data", "demo:pairs",
                   "--reduce", "mean_minus_std") == 0
    printed = capsys.readouterr().out
    assert "member 1: accuracy" in printed and "member disagreement" in printed


def test_mixed_objective_from_several_files(tmp_path):
    out = tmp_path / "mixed"
    assert run_cli("rm", "train", *BASE, f"train.output_dir={out}", "train.max_steps=3",
                   "data.rankings=demo:rankings", "data.scores=demo:scores", "data.language=demo:language",
                   "objective.judge=tiny", "objective.weights.score=0.5", "objective.weights.language=0.25",
                   "data.dev_fraction=0.2") == 0
    judged = rows(out / "judge_scores.jsonl")
    from rlhfkit.data.sources import load
    from rlhfkit.stages.reward_groups import judge_language_feedback

    records = load("demo:language", "language").records  # each record beside its own rating
    assert [r["feedback"] for r in judged] == [r.feedback for r in records]
    assert [r["judge_score"] for r in judged] == pytest.approx(
        judge_language_feedback(records, "tiny"), abs=1e-4)  # the ratings are checked by hand in
    # tests/unit/reward/test_reward_stage.py
    info = json.loads((out / "final" / "rlhfkit_reward.json").read_text())
    assert info["extra"]["objective"] == "bradley_terry+plackett_luce+score+language"
    evals = [r for r in rows(out / "metrics.jsonl") if "eval/loss" in r]
    assert {"eval/compare/loss", "eval/score/loss", "eval/language/loss"} <= set(evals[-1])


def test_lora_and_frozen_layers_save_plain_hf_models(tmp_path):
    from safetensors.torch import load_file

    from rlhfkit.models.loading import resolve_model_path

    lora = tmp_path / "lora"
    assert run_cli("rm", "train", *BASE, f"train.output_dir={lora}", "train.max_steps=2", "lora.enabled=true",
                   "lora.r=4", "optim.lr=1e-2") == 0
    merged = load_file(str(lora / "final" / "model.safetensors"))
    assert not any("lora" in k for k in merged) and "score.weight" in merged
    assert (lora / "final" / "adapter" / "adapter_model.safetensors").exists()
    assert (lora / "final" / "rlhfkit_reward.json").exists()
    frozen = tmp_path / "frozen"
    assert run_cli("rm", "train", *BASE, f"train.output_dir={frozen}", "train.max_steps=2", "freeze_layers=1",
                   "optim.lr=1e-2") == 0
    base = load_file(str(__import__("pathlib").Path(resolve_model_path("tiny")) / "model.safetensors"))
    after = load_file(str(frozen / "final" / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(base[key], after[key])
    assert not torch.equal(base["model.layers.1.self_attn.q_proj.weight"],
                           after["model.layers.1.self_attn.q_proj.weight"])


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert run_cli("rm", "train", *BASE, f"train.output_dir={tmp_path / 'x'}", "objective.weight=1") == 2
    assert "objective.weight: unknown config key" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"prompt": "hi", "chosen": 3, "rejected": "b"}\n')
    assert run_cli("rm", "train", *BASE, f"train.output_dir={tmp_path / 'y'}", f"data.train={bad}") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "chosen" in err
    assert run_cli("rm", "eval", "--model", "tiny", "--data", "demo:pairs") == 2
    assert "not a reward model" in capsys.readouterr().err
