"""Interrupted and resumed runs through the CLI on the tiny model: SIGINT and SIGTERM during SFT,
RM, DPO and PPO leave a checkpoint and a true message, and the rerun resumes at that step; an
edited data file is refused on resume; a full disk is one line; outputs follow the umask.

The signal is sent from inside the run (when the loop logs step 2), so the test is deterministic."""

import json
import logging
import os
import shutil
import signal
import stat

import pytest

from rlhfkit.monitor.metrics import MetricLogger
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = {
    "sft": ["sft", "model=tiny", "data.dev_fraction=0", "samples.prompts=0"],
    "rm": ["rm", "train", "model=tiny", "normalize.max_examples=8", "data.dev_fraction=0"],
    "dpo": ["dpo", "model=tiny", "samples.prompts=0", "max_length=64", "data.dev_fraction=0"],
    "ppo": ["ppo", "model=tiny", "reward=contains:the", "value_model=head", "ppo.prompts_per_batch=2",
            "train.micro_batch_size=2", "train.grad_accum=1", "rollout.max_new_tokens=4",
            "data.eval_prompts=0", "samples.prompts=0"],
}


def signal_at(monkeypatch, step, sig):
    """Send ``sig`` to this process right after the loop logs training step ``step``."""
    real = MetricLogger.log

    def log(self, at, metrics):
        real(self, at, metrics)
        if at == step and not any(k.startswith("eval/") for k in metrics):
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(MetricLogger, "log", log)


def train_steps(out):
    rows = [json.loads(line) for line in next(out.rglob("metrics.jsonl")).read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r or "score" in r]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_signal_saves_a_checkpoint_and_the_rerun_resumes_there(stage, sig, tmp_path, monkeypatch,
                                                                 capsys, caplog):
    out = tmp_path / stage
    args = [*STAGES[stage], f"train.output_dir={out}", "train.max_steps=3", "train.progress=false"]
    previous = signal.getsignal(sig)
    signal_at(monkeypatch, 2, sig)
    assert run_cli(*args) == 128 + sig
    err = capsys.readouterr().err.strip().splitlines()[-1]
    saved = next(out.rglob("step-000002"))
    assert err.endswith(f"interrupted at step 2; checkpoint saved to {saved}; rerun the same command to resume")
    assert not list(out.rglob("final")) and signal.getsignal(sig) == previous
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="rlhfkit"):
        assert run_cli(*args) == 0
    assert f"resumed from {saved} at step 2" in caplog.text
    assert train_steps(out) == [1, 2, 3]


@pytest.fixture()
def sft_data(tmp_path):
    from rlhfkit.resources import demo_path

    path = tmp_path / "train.jsonl"
    shutil.copy(demo_path("sft.jsonl"), path)
    return path


def sft_args(out, data, steps):
    return [*STAGES["sft"], f"data.train={data}", f"train.output_dir={out}", f"train.max_steps={steps}",
            "train.progress=false"]


def test_an_edited_data_file_is_refused_on_resume(tmp_path, sft_data, capsys):
    out = tmp_path / "run"
    assert run_cli(*sft_args(out, sft_data, 2)) == 0
    lines = sft_data.read_text().splitlines()
    record = json.loads(lines[0])
    record["response"] = "edited in place"
    sft_data.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    capsys.readouterr()
    assert run_cli(*sft_args(out, sft_data, 3)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{sft_data.resolve()}: this data file changed since checkpoint" in err


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, sft_data, monkeypatch,
                                                                            capsys):
    import torch

    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                               "writing file data/0: file write failed")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    assert run_cli(*sft_args(out, sft_data, 3), "train.save_every=1") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"rlhfkit sft: error: no space left on device while writing "
                   f"{out / 'checkpoints' / 'step-000002'}")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000001"]
    from rlhfkit.train.checkpoint import verify_checkpoint

    assert verify_checkpoint(out / "checkpoints" / "step-000001")["step"] == 1


def test_outputs_follow_the_umask(tmp_path, sft_data):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert run_cli(*sft_args(out, sft_data, 1)) == 0
    finally:
        os.umask(old)

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(out / "final") == 0o755 and mode(out / "checkpoints" / "step-000001") == 0o755
    for path in (out / "final" / "model.safetensors", out / "metrics.jsonl", out / "config.yaml",
                 out / "checkpoints" / "step-000001" / "training_state.pt"):
        assert mode(path) == 0o644, path


def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, sft_data, capsys, caplog):
    out = tmp_path / "run"
    args = sft_args(out, sft_data, 2)
    assert run_cli(*args, "train.save_every=1", "train.keep_checkpoints=5") == 0
    state = out / "checkpoints" / "step-000002" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:64])  # a kill during a copy, a bad disk
    with caplog.at_level(logging.INFO, logger="rlhfkit"):
        assert run_cli(*sft_args(out, sft_data, 3), "train.save_every=1", "train.keep_checkpoints=5") == 0
    assert f"checkpoint {out / 'checkpoints' / 'step-000002'} is damaged" in caplog.text
    assert f"resumed from {out / 'checkpoints' / 'step-000001'} at step 1" in caplog.text
    assert train_steps(out) == [1, 2, 3]
