"""Supervised fine-tuning loss: next-token cross-entropy on response tokens only (SPEC section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["selected_token_loss"]


def selected_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-mean next-token cross-entropy over the scored (response) tokens, on logits already
    gathered at the positions that predict them, so no LM-head work is spent on prompt or padding
    positions.

    Shapes: ``logits [N, V]`` (row i predicts ``targets[i]``), ``targets [N]``. With labels ``[B, T]``
    (prompt and padding set to -100), :func:`rlhfkit.models.forward.next_token_targets` gives the
    positions t whose label at t + 1 counts (the causal shift) and those labels, and
    :func:`rlhfkit.models.forward.logits_at` the logits there.

        L = -(1/N) sum_i log softmax(logits_i)[targets_i]

    N is the number of targets here, or ``normalizer`` when given (pass the token count of the whole
    accumulated batch so that gradient accumulation gives the exact global token-mean). No target
    at all gives loss 0. Stats: ``loss``, ``tokens`` (N), ``ppl`` = exp(loss).
    """
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits: expected [N, V] matching targets [N], got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    total = F.cross_entropy(logits.float(), targets.long(), reduction="sum")
    n = targets.numel()
    if normalizer is not None and normalizer <= 0:
        raise ValueError(f"normalizer: must be > 0, got {normalizer}")
    loss = total / (normalizer if normalizer is not None else max(n, 1))
    detached = loss.detach()
    return loss, {"loss": detached, "tokens": torch.tensor(n), "ppl": torch.exp(detached)}
