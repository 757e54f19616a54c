"""The supervised step (rlhfkit.train.loop): exact gradient accumulation by each micro-batch's share
of the loss, and an early-stopped run whose final save crashed finishes on rerun without training."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlhfkit.monitor.metrics import MetricLogger
from rlhfkit.train.config import OptimConfig, TrainConfig
from rlhfkit.train.loop import EvalSpec, StepOutput, train_loop


def test_accumulation_weights_micro_batches_by_their_share_of_tokens():
    """loss = token-mean of w * x. Micro-batches x = [1, 2, 3] and [4]: the whole step's mean is
    (1 + 2 + 3 + 4) / 4, so d loss / d w = 2.5; averaging the two micro-batch means would give
    (2 + 4) / 2 = 3."""
    from rlhfkit.train.loop import accumulate

    w = torch.nn.Parameter(torch.tensor(1.0))
    batches = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])]

    def compute(x):
        return StepOutput(loss=(w * x).mean(), tokens=len(x), examples=1)

    result = accumulate(batches, compute, weight=len)
    assert w.grad.item() == pytest.approx(2.5)
    assert result.tokens == 4 and result.examples == 2 and len(result.window) == 2
    w.grad = None
    accumulate(batches, compute, weight=None)  # no weights: each micro-batch counts 1/n
    assert w.grad.item() == pytest.approx(3.0)


class Linear:
    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.compute_calls = 0

    def compute(self, x):
        self.compute_calls += 1
        return StepOutput(loss=(self.model(x) ** 2).mean(), tokens=1, examples=1)

    def save(self, folder):
        save_file(self.model.state_dict(), str(folder / "model.safetensors"))

    def load(self, folder):
        self.model.load_state_dict(load_file(str(folder / "model.safetensors")))


def train(out, toy, evals):
    cfg = TrainConfig(output_dir=str(out), max_steps=10, eval_every=1, early_stopping_patience=1,
                      progress=False)
    logger = MetricLogger(out)
    values = iter(evals)
    try:
        return train_loop(model=toy.model, params=list(toy.model.parameters()),
                          micro_batches=lambda epoch: [torch.ones(1, 1)] * 4, compute=toy.compute, cfg=cfg,
                          optim=OptimConfig(lr=0.1), save_model=toy.save, load_model=toy.load, logger=logger,
                          evaluate=EvalSpec(lambda: {"loss": next(values)}))
    finally:
        logger.close()


def test_a_crash_while_saving_final_then_a_rerun_does_not_train_on(tmp_path, monkeypatch):
    import rlhfkit.train.loop as loop

    real = loop.atomic_save_folder

    def crash(folder, save):
        raise OSError("killed while writing final/")

    toy = Linear()
    monkeypatch.setattr(loop, "atomic_save_folder", crash)
    with pytest.raises(OSError):
        train(tmp_path, toy, [2.0, 1.0, 1.5])  # stops at step 3: no better than step 2
    assert toy.compute_calls == 3
    monkeypatch.setattr(loop, "atomic_save_folder", real)
    again = Linear()
    result = train(tmp_path, again, [])  # an evaluation would fail: none may run
    assert again.compute_calls == 0 and result.steps == 3 and result.stopped.startswith("early stopping")
    assert result.best_eval["step"] == 2 and (tmp_path / "final" / "model.safetensors").exists()
