"""The optimisation loop shared by SFT, reward modelling and DPO.

A stage supplies the pieces (what a micro-batch is, how to compute its loss, how to save the
model); this loop owns the rest: AdamW + warm-up/annealing schedule, gradient accumulation and
clipping, periodic evaluation with early stopping, resumable checkpoints, metrics and a progress
bar with tokens/s.

Data order is a pure function of (seed, epoch): ``micro_batches(epoch)`` must return the same list
of index lists for the same epoch. The loop's position is then just the optimizer step, so a resumed
run rebuilds the epoch's order and skips what it already consumed: it continues exactly.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rlhfkit.train.checkpoint import (
    atomic_save_folder,
    latest_checkpoint,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rlhfkit.train.config import OptimConfig, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What a stage's ``compute(batch)`` returns for one micro-batch."""

    loss: Any  # scalar tensor, mean over the micro-batch
    stats: dict = field(default_factory=dict)  # detached floats, averaged over micro-batches
    tokens: int = 0  # tokens processed (for tokens/s)
    examples: int = 0  # examples processed (for examples/s, e.g. pairs/s)


@dataclass
class EvalSpec:
    """Periodic evaluation: ``run()`` -> metrics; early stopping watches ``metric``."""

    run: Callable[[], dict]
    metric: str = "loss"
    higher_is_better: bool = False


@dataclass
class TrainResult:
    steps: int
    final_dir: Path
    last_stats: dict
    eval_history: list
    best_eval: dict | None
    resumed_from: Path | None
    seconds: float


def total_steps(cfg: TrainConfig, n_micro_per_epoch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_micro_per_epoch / cfg.grad_accum))


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


def _resume_path(cfg: TrainConfig) -> Path | None:
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return latest_checkpoint(cfg.output_dir)
    path = Path(cfg.resume)
    if not path.exists():
        from rlhfkit.errors import MissingFileError

        raise MissingFileError(f"train.resume: {path}: no such checkpoint")
    return path


class _Averager:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, stats: dict) -> None:
        self.count += 1
        for key, value in stats.items():
            value = float(value.item() if hasattr(value, "item") else value)
            self.sums[key] = self.sums.get(key, 0.0) + value

    def mean(self) -> dict:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}


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
) -> TrainResult:
    """Run the loop; ``micro_batches(epoch)`` gives collated micro-batches for that epoch (a list,
    or a sequence that builds them lazily), ``compute(batch)`` a :class:`StepOutput`."""
    import torch

    start = time.time()
    n_micro = len(micro_batches(0))
    if n_micro == 0:
        from rlhfkit.data.records import DataError

        raise DataError("data", "training set", "no training batches: empty after filtering")
    steps = total_steps(cfg, n_micro)
    optimizer = make_optimizer(list(params), optim)
    scheduler = make_scheduler(optimizer, optim, steps)
    state = {"step": 0, "best": None, "bad_evals": 0, "eval_history": [], "best_params": None}

    resumed = _resume_path(cfg)
    if resumed is not None:
        saved = load_state(resumed)
        load_model(resumed)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        state.update({k: saved[k] for k in ("step", "best", "bad_evals", "eval_history", "best_params")})
        log.info("resumed from %s at step %d", resumed, state["step"])
    logger.start(state["step"] if resumed is not None else None)

    def checkpoint() -> Path:
        payload = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "rng": rng_state(), **state}
        return save_checkpoint(cfg.output_dir, state["step"], save_model, payload, cfg.keep_checkpoints)

    def run_eval() -> bool:
        """Evaluate; return True when early stopping says stop."""
        metrics = evaluate.run()
        model.train()
        logger.log(state["step"], {f"eval/{k}": v for k, v in metrics.items()})
        state["eval_history"].append({"step": state["step"], **metrics})
        value = metrics[evaluate.metric]
        better = state["best"] is None or (
            value > state["best"][evaluate.metric] if evaluate.higher_is_better
            else value < state["best"][evaluate.metric])
        if better:
            state["best"], state["bad_evals"] = {"step": state["step"], **metrics}, 0
            if cfg.early_stopping_patience:
                state["best_params"] = [p.detach().clone() for p in params]
        else:
            state["bad_evals"] += 1
        return bool(cfg.early_stopping_patience) and state["bad_evals"] >= cfg.early_stopping_patience

    model.train()
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state["step"], desc=desc, dynamic_ncols=True)
    epoch_cache: dict[int, Any] = {}
    window = _Averager()
    tokens_window, examples_window, t_window = 0, 0, time.time()
    last_stats: dict = {}
    stopped_early = False
    while state["step"] < steps:
        optimizer.zero_grad(set_to_none=True)
        for micro in range(cfg.grad_accum):
            position = state["step"] * cfg.grad_accum + micro
            epoch, index = divmod(position, n_micro)
            if epoch not in epoch_cache:
                epoch_cache = {epoch: micro_batches(epoch)}
            out = compute(epoch_cache[epoch][index])
            (out.loss / cfg.grad_accum).backward()
            window.add({"loss": out.loss.detach(), **out.stats})
            tokens_window += out.tokens
            examples_window += out.examples
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, optim.max_grad_norm if optim.max_grad_norm > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        step = state["step"]
        if step % cfg.log_every == 0 or step == steps:
            elapsed = max(1e-9, time.time() - t_window)
            last_stats = {**window.mean(), "lr": scheduler.get_last_lr()[0],
                          "grad_norm": float(grad_norm), "epoch": step * cfg.grad_accum / n_micro,
                          "tokens_per_s": tokens_window / elapsed,
                          "examples_per_s": examples_window / elapsed}
            logger.log(step, last_stats)
            if bar is not None:
                bar.set_postfix(loss=f"{last_stats['loss']:.4f}", tok_s=f"{last_stats['tokens_per_s']:.0f}")
            window, tokens_window, examples_window, t_window = _Averager(), 0, 0, time.time()
        if bar is not None:
            bar.update(1)
        if evaluate is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < steps:
            if run_eval():
                stopped_early = True
                log.info("early stopping at step %d (best step %d)", step, state["best"]["step"])
                break
        if cfg.save_every and step % cfg.save_every == 0 and step < steps:
            checkpoint()
    if bar is not None:
        bar.close()
    if evaluate is not None and not stopped_early:
        run_eval()
    if resumed is None or state["step"] > saved["step"]:
        checkpoint()  # the finished state too, so a longer max_steps can continue from here
    if state["best_params"] is not None and state["best"]["step"] != state["step"]:
        with torch.no_grad():
            for p, best in zip(params, state["best_params"]):
                p.copy_(best)
        log.info("restored the best weights (step %d, %s=%s)", state["best"]["step"],
                 evaluate.metric, state["best"][evaluate.metric])
    final_dir = atomic_save_folder(Path(cfg.output_dir) / "final", save_model)
    return TrainResult(steps=state["step"], final_dir=final_dir, last_stats=last_stats,
                       eval_history=state["eval_history"], best_eval=state["best"],
                       resumed_from=resumed, seconds=time.time() - start)
