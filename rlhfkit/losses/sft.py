"""Supervised fine-tuning loss: next-token cross-entropy on response tokens only (SPEC section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sft_loss"]


def sft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-mean next-token cross-entropy over the response tokens.

    Shapes: ``logits [B, T, V]`` straight from a causal LM run on ``input_ids [B, T]``;
    ``labels [B, T]`` = ``input_ids`` with prompt and padding positions set to ``ignore_index``.

    Causal shift (done here, callers must NOT pre-shift): the logits at position t predict the token
    at t + 1, so the loss pairs ``logits[:, :-1]`` with ``labels[:, 1:]``; the last position's logits
    and the first label are unused.

        L = -(1/N) sum_{t: label_{t+1} != ignore} log softmax(logits_t)[label_{t+1}]

    N is the number of counted tokens in this batch, or ``normalizer`` when given (pass the token
    count of the whole accumulated batch so that gradient accumulation gives the exact global
    token-mean). A batch without any counted token gives loss 0 (still attached to the graph).

    Stats: ``loss``, ``tokens`` (N counted here), ``ppl`` = exp(loss).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: expected shape [B, T, V], got {tuple(logits.shape)}")
    if tuple(labels.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"labels: shape {tuple(labels.shape)} does not match logits [B, T] {tuple(logits.shape[:2])}"
        )
    shift_logits = logits[:, :-1, :]  # [B, T-1, V] predicts ...
    shift_labels = labels[:, 1:]  # [B, T-1]      ... these tokens
    total = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)).float(),
        shift_labels.reshape(-1).long(),
        ignore_index=ignore_index,
        reduction="sum",
    )
    tokens = (shift_labels != ignore_index).sum()
    if normalizer is not None:
        if normalizer <= 0:
            raise ValueError(f"normalizer: must be > 0, got {normalizer}")
        loss = total / normalizer
    else:
        loss = total / tokens.clamp(min=1)
    detached = loss.detach()
    stats = {"loss": detached, "tokens": tokens.detach(), "ppl": torch.exp(detached)}
    return loss, stats


def selected_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The same token-mean cross-entropy as :func:`sft_loss`, on logits already gathered at the
    scored positions (``rlhfkit.models.forward.logits_at``), so no LM-head work is spent on prompt
    or padding positions.

    Shapes: ``logits [N, V]`` (row i predicts ``targets[i]``), ``targets [N]``.
        L = -(1/N) sum_i log softmax(logits_i)[targets_i]
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
