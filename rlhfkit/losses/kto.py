"""KTO: learning from single answers marked desirable or undesirable (Ethayarajh et al. 2024).

No pairs: each example is one (prompt, response) with a binary label. The implicit reward is DPO's
r = log pi(y|x) - log pi_ref(y|x) (summed response log-probs, ``[B]`` tensors); it is judged against
a reference point z0, the policy's KL from the reference, which the paper estimates on the same
batch with mismatched (prompt, response) pairs so that it costs no extra data.
"""

from __future__ import annotations

import torch

from rlhfkit.losses.utils import check_same_shape

__all__ = ["kto_loss", "kto_reference_point", "mismatched_pairs"]

Stats = dict[str, torch.Tensor]


def mismatched_pairs(n: int) -> list[tuple[int, int]]:
    """(prompt index, response index) pairs for the reference point: prompt i with the response of
    example i + 1 (mod n), so no prompt meets its own response. Needs n >= 2."""
    if n < 2:
        raise ValueError(f"batch: the KTO reference point needs at least 2 examples, got {n}")
    return [(i, (i + 1) % n) for i in range(n)]


def kto_reference_point(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """z0 (Ethayarajh et al. 2024, eq. 8 and sec. 4.1): the batch estimate of KL(pi || pi_ref).

    Inputs ``[M]``: summed log-probs of responses y'_j under the policy and the reference, each
    given a prompt x_i it was NOT written for (see :func:`mismatched_pairs`).

        z0 = max(0, (1/M) sum_j [log pi(y'_j|x_i) - log pi_ref(y'_j|x_i)])

    Clamped at 0 (a KL is never negative) and detached: no gradient flows through the reference
    point (the paper's choice, for stable training). Returns a 0-dim tensor.
    """
    check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps)
    if policy_logps.numel() == 0:
        raise ValueError("policy_logps: the KTO reference point needs at least one mismatched pair")
    return (policy_logps - ref_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    z0: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, Stats]:
    """KTO loss (Ethayarajh et al. 2024, eq. 7). Inputs ``[B]``: summed response log-probs under the
    policy and the frozen reference, ``desirable`` (bool: the label of each example); ``z0`` from
    :func:`kto_reference_point`.

        r      = log pi(y|x) - log pi_ref(y|x)
        v(x,y) = lambda_D * sigmoid(beta (r - z0))    if y is desirable
               = lambda_U * sigmoid(beta (z0 - r))    if y is undesirable
        L      = mean over the batch of (lambda_y - v(x, y))

    ``desirable_weight`` / ``undesirable_weight`` are lambda_D / lambda_U: with unbalanced data the
    paper keeps lambda_D n_D / (lambda_U n_U) in [1, 4/3].

    Stats: ``loss``, ``kl`` (z0), ``rewards/desirable`` / ``rewards/undesirable`` (mean beta * r of
    each kind; 0 when the batch has none), ``rewards/accuracy`` (share of examples on the right side
    of z0: r > z0 when desirable, r < z0 when not).
    """
    check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps, desirable=desirable)
    if beta <= 0:
        raise ValueError(f"beta: must be > 0, got {beta}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(f"desirable_weight, undesirable_weight: must be >= 0, got "
                         f"{desirable_weight}, {undesirable_weight}")
    good = desirable.bool()
    z0 = torch.as_tensor(z0, dtype=policy_logps.dtype, device=policy_logps.device).detach()
    r = policy_logps - ref_logps  # implicit reward / beta
    value = torch.where(good, desirable_weight * torch.sigmoid(beta * (r - z0)),
                        undesirable_weight * torch.sigmoid(beta * (z0 - r)))  # v(x, y)
    weight = torch.where(good, torch.full_like(r, desirable_weight), torch.full_like(r, undesirable_weight))
    loss = (weight - value).mean()  # eq. 7
    with torch.no_grad():
        rewards = beta * r.detach()
        zero = torch.zeros((), dtype=r.dtype, device=r.device)
        stats = {
            "loss": loss.detach(),
            "kl": z0,
            "rewards/desirable": rewards[good].mean() if bool(good.any()) else zero,
            "rewards/undesirable": rewards[~good].mean() if bool((~good).any()) else zero,
            "rewards/accuracy": torch.where(good, r.detach() > z0, r.detach() < z0).float().mean(),
        }
    return loss, stats
