"""The one training loop (rlhfkit.train.runner) on a toy model: signals save and stop at the step
boundary, early stopping is part of the saved state, damaged checkpoints are skipped with a warning,
stale temporary folders are cleaned, changed data is refused, a full disk is one line."""

import errno
import logging
import os
import re
import signal

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlhfkit.config import ConfigError
from rlhfkit.monitor.metrics import MetricLogger
from rlhfkit.train.checkpoint import list_checkpoints, load_state
from rlhfkit.train.config import TrainConfig
from rlhfkit.train.interrupt import TrainingInterrupted
from rlhfkit.train.runner import EvalSpec, StepResult, StopRun, run_loop


class Toy:
    """w <- w - 0.1 each step (plain SGD on loss = w); ``calls`` lists the steps taken."""

    def __init__(self):
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.opt = torch.optim.SGD([self.w], lr=0.1)
        self.calls = []
        self.hooks = {}  # step -> callable run inside that step

    def step(self, step):
        self.calls.append(step)
        self.opt.zero_grad()
        self.w.sum().backward()
        self.opt.step()
        if step in self.hooks:
            self.hooks[step]()
        return StepResult(window=[{"loss": float(self.w.detach().sum())}], current={"w": float(self.w.detach()[0])})

    def save(self, folder):
        save_file({"w": self.w.detach().clone()}, str(folder / "model.safetensors"))

    def load(self, folder):
        with torch.no_grad():
            self.w.copy_(load_file(str(folder / "model.safetensors"))["w"])


def run(out, toy, total=4, evaluate=None, **train):
    cfg = TrainConfig(output_dir=str(out), max_steps=total, progress=False, **train)
    logger = MetricLogger(out)
    try:
        return run_loop(train=cfg, total=total, step_fn=toy.step, save_model=toy.save, load_model=toy.load,
                        stateful={"optimizer": toy.opt}, logger=logger, evaluate=evaluate,
                        params=[toy.w])
    finally:
        logger.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_at_the_step_boundary_and_the_rerun_resumes_there(tmp_path, sig):
    before = signal.getsignal(sig)
    toy = Toy()
    toy.hooks[1] = lambda: os.kill(os.getpid(), sig)  # arrives inside step 2 (0-based step 1)
    with pytest.raises(TrainingInterrupted) as info:
        run(tmp_path, toy)
    assert toy.calls == [0, 1]  # step 2 finished, step 3 never started
    assert info.value.step == 2 and info.value.exit_code == 128 + sig
    assert info.value.checkpoint == tmp_path / "checkpoints" / "step-000002"
    assert str(info.value) == (f"interrupted at step 2; checkpoint saved to {info.value.checkpoint}; "
                               "rerun the same command to resume")
    assert load_state(info.value.checkpoint)["step"] == 2
    assert signal.getsignal(sig) == before  # the previous handler is back
    again = Toy()
    result = run(tmp_path, again)
    assert again.calls == [2, 3] and result.steps == 4
    assert float(again.w.detach()[0]) == pytest.approx(-0.4)  # 4 SGD steps of 0.1 in all


def test_a_signal_before_the_first_step_says_nothing_was_saved(tmp_path):
    toy = Toy()
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=2, progress=False)

    def loads(folder):
        raise AssertionError("nothing to load")

    logger = MetricLogger(tmp_path)
    logger.start = lambda step: os.kill(os.getpid(), signal.SIGINT)  # during the set-up
    with pytest.raises(TrainingInterrupted) as info:
        run_loop(train=cfg, total=2, step_fn=toy.step, save_model=toy.save, load_model=loads,
                 stateful={}, logger=logger)
    logger.close()
    assert toy.calls == [] and info.value.checkpoint is None
    assert "no checkpoint could be saved (no training step had finished)" in str(info.value)
    assert not list_checkpoints(tmp_path)


def test_a_second_signal_stops_at_once(tmp_path):
    toy = Toy()
    toy.hooks[0] = lambda: (os.kill(os.getpid(), signal.SIGINT), os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt) as info:
        run(tmp_path, toy)
    assert not isinstance(info.value, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def rising_loss(toy):
    """Dev loss 3, 2, 2.5, 2.6, ...: the best is at the second evaluation."""
    values = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9])
    return EvalSpec(lambda: {"loss": next(values)})


def test_early_stopping_is_saved_and_a_rerun_does_not_train_on(tmp_path):
    toy = Toy()
    result = run(tmp_path, toy, total=10, evaluate=rising_loss(toy), eval_every=1, early_stopping_patience=2)
    assert toy.calls == [0, 1, 2, 3] and result.steps == 4 and result.stopped.startswith("early stopping")
    assert result.best_eval["step"] == 2 and float(toy.w.detach()[0]) == pytest.approx(-0.2)  # best weights back
    assert load_state(tmp_path / "checkpoints" / "step-000004")["stopped"]
    again = Toy()
    result = run(tmp_path, again, total=10, evaluate=rising_loss(again), eval_every=1, early_stopping_patience=2)
    assert again.calls == [] and result.steps == 4 and result.stopped
    assert float(again.w.detach()[0]) == pytest.approx(-0.2)
    assert [e["step"] for e in result.eval_history] == [1, 2, 3, 4]  # no duplicate final evaluation


def test_a_stop_from_the_step_function_is_kept_too(tmp_path):
    toy = Toy()

    def hook():
        raise StopRun("reward hacking: length")

    toy.hooks[1] = hook
    assert run(tmp_path, toy).stopped == "reward hacking: length"
    again = Toy()
    assert run(tmp_path, again).stopped == "reward hacking: length" and again.calls == []


def test_a_damaged_newest_checkpoint_is_moved_aside_with_a_warning(tmp_path, caplog):
    run(tmp_path, Toy(), total=3, save_every=1, keep_checkpoints=5)
    newest = tmp_path / "checkpoints" / "step-000003"
    state = newest / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    (tmp_path / "checkpoints" / "step-000002" / "model.safetensors").write_bytes(b"")  # empty
    again = Toy()
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        result = run(tmp_path, again, total=4, save_every=1, keep_checkpoints=5)
    assert again.calls == [1, 2, 3] and result.resumed_from.name == "step-000001"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w and "training_state.pt does not load" in w for w in warned), warned
    assert any("step-000002" in w and "model.safetensors is empty" in w for w in warned), warned
    assert (tmp_path / "checkpoints" / "step-000003.damaged").is_dir()


def test_an_explicit_damaged_checkpoint_is_a_config_error(tmp_path):
    run(tmp_path, Toy(), total=1)
    folder = tmp_path / "checkpoints" / "step-000001"
    (folder / "model.safetensors").write_bytes(b"x" * 20)
    with pytest.raises(ConfigError, match=r"train.resume: .*step-000001: damaged checkpoint: model.safetensors"):
        run(tmp_path, Toy(), total=2, resume=str(folder))


def test_stale_temporary_folders_are_removed_at_start(tmp_path):
    ckpts = tmp_path / "checkpoints"
    (ckpts / ".tmp-step-000007-1a2b").mkdir(parents=True)
    (ckpts / ".tmp-step-000007-1a2b" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".tmp-final-3c4d").mkdir()
    (tmp_path / ".tmp-metrics.jsonl-5e6f").write_text("x")
    (tmp_path / ".old-final").mkdir()  # killed between the two renames: final/ is missing
    (tmp_path / ".old-final" / "marker").write_text("previous final model")
    run(tmp_path, Toy(), total=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "final", "metrics.jsonl"]
    assert (tmp_path / "final" / "marker").read_text() == "previous final model"
    assert [p.name for p in ckpts.iterdir()] == ["step-000001"]


def test_keep_checkpoints_deletes_the_oldest_before_writing(tmp_path, monkeypatch):
    import rlhfkit.train.checkpoint as ck

    seen = []
    real = ck.atomic_save_folder

    def spy(folder, save):
        seen.append(sorted(p.name for p in folder.parent.glob("step-*")))
        return real(folder, save)

    monkeypatch.setattr(ck, "atomic_save_folder", spy)
    run(tmp_path, Toy(), total=4, save_every=1, keep_checkpoints=2)
    assert seen[-1] == ["step-000003"]  # while step 4 is written, only one old one is on disk
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                 "data/0: file write failed"),
])
def test_a_full_disk_is_one_line_and_the_previous_checkpoint_is_intact(tmp_path, error):
    toy = Toy()
    real = toy.save

    def save(folder):
        if folder.name.startswith(".tmp-step-000002"):
            raise error
        real(folder)

    toy.save = save
    with pytest.raises(ConfigError) as info:
        run(tmp_path, toy, total=3, save_every=1)
    assert str(info.value).startswith("no space left on device while writing ")
    assert str(info.value).endswith("checkpoints/step-000002")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000001"]
    from rlhfkit.train.checkpoint import verify_checkpoint

    assert verify_checkpoint(tmp_path / "checkpoints" / "step-000001")["step"] == 1


def test_changed_data_is_refused_naming_the_file(tmp_path):
    from rlhfkit.data.fingerprint import begin_run
    from rlhfkit.data.sources import load

    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n')
    out = tmp_path / "run"
    begin_run()
    load(str(data), "sft")
    run(out, Toy(), total=2)
    data.write_text('{"prompt": "a", "response": "B"}\n{"prompt": "c", "response": "d"}\n')
    begin_run()
    load(str(data), "sft")
    again = Toy()
    with pytest.raises(ConfigError, match=f"^{re.escape(str(data.resolve()))}: this data file changed since"):
        run(out, again, total=3)
    assert again.calls == []
