"""Data-parallel training under torchrun (2 processes, gloo, the tiny model): SFT, the reward model
and DPO take the same optimizer steps as one process at the same global batch (2 x grad_accum 1 =
1 x grad_accum 2), and a checkpoint written by 2 processes resumes in 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
pytestmark = pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")

COMMON = ["model=tiny", "train.progress=false", "train.micro_batch_size=2", "optim.lr=1e-3"]
STAGES = {
    "sft": ["sft", *COMMON, "samples.prompts=0", "data.dev_fraction=0"],
    "rm": ["rm", "train", *COMMON, "data.dev_fraction=0", "normalize.max_examples=8"],
    "dpo": ["dpo", *COMMON, "samples.prompts=0", "max_length=128", "data.dev_fraction=0"],
}


def launch(args: list[str], procs: int, timeout: int = 300) -> subprocess.CompletedProcess:
    """``rlhfkit`` in one process, or under ``torchrun --nproc_per_node=procs``; one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    head = ([sys.executable, "-m", "rlhfkit.cli"] if procs == 1 else
            [TORCHRUN, "--standalone", f"--nproc_per_node={procs}", "-m", "rlhfkit.cli"])
    return subprocess.run([*head, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def ok(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    steps = [r["step"] for r in train]
    assert len(steps) == len(set(steps)), f"metrics written more than once: {steps}"
    return {r["step"]: r["loss"] for r in train}


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("stage", ["sft", "rm", "dpo"])
def test_two_processes_take_the_steps_of_one_at_the_same_global_batch(tmp_path, stage):
    args = [*STAGES[stage], "train.max_steps=3"]
    two = ok(launch([*args, "train.grad_accum=1", f"train.output_dir={tmp_path / 'two'}"], procs=2))
    ok(launch([*args, "train.grad_accum=2", f"train.output_dir={tmp_path / 'one'}"], procs=1))
    assert "x processes=2 = global_batch_size=4" in two.stderr
    one_curve, two_curve = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert list(two_curve) == [1, 2, 3]
    for step, loss in one_curve.items():
        assert two_curve[step] == pytest.approx(loss, rel=1e-4), (step, one_curve, two_curve)
    assert one_curve[3] != one_curve[1]  # the model changed: the curves compare something


def test_a_checkpoint_written_by_two_processes_resumes_in_one(tmp_path):
    args = [*STAGES["sft"], "train.max_steps=4", "train.save_every=2", "train.keep_checkpoints=5"]
    two, part = tmp_path / "two", tmp_path / "part"
    ok(launch([*args, "train.grad_accum=1", f"train.output_dir={two}"], procs=2))
    shutil.copytree(two, part)
    shutil.rmtree(part / "final")  # as if killed right after the step-2 checkpoint
    shutil.rmtree(part / "checkpoints" / "step-000004")
    # one process at another global batch is refused with one line naming the key
    refused = launch([*args, "train.grad_accum=1", f"train.output_dir={part}"], procs=1)
    assert refused.returncode == 2 and "train.grad_accum" in refused.stderr.strip().splitlines()[-1]
    ok(launch([*args, "train.grad_accum=2", f"train.output_dir={part}"], procs=1))
    assert list(losses(part)) == [1, 2, 3, 4]
    for step, loss in losses(two).items():
        assert losses(part)[step] == pytest.approx(loss, rel=1e-4)
    a, b = weights(two / "final"), weights(part / "final")
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key


def test_a_stage_without_a_data_parallel_step_is_refused_under_torchrun(tmp_path):
    run = launch(["grpo", "model=tiny", "reward=length", "train.progress=false", "samples.prompts=0",
                  "train.max_steps=1", "rollout.max_new_tokens=4", f"train.output_dir={tmp_path}"], procs=2)
    assert run.returncode != 0
    assert "the grpo loop does not run data-parallel yet: launch it as one process" in run.stderr
    assert not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text()
