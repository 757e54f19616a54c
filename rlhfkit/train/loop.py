"""The supervised step shared by SFT, reward modelling and DPO, run by the one training loop.

A stage supplies the pieces (what a micro-batch is, how to compute its loss, how to save the
model); :func:`train_loop` adds AdamW + warm-up/annealing schedule, exact gradient accumulation and
clipping, and hands the step to :func:`rlhfkit.train.runner.run_loop`, which owns periodic evaluation
with early stopping, resumable checkpoints, interrupts, metrics and the progress bar.

Data order is a pure function of (seed, epoch): ``micro_batches(epoch)`` must return the same list
of index lists for the same epoch. The loop's position is then just the optimizer step, so a resumed
run rebuilds the epoch's order and skips what it already consumed: it continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rlhfkit.train.config import OptimConfig, TrainConfig
from rlhfkit.train.runner import EvalSpec, StepResult, run_loop
from rlhfkit.utils.io import atomic_save_folder


@dataclass
class StepOutput:
    """What a stage's ``compute(batch)`` returns for one micro-batch."""

    loss: Any  # scalar tensor, mean over the micro-batch
    stats: dict = field(default_factory=dict)  # detached floats, averaged over micro-batches
    tokens: int = 0  # tokens processed (for tokens/s)
    examples: int = 0  # examples processed (for examples/s, e.g. pairs/s)


@dataclass
class TrainResult:
    steps: int
    final_dir: Path
    last_stats: dict
    eval_history: list
    best_eval: dict | None
    resumed_from: Path | None
    seconds: float
    stopped: str | None = None  # why training ended before its last step (early stopping)


def total_steps(cfg: TrainConfig, n_micro_per_epoch: int) -> int:
    """Optimizer steps of the run: ``max_steps``, or the epochs at ``grad_accum`` micro-batches per
    process x the data-parallel processes per step."""
    from rlhfkit.distributed.group import world_size

    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_micro_per_epoch / (cfg.grad_accum * world_size())))


def make_scheduler(optimizer: Any, optim: OptimConfig, steps: int):
    import torch

    warmup = int(optim.warmup_ratio * steps)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if optim.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        if optim.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)  # linear, annealed to zero at the last step

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(params: Sequence[Any], optim: OptimConfig):
    import torch

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases and norms are not decayed
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel is one pass over all tensors: 0.07 s vs 0.24 s per step for 98M fp32 parameters
    # on a 2-core CPU (the per-tensor loop is the default there), same update rule.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr,
                             betas=(optim.beta1, optim.beta2), eps=optim.eps, fused=fused or None)


def _micro_batch_getter(micro_batches: Callable[[int], list], n_micro: int) -> Callable[[int], Any]:
    """Micro-batch number ``position`` of the run (epoch = position // n_micro), building each
    epoch's list once."""
    cache: dict[int, Any] = {}

    def get(position: int) -> Any:
        epoch, index = divmod(position, n_micro)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = micro_batches(epoch)
        return cache[epoch][index]

    return get


def accumulate(batches: list, compute: Callable[[Any], StepOutput],
               weight: Callable[[Any], float] | None, replicas: Any = None) -> StepResult:
    """Forward + backward over one optimizer step's micro-batches (this process's share of them).
    Each micro-batch's loss is a mean over its own tokens (or rows); scaled by its share
    ``w_i / sum_j w_j`` of the step's weight (``weight(batch)``: its loss tokens, or rows; the sum
    runs over every process's micro-batches) the accumulated gradient is exactly that of the whole
    step's mean, as in rl/update.py. Without ``weight`` every micro-batch counts 1/n.
    ``replicas`` (:class:`rlhfkit.distributed.data_parallel.Replicas`) runs the micro-batches
    through DDP when there are several processes; None: this process alone."""
    from rlhfkit.distributed.data_parallel import Replicas

    replicas = replicas or Replicas(compute=compute)
    weights = [float(weight(b)) for b in batches] if weight is not None else []
    total = replicas.sum([sum(weights)])[0] if weight is not None else 0.0
    result = StepResult(tokens=0, examples=0)
    for i, batch in enumerate(batches):
        with replicas.sync(last=i == len(batches) - 1):
            out = replicas.forward(batch)
            share = weights[i] / total if total > 0 else 1.0 / len(batches)
            (out.loss * (share * replicas.grad_scale)).backward()
        result.window.append({"loss": out.loss.detach(), **out.stats})
        result.tokens += out.tokens
        result.examples += out.examples
    result.window, result.tokens, result.examples = replicas.reduce_window(
        result.window, result.tokens, result.examples)
    return result


def train_loop(
    *,
    model: Any,
    params: Sequence[Any],
    micro_batches: Callable[[int], list],
    compute: Callable[[Any], StepOutput],
    cfg: TrainConfig,
    optim: OptimConfig,
    save_model: Callable[[Path], None],
    load_model: Callable[[Path], None],
    logger: Any,
    evaluate: EvalSpec | None = None,
    desc: str = "train",
    weight: Callable[[Any], float] | None = None,
) -> TrainResult:
    """The supervised step (accumulate ``grad_accum`` micro-batches, clip, AdamW, schedule) run by
    :func:`rlhfkit.train.runner.run_loop`, then ``final/``. ``micro_batches(epoch)`` gives collated
    micro-batches for that epoch (a list, or a sequence that builds them lazily), ``compute(batch)``
    a :class:`StepOutput`, ``weight(batch)`` the micro-batch's share of the loss (see
    :func:`accumulate`)."""
    import torch

    from rlhfkit.distributed.data_parallel import Replicas
    from rlhfkit.distributed.group import RankDone, barrier, is_main

    n_micro = len(micro_batches(0))
    if n_micro == 0:
        from rlhfkit.data.records import DataError

        raise DataError("data", "training set", "no training batches: empty after filtering")
    steps = total_steps(cfg, n_micro)
    params = list(params)
    optimizer = make_optimizer(params, optim)
    scheduler = make_scheduler(optimizer, optim, steps)
    batch_at = _micro_batch_getter(micro_batches, n_micro)
    replicas = Replicas(model, compute)  # DDP when torchrun started several processes

    def step_fn(step: int) -> StepResult:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        batches = [batch_at(p) for p in replicas.positions(step, cfg.grad_accum)]
        result = accumulate(batches, compute, weight, replicas)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, optim.max_grad_norm if optim.max_grad_norm > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        result.current = {"lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                          "epoch": (step + 1) * cfg.grad_accum * replicas.world / n_micro}
        return result

    outcome = run_loop(
        train=cfg, total=steps, step_fn=step_fn, save_model=save_model, load_model=load_model,
        stateful={"optimizer": optimizer, "scheduler": scheduler}, logger=logger, evaluate=evaluate,
        params=params, desc=desc, data_parallel=True,
        postfix=lambda s: {"loss": f"{s['loss']:.4f}", "tok_s": f"{s['tokens_per_s']:.0f}"})
    final_dir = Path(cfg.output_dir) / "final"
    if is_main():
        atomic_save_folder(final_dir, save_model)
    barrier()
    if not is_main():
        raise RankDone  # rank 0 alone finishes the stage (merging, samples, report)
    return TrainResult(steps=outcome.steps, final_dir=final_dir, last_stats=outcome.last_stats,
                       eval_history=outcome.eval_history, best_eval=outcome.best_eval,
                       resumed_from=outcome.resumed_from, seconds=outcome.seconds,
                       stopped=outcome.stopped)
