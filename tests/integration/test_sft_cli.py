"""SFT through the CLI on the tiny model: it learns, it resumes exactly, LoRA works, bad input is named."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli

BASE = ["model=tiny", "samples.prompts=1", "samples.max_new_tokens=4", "train.progress=false"]


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_learns_and_saves_a_hf_folder(tmp_path, capsys):
    out = tmp_path / "sft"
    assert run_cli("sft", *BASE, f"train.output_dir={out}", "train.max_steps=12", "optim.lr=3e-3",
                   "train.micro_batch_size=8") == 0
    metrics = rows(out / "metrics.jsonl")
    train = [r for r in metrics if "loss" in r]
    evals = [r for r in metrics if "eval/loss" in r]
    assert train[-1]["loss"] < train[0]["loss"] - 0.5
    assert evals and evals[-1]["eval/loss"] < 10.5
    printed = capsys.readouterr().out
    assert "dev loss" in printed and "before:" in printed and "after:" in printed
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "final")  # a plain HF folder
    base = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert model.config.num_hidden_layers == 2 and base


def test_resume_continues_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = [*BASE, "train.max_steps=6", "train.save_every=3", "train.keep_checkpoints=5",
            "optim.lr=1e-3", "data.dev_fraction=0", "samples.prompts=0"]
    assert run_cli("sft", *args, f"train.output_dir={full}") == 0
    shutil.copytree(full, part)
    # simulate a run killed right after the step-3 checkpoint
    shutil.rmtree(part / "final")
    shutil.rmtree(part / "checkpoints" / "step-000006")
    assert run_cli("sft", *args, f"train.output_dir={part}") == 0
    a, b = weights(full / "final"), weights(part / "final")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in rows(part / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # the resumed log reads as one run
    full_loss = [r["loss"] for r in rows(full / "metrics.jsonl") if "loss" in r]
    part_loss = [r["loss"] for r in rows(part / "metrics.jsonl") if "loss" in r]
    assert full_loss == part_loss


def test_lora_trains_adapter_and_saves_merged_model(tmp_path):
    out = tmp_path / "lora"
    assert run_cli("sft", *BASE, f"train.output_dir={out}", "train.max_steps=3", "lora.enabled=true",
                   "lora.r=4", "optim.lr=1e-2") == 0
    assert (out / "final" / "adapter" / "adapter_model.safetensors").exists()
    merged = weights(out / "final")
    assert not any("lora" in k for k in merged)
    from rlhfkit.models.loading import resolve_model_path

    from pathlib import Path

    base = load_file(str(Path(resolve_model_path("tiny")) / "model.safetensors"))
    changed = [k for k in base if "q_proj" in k and not torch.equal(base[k], merged[k])]
    assert changed, "merging the adapter must change the adapted weights"


def test_packing_runs(tmp_path):
    out = tmp_path / "packed"
    assert run_cli("sft", *BASE, f"train.output_dir={out}", "train.max_steps=2", "packing=true") == 0
    assert (out / "final" / "model.safetensors").exists()


def test_bad_config_key_fails_before_work(tmp_path, capsys):
    assert run_cli("sft", *BASE, f"train.output_dir={tmp_path / 'x'}", "train.lrr=1") == 2
    assert "train.lrr: unknown config key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_data_record_names_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n{"prompt": "hi", "response": 3}\n')
    assert run_cli("sft", *BASE, f"train.output_dir={tmp_path / 'y'}", f"data.train={data}") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "response" in err


@pytest.mark.parametrize("name", ["./no/such/folder"])
def test_missing_model_is_one_line(tmp_path, capsys, name):
    assert run_cli("sft", f"model={name}", f"train.output_dir={tmp_path / 'z'}") == 2
    err = capsys.readouterr().err.strip()
    assert "no such model folder" in err and len(err.splitlines()) == 1
