"""Masked reductions and log-probability helpers shared by every loss.

Conventions used across :mod:`rlhfkit.losses`:

* ``mask`` is a bool or 0/1 float tensor broadcastable to ``x``; ``True``/1 marks a valid token.
  Padded positions never influence a result, even when they hold ``inf`` or ``nan`` (they are
  replaced by zero with :func:`torch.where` before any arithmetic).
* Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "check_same_shape",
    "masked_sum",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "logprobs_from_logits",
    "entropy_from_logits",
    "sequence_logprobs",
]


def check_same_shape(**tensors: torch.Tensor | None) -> None:
    """Raise ``ValueError`` naming the offending argument when tensor shapes differ (``None`` skipped)."""
    items = [(k, t) for k, t in tensors.items() if t is not None]
    if not items:
        return
    name0, ref = items[0]
    for name, t in items[1:]:
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(
                f"{name}: shape {tuple(t.shape)} does not match {name0} shape {tuple(ref.shape)}"
            )


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over positions where ``mask`` is true; over all elements (``dim=None``) or ``dim``."""
    xm = torch.where(_as_bool(mask), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return xm.sum() if dim is None else xm.sum(dim=dim)


def _count(x: torch.Tensor, mask: torch.Tensor, dim: int | None) -> torch.Tensor:
    m = _as_bool(mask).expand_as(x).to(x.dtype)
    return m.sum() if dim is None else m.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over valid positions: sum(x * mask) / sum(mask).

    Where no position is valid (an empty row, or an all-false mask) the result is 0, not nan, so an
    empty micro-batch contributes nothing instead of poisoning the step.
    """
    total = masked_sum(x, mask, dim)
    n = _count(x, mask, dim)
    return torch.where(n > 0, total / n.clamp(min=1), torch.zeros_like(total))


def masked_var(
    x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, dim: int | None = None
) -> torch.Tensor:
    """Variance of ``x`` over valid positions (Bessel-corrected when ``unbiased``).

    Raises ``ValueError`` when there are too few valid positions (0, or 1 with ``unbiased``).
    """
    n = _count(x, mask, dim)
    need = 2 if unbiased else 1
    if bool((n < need).any()):
        raise ValueError(
            f"mask: masked_var needs at least {need} valid position(s), got {int(n.min().item())}"
        )
    mean = masked_mean(x, mask, dim)
    if dim is not None:
        mean = mean.unsqueeze(dim)
    var = masked_sum((x - mean) ** 2, mask, dim) / n
    if unbiased:
        var = var * n / (n - 1)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to unit variance using statistics of the valid positions only.

    ``(x - mean) / sqrt(var + eps)``; with ``shift_mean=False`` the mean is added back, so only the
    scale changes (reward whitening in Huang et al. 2023 keeps the mean). The variance is the
    unbiased one over all valid positions of the whole tensor. Padded positions come out as 0.
    """
    mask_b = _as_bool(mask).expand_as(x)
    x = torch.where(mask_b, x, torch.zeros((), dtype=x.dtype, device=x.device))  # no inf/nan leaks
    mean = masked_mean(x, mask_b)
    var = masked_var(x, mask_b, unbiased=True)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask_b, out, torch.zeros((), dtype=out.dtype, device=out.device))


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / temperature)[labels], per position.

    Shapes: ``logits [..., V]``, ``labels [...]`` (long, valid indices; replace ignore values such as
    -100 before calling) -> ``[...]`` in ``logits.dtype`` (float32 math for 16-bit inputs).

    Memory: for 32/64-bit logits it computes ``-cross_entropy(z, label)`` and never materialises the
    ``[..., V]`` log-softmax; 16-bit logits are processed one row of the leading dimension at a time
    in float32 (logsumexp in bf16 loses too much precision), so only one row is upcast at once.
    Dividing by the sampling temperature matters (Huang et al. 2023): the training log-probs must be
    those of the distribution the samples were drawn from.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"labels: shape {tuple(labels.shape)} does not match logits shape without the "
            f"vocabulary dimension {tuple(logits.shape[:-1])}"
        )
    labels = labels.long()
    if logits.dtype in (torch.float32, torch.float64):
        z = logits / temperature if temperature != 1.0 else logits
        # log softmax(z)[y] = -cross_entropy(z, y): the fused kernel's backward is about twice as
        # fast on [N, V] logits as a gather - logsumexp chain, and it never materialises [N, V] twice
        flat = F.cross_entropy(z.reshape(-1, z.shape[-1]), labels.reshape(-1), reduction="none")
        return -flat.reshape(labels.shape)
    rows = []
    for row_logits, row_labels in zip(logits, labels):  # leading dim, float32 one row at a time
        z = row_logits.float() / temperature
        picked = z.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(z, dim=-1))
    return torch.stack(rows).to(logits.dtype)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature) per position: ``[..., V] -> [...]``.

    H = logsumexp(z) - sum_v softmax(z)_v * z_v  (same as -sum p log p, without a log-softmax copy).
    """
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    z = logits.float() / temperature if temperature != 1.0 else logits.float()
    p = torch.softmax(z, dim=-1)
    return (torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)).to(logits.dtype)


def sequence_logprobs(
    token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """Per-sequence log-probability from per-token ones: ``[B, T] -> [B]``.

    ``average=False``: log pi(y|x) = sum over valid tokens; ``average=True``: that sum divided by
    the number of valid tokens (the length-normalised log-prob used by IPO, SimPO and ORPO).
    """
    check_same_shape(token_logps=token_logps, mask=mask)
    if average:
        return masked_mean(token_logps, mask, dim=-1)
    return masked_sum(token_logps, mask, dim=-1)
