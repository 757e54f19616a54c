"""Reward-model losses (SPEC section 4): pairwise, soft-label, listwise, ranking, score and mixed.

All take scalar rewards produced by the reward model (one per response) and return
``(loss, stats)``; stats are detached 0-dim tensors. Pairwise accuracy counts strict wins only;
exact ties are reported separately as ``tie_rate`` (so accuracy + tie_rate + error rate = 1).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from rlhfkit.losses.utils import check_same_shape

__all__ = [
    "bradley_terry_loss",
    "preference_bce_loss",
    "listwise_loss",
    "plackett_luce_loss",
    "score_regression_loss",
    "mixed_reward_loss",
    "MIXED_COMPONENTS",
]


def _pair_stats(diff: torch.Tensor) -> dict[str, torch.Tensor]:
    d = diff.detach()
    return {
        "accuracy": (d > 0).float().mean(),
        "tie_rate": (d == 0).float().mean(),
        "margin": d.float().mean(),
    }


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bradley-Terry pairwise loss, ``r_chosen [B]``, ``r_rejected [B]``, ``margin [B]`` or scalar.

        L = -mean log sigmoid(r_c - r_r - m)        (Ouyang et al. 2022 eq. 1; margin: Touvron et
                                                     al. 2023, Llama 2 eq. 2)

    Stats: ``loss``, ``accuracy`` (r_c > r_r), ``tie_rate`` (r_c == r_r), ``margin`` (mean r_c - r_r,
    without the target margin), ``rewards/chosen``, ``rewards/rejected`` (means).
    """
    check_same_shape(r_chosen=r_chosen, r_rejected=r_rejected)
    diff = r_chosen - r_rejected
    target = diff if margin is None else diff - margin
    loss = -F.logsigmoid(target).mean()
    stats = {"loss": loss.detach(), **_pair_stats(diff)}
    stats["rewards/chosen"] = r_chosen.detach().float().mean()
    stats["rewards/rejected"] = r_rejected.detach().float().mean()
    return loss, stats


def preference_bce_loss(
    r_1: torch.Tensor, r_2: torch.Tensor, label: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary cross-entropy on P(1 better than 2) = sigmoid(r_1 - r_2); ``label [B]`` in [0, 1].

        L = -mean[ y log sigmoid(r_1 - r_2) + (1 - y) log sigmoid(r_2 - r_1) ]

    ``y`` = 1: response 1 preferred, 0: response 2, soft values allowed, 0.5 = tie (pulls the two
    rewards together). With y = 1 this equals :func:`bradley_terry_loss`.

    Stats: ``loss``; ``accuracy`` over decisive labels (y != 0.5) where the sign of r_1 - r_2
    agrees with the label side; ``tie_rate`` (predicted r_1 == r_2, over decisive labels);
    ``label_tie_rate`` (share of y == 0.5); ``prob_mean`` / ``label_mean`` (calibration at a glance).
    """
    check_same_shape(r_1=r_1, r_2=r_2, label=label)
    y = label.to(r_1.dtype)
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError("label: values must lie in [0, 1] (1 = first preferred, 0.5 = tie)")
    diff = r_1 - r_2
    loss = F.binary_cross_entropy_with_logits(diff, y)
    d, yd = diff.detach(), y.detach()
    decisive = yd != 0.5
    n_dec = decisive.sum().clamp(min=1)
    agree = ((d > 0) & (yd > 0.5)) | ((d < 0) & (yd < 0.5))
    stats = {
        "loss": loss.detach(),
        "accuracy": (agree & decisive).sum() / n_dec,
        "tie_rate": ((d == 0) & decisive).sum() / n_dec,
        "label_tie_rate": (~decisive).float().mean(),
        "prob_mean": torch.sigmoid(d).float().mean(),
        "label_mean": yd.float().mean(),
    }
    return loss, stats


def _fill_invalid(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # The most negative finite value, not -inf: exp() gives exactly 0 and gradients stay finite.
    return scores.masked_fill(~valid, torch.finfo(scores.dtype).min)


def listwise_loss(
    scores: torch.Tensor,
    target_index: torch.Tensor | None = None,
    valid_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Softmax cross-entropy over K candidates (InfoNCE): one preferred among several rejected.

    Shapes: ``scores [B, K]``; ``target_index [B]`` (long, index of the preferred candidate;
    default 0 for every row); ``valid_mask [B, K]`` bool (default all valid) for rows with fewer
    than K candidates. Invalid candidates get probability 0.

        L = -mean_b [ s_{b,t} - log sum_{j valid} exp(s_{b,j}) ]      (van den Oord et al. 2018, eq. 4)

    Stats: ``loss``, ``accuracy`` (target has the strictly highest score among valid candidates),
    ``margin`` (mean of target score minus best other valid score).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores: expected shape [B, K], got {tuple(scores.shape)}")
    B, K = scores.shape
    if K < 2:
        raise ValueError(f"scores: need at least 2 candidates per row, got K={K}")
    if target_index is None:
        target_index = torch.zeros(B, dtype=torch.long, device=scores.device)
    if tuple(target_index.shape) != (B,):
        raise ValueError(f"target_index: expected shape ({B},), got {tuple(target_index.shape)}")
    if valid_mask is None:
        valid_mask = torch.ones_like(scores, dtype=torch.bool)
    check_same_shape(scores=scores, valid_mask=valid_mask)
    valid = valid_mask.bool()
    t = target_index.long().unsqueeze(1)  # [B, 1]
    if bool(((t < 0) | (t >= K)).any()) or not bool(valid.gather(1, t.clamp(0, K - 1)).all()):
        raise ValueError("target_index: must point at a valid candidate in every row")
    if bool((valid.sum(1) < 2).any()):
        raise ValueError("valid_mask: every row needs at least 2 valid candidates")
    filled = _fill_invalid(scores, valid)
    loss = F.cross_entropy(filled, t.squeeze(1))
    with torch.no_grad():
        target_score = filled.gather(1, t).squeeze(1)
        others = filled.scatter(1, t, torch.finfo(scores.dtype).min)
        best_other = others.max(dim=1).values
        gap = target_score - best_other
    stats = {"loss": loss.detach(), "accuracy": (gap > 0).float().mean(), "margin": gap.float().mean()}
    return loss, stats


def plackett_luce_loss(
    scores: torch.Tensor, valid_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of a full ranking under the Plackett-Luce model.

    ``scores [B, K]`` must already be ordered best-first (column 0 = top-ranked response);
    ``valid_mask [B, K]`` bool (default all valid) drops padded candidates; the valid ones keep
    their column order. For each row with valid candidates i_1 > i_2 > ... > i_n:

        -log P(ranking) = -sum_{k=1}^{n} [ s_{i_k} - log sum_{m>=k} exp(s_{i_m}) ]
                                                  (Plackett 1975; Luce 1959; the last term is 0)

    The loss is the mean over rows of that sum (not divided by n). With K = 2 it equals
    Bradley-Terry.

    Stats: ``loss``, ``accuracy`` (pairwise: share of ordered valid pairs i ranked above j with
    s_i > s_j), ``tie_rate`` (share with s_i == s_j), ``top1_accuracy`` (top-ranked candidate has
    the strictly highest score).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores: expected shape [B, K], got {tuple(scores.shape)}")
    if valid_mask is None:
        valid_mask = torch.ones_like(scores, dtype=torch.bool)
    check_same_shape(scores=scores, valid_mask=valid_mask)
    valid = valid_mask.bool()
    if bool((valid.sum(1) < 2).any()):
        raise ValueError("valid_mask: every ranking needs at least 2 valid candidates")
    filled = _fill_invalid(scores, valid)
    # log sum_{m >= k} exp(s_m): a reversed cumulative logsumexp along K.
    tail_lse = torch.logcumsumexp(filled.flip(1), dim=1).flip(1)  # [B, K]
    terms = torch.where(valid, filled - tail_lse, torch.zeros_like(filled))
    loss = -terms.sum(dim=1).mean()
    with torch.no_grad():
        s = scores.detach()
        upper = torch.ones(scores.shape[1], scores.shape[1], dtype=torch.bool, device=s.device).triu(1)
        pair = valid.unsqueeze(2) & valid.unsqueeze(1) & upper  # [B, K, K]: i ranked above j
        diff = s.unsqueeze(2) - s.unsqueeze(1)  # [B, K, K]: s_i - s_j
        n_pairs = pair.sum()
        first = valid.float().argmax(dim=1, keepdim=True)  # top-ranked valid column
        top = filled.gather(1, first).squeeze(1)
        rest = filled.scatter(1, first, torch.finfo(scores.dtype).min).max(dim=1).values
    stats = {
        "loss": loss.detach(),
        "accuracy": ((diff > 0) & pair).sum() / n_pairs,
        "tie_rate": ((diff == 0) & pair).sum() / n_pairs,
        "top1_accuracy": (top > rest).float().mean(),
    }
    return loss, stats


def score_regression_loss(
    r: torch.Tensor, score: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared error between predicted rewards ``r [B]`` and target scores ``score [B]``.

        L = mean (r - score)^2

    Stats: ``loss``, ``mae``, ``pred_mean``, ``target_mean``.
    """
    check_same_shape(r=r, score=score)
    err = r - score.to(r.dtype)
    loss = (err**2).mean()
    stats = {
        "loss": loss.detach(),
        "mae": err.detach().abs().mean(),
        "pred_mean": r.detach().mean(),
        "target_mean": score.detach().float().mean(),
    }
    return loss, stats


MIXED_COMPONENTS = ("score", "compare", "language")


def mixed_reward_loss(
    losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of component losses (SPEC section 4):

        L = l1 * L_score + l2 * L_compare + l3 * L_language

    ``losses`` maps component names (``score``, ``compare``, ``language``) to scalar losses; a
    component absent from this batch is simply left out. ``weights`` maps the same names to floats;
    every present component needs a weight, unknown names fail.

    Stats: ``loss`` (total), ``<name>/loss`` (unweighted), ``<name>/weighted``.
    """
    if not losses:
        raise ValueError("losses: at least one component loss is required")
    for key in list(losses) + list(weights):
        if key not in MIXED_COMPONENTS:
            raise KeyError(f"mixed_reward_loss: unknown component {key!r}; expected {MIXED_COMPONENTS}")
    total = None
    stats: dict[str, torch.Tensor] = {}
    for name, part in losses.items():
        if name not in weights:
            raise KeyError(f"weights: no weight for component {name!r}")
        if part.dim() != 0:
            raise ValueError(f"losses[{name!r}]: expected a scalar loss, got shape {tuple(part.shape)}")
        weighted = float(weights[name]) * part
        total = weighted if total is None else total + weighted
        stats[f"{name}/loss"] = part.detach()
        stats[f"{name}/weighted"] = weighted.detach()
    stats["loss"] = total.detach()
    return total, stats
