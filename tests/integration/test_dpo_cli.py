"""DPO through the CLI on the tiny model: it learns the training preferences, reuses its cached
reference log-probs on resume, the variants and LoRA run, bad input is named."""

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli

BASE = ["model=tiny", "samples.prompts=0", "train.progress=false", "max_length=128"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dpo_raises_implicit_reward_accuracy_on_its_training_pairs(tmp_path, capsys):
    out = tmp_path / "dpo"
    # dev = the training pairs themselves: the accuracy measured is on the pairs it trained on
    assert run_cli("dpo", *BASE, f"train.output_dir={out}", "data.dev=demo:pairs", "train.max_steps=12",
                   "optim.lr=3e-3", "train.micro_batch_size=8") == 0
    metrics = rows(out / "metrics.jsonl")
    train = [r for r in metrics if "loss" in r]
    evals = [r for r in metrics if "eval/accuracy" in r]
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    assert train[-1]["loss"] < 0.5 and train[-1]["rewards/accuracy"] > 0.8
    assert evals[-1]["eval/accuracy"] >= 0.9 and evals[-1]["eval/margin"] > 0
    before = json.loads((out / "eval_before.json").read_text())
    assert before["ties"] == 1.0 and before["accuracy"] == 0.0 and before["pairs"] == 40  # policy == ref
    printed = capsys.readouterr().out
    assert "implicit-reward accuracy 0.0% ->" in printed and "(ties 100% ->" in printed
    from rlhfkit.models.loading import resolve_model_path

    base = load_file(str(Path(resolve_model_path("tiny")) / "model.safetensors"))
    final = load_file(str(out / "final" / "model.safetensors"))
    assert any(not torch.equal(base[k], final[k]) for k in base)


def test_resume_reuses_the_cached_reference(tmp_path, capsys):
    out = tmp_path / "dpo"
    args = [*BASE, f"train.output_dir={out}", "data.dev_fraction=0.2", "optim.lr=1e-3"]
    assert run_cli("dpo", *args, "train.max_steps=2") == 0
    cache = out / "reference_logps.pt"
    stamp = cache.stat().st_mtime_ns
    assert "computed once" in capsys.readouterr().out
    assert run_cli("dpo", *args, "train.max_steps=4") == 0  # continues from the step-2 checkpoint
    assert "reference log-probs: reused" in capsys.readouterr().out
    assert cache.stat().st_mtime_ns == stamp
    assert [r["step"] for r in rows(out / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
    # other tokens: resuming that run is refused, naming the key; a restart recomputes the cache
    assert run_cli("dpo", *args, "train.max_steps=5", "max_length=100") == 2
    assert "max_length: 128 -> 100" in capsys.readouterr().err
    assert run_cli("dpo", *args, "train.max_steps=5", "max_length=100", "train.resume=never") == 0
    assert "computed once" in capsys.readouterr().out


@pytest.mark.parametrize("variant", ["ipo", "simpo", "orpo", "cdpo"])
def test_variants_run(tmp_path, variant):
    out = tmp_path / variant
    extra = ["label_smoothing=0.1"] if variant == "cdpo" else []
    extra += ["beta=2.0"] if variant == "simpo" else []
    assert run_cli("dpo", *BASE, f"train.output_dir={out}", f"loss={variant}", *extra,
                   "train.max_steps=2", "optim.lr=1e-3") == 0
    train = [r for r in rows(out / "metrics.jsonl") if "loss" in r]
    assert len(train) == 2 and all(math.isfinite(r["loss"]) for r in train)
    # reference-free variants never compute (or store) reference log-probs
    assert (out / "reference_logps.pt").exists() == (variant in ("ipo", "cdpo"))
    if variant == "orpo":
        assert "nll" in train[0] and "log_odds_ratio" in train[0]


def test_lora_trains_an_adapter_against_the_base(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rlhfkit")
    out = tmp_path / "lora"
    assert run_cli("dpo", *BASE, f"train.output_dir={out}", "lora.enabled=true", "lora.r=4",
                   "train.max_steps=3", "optim.lr=1e-2") == 0
    assert "with the LoRA adapter off" in caplog.text
    assert (out / "final" / "adapter" / "adapter_model.safetensors").exists()
    assert not any("lora" in k for k in load_file(str(out / "final" / "model.safetensors")))
    assert (out / "reference_logps.pt").exists()


def test_rankings_expand_into_pairs(tmp_path):
    out = tmp_path / "rank"
    assert run_cli("dpo", *BASE, f"train.output_dir={out}", "data.train=demo:rankings",
                   "data.format=rankings", "data.dev_fraction=0", "train.max_steps=1") == 0
    assert (out / "final" / "model.safetensors").exists()


def test_bad_loss_name_fails_before_work(tmp_path, capsys):
    assert run_cli("dpo", *BASE, f"train.output_dir={tmp_path / 'x'}", "loss=kto") == 2
    assert "loss: expected one of" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_pair_names_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n'
                    '{"prompt": "hi", "chosen": 3, "rejected": "b"}\n')
    assert run_cli("dpo", *BASE, f"train.output_dir={tmp_path / 'y'}", f"data.train={data}") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "chosen" in err
