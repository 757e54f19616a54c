"""The supervised step across data-parallel processes (DDP), and its identity with one process.

N processes at global batch G take the same optimizer steps as one process at G:

    the data order: one list of micro-batches per epoch, a pure function of (seed, epoch), the same
        on every rank; optimizer step s uses the micro-batches [s*A*N, (s+1)*A*N) of the run
        (A = grad_accum per process), and rank r takes the A of them starting at (s*N + r)*A,
        so one process with grad_accum = A*N reads exactly the same micro-batches in the same steps
    the gradient: micro-batch i is weighted by w_i / W, where W sums the weights (loss tokens or
        rows) of the step's micro-batches on *all* ranks (one all-reduce); DDP averages the ranks'
        gradients, so each rank scales its loss by N: N * (1/N) * sum_ranks sum_i (w_i / W) grad_i
        is the gradient of the global mean. DDP skips the gradient all-reduce (no_sync) on all but
        the last micro-batch of the step.
    the statistics: the logged loss and the token/example counts are summed over ranks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from rlhfkit.distributed.group import rank, world_size


def _step_module(model: Any, compute: Callable[[Any], Any]) -> Any:
    """A module whose ``forward(batch)`` is the stage's ``compute(batch)`` on ``model``, so DDP sees
    the forward (its gradient hooks need it) while the stage keeps calling its own model."""
    import torch

    class StepModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch: Any) -> Any:
            return compute(batch)

    return StepModule()


class Replicas:
    """What :func:`rlhfkit.train.loop.accumulate` needs to know about the other processes; with one
    process every method is the identity."""

    def __init__(self, model: Any = None, compute: Callable[[Any], Any] | None = None):
        self.world, self.rank = world_size(), rank()
        self.compute = compute
        self.ddp = None
        if self.world > 1 and model is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(_step_module(model, compute))

    def positions(self, step: int, grad_accum: int) -> list[int]:
        """This rank's micro-batches (positions in the run's order) for optimizer step ``step``."""
        first = (step * self.world + self.rank) * grad_accum
        return list(range(first, first + grad_accum))

    @property
    def grad_scale(self) -> int:
        """DDP averages the ranks' gradients; the weights are global shares, so scale back by N."""
        return self.world if self.ddp is not None else 1

    def forward(self, batch: Any) -> Any:
        return self.ddp(batch) if self.ddp is not None else self.compute(batch)

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Around forward + backward of a micro-batch: gradients are all-reduced on the last only."""
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is set on some rank (e.g. a signal that reached only some processes)."""
        return bool(self.sum([1.0 if flag else 0.0])[0]) if self.world > 1 else flag

    def reduce_window(self, window: list[dict], tokens: int, examples: int) -> tuple[list[dict], int, int]:
        """The step's per-micro-batch statistics as their mean over every rank's micro-batches, and
        the token and example counts summed over ranks."""
        if self.world == 1:
            return window, tokens, examples
        keys = sorted(window[0]) if window else []
        sums = [sum(float(s[k]) for s in window) for k in keys]
        total = self.sum([*sums, float(len(window)), float(tokens), float(examples)])
        count = max(1.0, total[len(keys)])
        mean = {k: total[i] / count for i, k in enumerate(keys)}
        return [mean], int(total[-2]), int(total[-1])
