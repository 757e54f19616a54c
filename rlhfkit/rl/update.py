"""The optimisation part of an RL iteration, shared by PPO and GRPO/RLOO.

    for epoch in 1..epochs:                      (Schulman et al. 2017: several epochs per batch)
        shuffle the rollout batch                (a fresh permutation each epoch)
        for each minibatch of M responses:       one optimizer step
            for each micro-batch of m responses: forward + backward, loss scaled by its share
            clip the global gradient norm; AdamW step; scheduler step (annealed to zero)

Each micro-batch's loss is a mean over its own tokens (or rows); scaling it by
``weight(micro) / weight(minibatch)`` (weights = valid tokens per row for a token-mean loss, 1 per
non-empty row for a sequence-mean loss: :func:`row_weights`) makes the accumulated gradient exactly
that of the whole minibatch.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class StatsMean:
    """Running means of scalar stats over micro-batches."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            value = float(value.item() if hasattr(value, "item") else value)
            if value != value:  # nan (e.g. explained variance of constant returns): skip
                continue
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self) -> dict:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


def row_weights(mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Weight of each row ``[B]`` in a loss reduced by ``reduction`` over ``mask [B, T]``: its valid
    tokens for a token mean ("token"), 1 if it has any for a mean over responses ("sequence", which
    averages over the non-empty rows: see rlhfkit.losses.ppo)."""
    counts = mask.sum(dim=1)
    if reduction == "token":
        return counts
    if reduction == "sequence":
        return (counts > 0).to(mask.dtype)
    raise ValueError(f"reduction: must be 'token' or 'sequence', got {reduction!r}")


def minibatch_order(n: int, epochs: int, minibatch: int, generator: torch.Generator) -> list[list[int]]:
    """``epochs`` fresh permutations of ``range(n)`` cut into minibatches: a list of index lists."""
    out = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).tolist()
        out.extend(perm[i:i + minibatch] for i in range(0, n, minibatch))
    return out


def run_epochs(*, n_rows: int, row_weights: torch.Tensor, epochs: int, minibatch: int, micro: int,
               generator: torch.Generator, loss_on: Callable[[list[int]], tuple[Any, dict]],
               optimizer: Any, scheduler: Any, params: list, max_grad_norm: float) -> dict:
    """Run the epochs x minibatches of one iteration; ``loss_on(rows)`` returns (loss, stats) for a
    micro-batch (loss averaged over that micro-batch). Returns the mean stats plus grad_norm/lr."""
    stats = StatsMean()
    for rows in minibatch_order(n_rows, epochs, minibatch, generator):
        total = float(row_weights[rows].sum())
        if total <= 0:
            continue  # every row of this minibatch was dropped (missing_eos=drop)
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(rows), micro):
            part = rows[start:start + micro]
            share = float(row_weights[part].sum()) / total
            if share == 0:
                continue
            loss, part_stats = loss_on(part)
            (loss * share).backward()
            stats.add(part_stats)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        stats.add({"grad_norm": float(norm)})
    out = stats.mean()
    out["lr"] = scheduler.get_last_lr()[0]
    return out
