"""Group-relative policy losses after GRPO: Dr. GRPO, DAPO (with its dynamic-sampling filter) and
GSPO, beside GRPO itself (:func:`rlhfkit.losses.ppo.grpo_policy_loss`).

Shapes as in :mod:`rlhfkit.losses.ppo`: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` are
``[B, T]``; ``advantages`` is ``[B]`` (one group-relative advantage per response) or ``[B, T]``.
``old_logp=None`` means one update per rollout (ratio 1, with gradient). A stage picks a variant by
its config word through :data:`GROUP_LOSSES`::

    loss, stats = GROUP_LOSSES[cfg.grpo.loss].fn(logp, old_logp, ref_logp, advantages, mask, params)

and weights its micro-batches by ``GROUP_LOSSES[name].reduction`` (token or sequence means, see
:func:`rlhfkit.rl.update.row_weights`; ``None`` = ``params.reduction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from rlhfkit.losses.ppo import grpo_policy_loss, kl_penalty, kl_term
from rlhfkit.losses.utils import check_same_shape, masked_mean

__all__ = [
    "GroupLossParams",
    "GROUP_LOSSES",
    "dr_grpo_policy_loss",
    "dapo_policy_loss",
    "dapo_keep_groups",
    "gspo_policy_loss",
]

Stats = dict[str, torch.Tensor]


def dr_grpo_policy_loss(logp, old_logp, ref_logp, advantages, mask, max_len: int, clip_eps: float = 0.2,
                        beta: float = 0.0, kl_estimator: str = "k3") -> tuple[torch.Tensor, Stats]:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.2): GRPO without
    its two biases. The 1/|o_i| per-response length normalisation becomes one constant (the
    generation budget ``max_len``), so long wrong answers are not penalised less per token:

        L = (1/G) sum_i (1/max_len) sum_t -min(r_it A_i, clip(r_it, 1 - eps, 1 + eps) A_i)  (+ beta KL_it)

    and the advantage is A_i = r_i - mean_g without the division by std_g (pass
    ``group_advantages(..., std_normalize=False)``). Stats as :func:`grpo_policy_loss`.
    """
    return grpo_policy_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps=clip_eps, beta=beta,
                            kl_estimator=kl_estimator, reduction="constant", max_len=max_len)


def dapo_policy_loss(logp, old_logp, ref_logp, advantages, mask, clip_low: float = 0.2,
                     clip_high: float = 0.28, beta: float = 0.0,
                     kl_estimator: str = "k3") -> tuple[torch.Tensor, Stats]:
    """DAPO (Yu et al. 2025, eq. 8): decoupled clip ("clip-higher") and a token-level mean.

        L = (1 / sum_i |o_i|) sum_i sum_t -min(r_it A_i, clip(r_it, 1 - eps_low, 1 + eps_high) A_i)

    eps_high > eps_low (paper: 0.2 and 0.28) leaves low-probability tokens room to grow, against
    entropy collapse; every token of the batch weighs the same, whatever its response's length.
    The paper drops the KL term (beta 0). Stats as :func:`grpo_policy_loss`; ``clipfrac_high`` is
    the share of tokens held at 1 + eps_high.
    """
    return grpo_policy_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps=clip_low, beta=beta,
                            kl_estimator=kl_estimator, reduction="token", clip_eps_high=clip_high)


def dapo_keep_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO's dynamic-sampling filter (Yu et al. 2025, eq. 11: 0 < |{correct o_i}| < G): which
    groups to keep. ``rewards [N*G]`` (a prompt's G samples contiguous) -> ``keep [N]`` bool, False
    where every sample of the group got the same reward (its advantages are all 0: no gradient,
    only a smaller batch)."""
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards: expected [N*G] with G = group_size {group_size}, "
                         f"got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)  # [N, G]
    return grouped.max(dim=1).values != grouped.min(dim=1).values


def gspo_policy_loss(logp, old_logp, ref_logp, advantages, mask, clip_low: float = 3e-4,
                     clip_high: float = 4e-4, beta: float = 0.0,
                     kl_estimator: str = "k3") -> tuple[torch.Tensor, Stats]:
    """GSPO (Zheng et al. 2025, eq. 5-7): one importance ratio per response, length-normalised.

        s_i = (pi(y_i|x) / pi_old(y_i|x))^(1/|y_i|) = exp( (1/|y_i|) sum_t (logp_it - old_logp_it) )
        L   = (1/G) sum_i -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)  (+ beta mean_t KL_it)

    Whole responses are clipped, so the clip ranges are small (paper: 3e-4 and 4e-4). Responses with
    no valid token are left out of the mean. ``advantages`` ``[B, T]`` are read as their row mean.

    Stats: ``loss``, ``policy_loss``, ``kl``, ``clipfrac`` (share of responses clipped), ``ratio``
    (mean s_i), ``approx_kl`` (token k3 of old vs new).
    """
    if old_logp is None:
        old_logp = logp.detach()
    check_same_shape(logp=logp, old_logp=old_logp, ref_logp=ref_logp, mask=mask)
    if clip_low <= 0 or clip_high <= 0:
        raise ValueError(f"clip_eps: must be > 0, got {clip_low} and {clip_high}")
    adv = advantages if advantages.dim() == 1 else masked_mean(advantages, mask, dim=-1)  # [B]
    rows = mask.bool().any(dim=-1)  # [B] responses that count
    seq_ratio = torch.exp(masked_mean(logp - old_logp, mask, dim=-1))  # s_i, eq. 7
    unclipped = -adv * seq_ratio
    clipped = -adv * torch.clamp(seq_ratio, 1.0 - clip_low, 1.0 + clip_high)
    surrogate = torch.maximum(unclipped, clipped)  # [B], eq. 5 negated
    kl = kl_term(logp, ref_logp, beta, kl_estimator)
    loss = masked_mean(surrogate + beta * masked_mean(kl, mask, dim=-1), rows)
    with torch.no_grad():
        stats = {
            "loss": loss.detach(),
            "policy_loss": masked_mean(surrogate, rows),
            "kl": masked_mean(kl, mask),
            "clipfrac": masked_mean((clipped > unclipped).float(), rows),
            "ratio": masked_mean(seq_ratio, rows),
            "approx_kl": masked_mean(kl_penalty(old_logp, logp.detach(), "k3"), mask),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------
# The registry a stage picks from


@dataclass(frozen=True)
class GroupLossParams:
    """The knobs of every variant; each reads the ones it uses."""

    clip_low: float = 0.2  # eps (eps_low for DAPO and GSPO)
    clip_high: float | None = None  # eps_high; None = the variant's default (symmetric for GRPO/Dr. GRPO)
    beta: float = 0.0  # KL(pi || pi_ref) loss coefficient
    kl_estimator: str = "k3"
    reduction: str = "sequence"  # GRPO only: sequence or token
    max_len: int = 0  # Dr. GRPO: the constant length normaliser (the generation budget)


class GroupLoss(NamedTuple):
    fn: Callable[..., tuple[torch.Tensor, Stats]]  # (logp, old_logp, ref_logp, advantages, mask, params)
    reduction: str | None  # how micro-batches are weighted; None = params.reduction


def _grpo(logp, old, ref, adv, mask, p: GroupLossParams):
    return grpo_policy_loss(logp, old, ref, adv, mask, clip_eps=p.clip_low, beta=p.beta,
                            kl_estimator=p.kl_estimator, reduction=p.reduction, clip_eps_high=p.clip_high)


def _dr_grpo(logp, old, ref, adv, mask, p: GroupLossParams):
    return dr_grpo_policy_loss(logp, old, ref, adv, mask, p.max_len, p.clip_low, p.beta, p.kl_estimator)


def _dapo(logp, old, ref, adv, mask, p: GroupLossParams):
    high = 0.28 if p.clip_high is None else p.clip_high
    return dapo_policy_loss(logp, old, ref, adv, mask, p.clip_low, high, p.beta, p.kl_estimator)


def _gspo(logp, old, ref, adv, mask, p: GroupLossParams):
    high = 4e-4 if p.clip_high is None else p.clip_high
    return gspo_policy_loss(logp, old, ref, adv, mask, p.clip_low, high, p.beta, p.kl_estimator)


#: config word -> (loss function, micro-batch weighting). Dr. GRPO's constant-length mean and
#: GSPO's per-response loss average over responses ("sequence"), DAPO over tokens.
GROUP_LOSSES: dict[str, GroupLoss] = {
    "grpo": GroupLoss(_grpo, None),
    "dr_grpo": GroupLoss(_dr_grpo, "sequence"),
    "dapo": GroupLoss(_dapo, "token"),
    "gspo": GroupLoss(_gspo, "sequence"),
}
