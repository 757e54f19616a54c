"""Direct preference optimisation and close variants (SPEC section 6).

Each variant is a pure function over per-sequence log-probabilities (``[B]`` tensors). A stage picks
one by its config word through :data:`DPO_LOSSES`, with one calling convention::

    inputs = DPOInputs(policy_chosen_logps=..., policy_rejected_logps=...,
                       ref_chosen_logps=..., ref_rejected_logps=...,
                       chosen_lengths=..., rejected_lengths=...)
    loss, stats = DPO_LOSSES[cfg.loss_type](inputs, DPOParams(beta=cfg.beta, ...))

``*_logps`` are SUMS of token log-probs over the response (see
:func:`rlhfkit.losses.utils.sequence_logprobs`); ``*_lengths`` are response token counts, used for
the length-normalised variants (average log-prob = sum / length). Variants that need no reference
model are listed in :data:`REFERENCE_FREE`, so a stage can skip the reference forward pass.

Every variant returns stats with the same keys: ``loss``, ``rewards/chosen``, ``rewards/rejected``,
``rewards/accuracy`` (strict chosen > rejected), ``rewards/margin``, ``logps/chosen``,
``logps/rejected`` (policy log-probs as the variant uses them: sums for DPO, averages for the
length-normalised ones); ORPO adds ``nll`` and ``log_odds_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from rlhfkit.losses.utils import check_same_shape

__all__ = [
    "dpo_loss",
    "ipo_loss",
    "simpo_loss",
    "orpo_loss",
    "DPOInputs",
    "DPOParams",
    "DPO_LOSSES",
    "REFERENCE_FREE",
    "get_dpo_loss",
]

Stats = dict[str, torch.Tensor]


def _stats(loss, reward_chosen, reward_rejected, logps_chosen, logps_rejected) -> Stats:
    rc, rr = reward_chosen.detach(), reward_rejected.detach()
    return {
        "loss": loss.detach(),
        "rewards/chosen": rc.mean(),
        "rewards/rejected": rr.mean(),
        "rewards/accuracy": (rc > rr).float().mean(),
        "rewards/margin": (rc - rr).mean(),
        "logps/chosen": logps_chosen.detach().mean(),
        "logps/rejected": logps_rejected.detach().mean(),
    }


def _check_beta(beta: float) -> None:
    if beta <= 0:
        raise ValueError(f"beta: must be > 0, got {beta}")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """DPO (Rafailov et al. 2023, eq. 7); conservative DPO when ``label_smoothing`` > 0; soft
    labels when ``labels`` is given.

    All inputs ``[B]``: summed response log-probs under the policy and the frozen reference.

        h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]
        L = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)

    eps = 0 is plain DPO; eps in (0, 0.5) assumes each label is flipped with probability eps
    (cDPO, Mitchell 2023). ``labels`` ``[B]`` = p, each pair's P(y_w better) (a judge's
    probability, a vote share): eps = 1 - p per pair, i.e. the binary cross-entropy between p and
    the Bradley-Terry probability sigmoid(beta h). Implicit rewards: beta * (log pi - log pi_ref).
    """
    _check_beta(beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing: must be in [0, 0.5), got {label_smoothing}")
    if labels is not None and (label_smoothing or bool(((labels < 0) | (labels > 1)).any())):
        raise ValueError("labels: soft labels must be in [0, 1] and exclude label_smoothing")
    check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_ratio - rejected_ratio)  # beta * h
    eps = label_smoothing if labels is None else 1.0 - labels.to(logits.dtype)  # scalar or [B]
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    loss = losses.mean()
    stats = _stats(
        loss, beta * chosen_ratio, beta * rejected_ratio, policy_chosen_logps, policy_rejected_logps
    )
    return loss, stats


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, Stats]:
    """IPO (Azar et al. 2023, the sampled IPO loss, with tau = ``beta``). Inputs ``[B]``.

        h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]
        L = mean (h - 1 / (2 beta))^2

    The squared loss regresses the log-ratio gap to a finite target instead of pushing it to
    infinity. The formula is agnostic to how log-probs are normalised; through :data:`DPO_LOSSES`
    the per-token AVERAGED log-probs are passed (sum / length), which keeps the 1/(2 beta) target on
    the same scale for short and long responses. Rewards in stats: beta * (log pi - log pi_ref).
    """
    _check_beta(beta)
    check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    h = chosen_ratio - rejected_ratio
    loss = ((h - 1.0 / (2.0 * beta)) ** 2).mean()
    stats = _stats(
        loss, beta * chosen_ratio, beta * rejected_ratio, policy_chosen_logps, policy_rejected_logps
    )
    return loss, stats


def simpo_loss(
    policy_chosen_avg_logps: torch.Tensor,
    policy_rejected_avg_logps: torch.Tensor,
    beta: float,
    gamma: float,
) -> tuple[torch.Tensor, Stats]:
    """SimPO (Meng et al. 2024, eq. 6): reference-free, length-normalised. Inputs ``[B]`` averages.

        L = -mean log sigmoid( beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma )

    ``gamma`` is the target reward margin (not divided by beta). Rewards: beta * avg log-prob.
    """
    _check_beta(beta)
    check_same_shape(
        policy_chosen_avg_logps=policy_chosen_avg_logps,
        policy_rejected_avg_logps=policy_rejected_avg_logps,
    )
    reward_chosen = beta * policy_chosen_avg_logps
    reward_rejected = beta * policy_rejected_avg_logps
    loss = -F.logsigmoid(reward_chosen - reward_rejected - gamma).mean()
    stats = _stats(
        loss, reward_chosen, reward_rejected, policy_chosen_avg_logps, policy_rejected_avg_logps
    )
    return loss, stats


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a < 0, stable at both ends (Maechler 2012)."""
    return torch.where(
        a > -0.6931471805599453,
        torch.log(-torch.expm1(a)),
        torch.log1p(-torch.exp(a)),
    )


def orpo_loss(
    chosen_nll: torch.Tensor,
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    lambda_: float,
) -> tuple[torch.Tensor, Stats]:
    """ORPO (Hong et al. 2024, the ORPO objective and its L_OR term): SFT loss plus an odds-ratio preference term.

    ``chosen_nll`` is the SFT loss on the chosen responses (scalar, or ``[B]`` averaged here);
    ``*_avg_logps [B]`` are length-normalised policy log-probs (must be < 0), so P(y|x) = exp(avg).

        odds(y|x) = P(y|x) / (1 - P(y|x)),  log odds = avg - log(1 - exp(avg))
        L_OR = -log sigmoid( log odds(y_w|x) - log odds(y_l|x) )
        L = L_SFT + lambda * L_OR

    Rewards in stats are the log-odds of each response; stats add ``nll`` and ``log_odds_ratio``.
    """
    if lambda_ < 0:
        raise ValueError(f"lambda_: must be >= 0, got {lambda_}")
    check_same_shape(chosen_avg_logps=chosen_avg_logps, rejected_avg_logps=rejected_avg_logps)
    log_odds_chosen = chosen_avg_logps - _log1mexp(chosen_avg_logps)
    log_odds_rejected = rejected_avg_logps - _log1mexp(rejected_avg_logps)
    log_odds_ratio = log_odds_chosen - log_odds_rejected
    nll = chosen_nll.mean()
    or_loss = -F.logsigmoid(log_odds_ratio).mean()
    loss = nll + lambda_ * or_loss
    stats = _stats(loss, log_odds_chosen, log_odds_rejected, chosen_avg_logps, rejected_avg_logps)
    stats["nll"] = nll.detach()
    stats["or_loss"] = or_loss.detach()
    stats["log_odds_ratio"] = log_odds_ratio.detach().mean()
    return loss, stats


# ----------------------------------------------------------------------------------------------
# Uniform calling convention for stages.


@dataclass
class DPOInputs:
    """Per-sequence log-probs for a batch of preference pairs; every tensor is ``[B]``.

    ``policy_*_logps`` / ``ref_*_logps``: sums of response token log-probs (the reference ones may
    be None for variants in :data:`REFERENCE_FREE`). ``chosen_lengths`` / ``rejected_lengths``:
    response token counts (needed by ipo, simpo, orpo). ``chosen_nll``: optional SFT loss on the
    chosen responses for ORPO; default -mean(policy chosen average log-prob). ``labels``: soft
    labels P(chosen better), read by sigmoid/dpo only.
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    chosen_nll: torch.Tensor | None = None
    labels: torch.Tensor | None = None  # soft labels P(chosen better) (sigmoid/dpo only)

    def require(self, variant: str, *names: str) -> list[torch.Tensor]:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"DPOInputs: loss {variant!r} needs field(s) {', '.join(missing)}")
        return [getattr(self, n) for n in names]

    def average(self, variant: str, which: str) -> torch.Tensor:
        """Length-normalised log-prob: ``<which>_logps / <side>_lengths`` (which = policy_chosen, ...)."""
        side = which.split("_", 1)[1]
        logps, lengths = self.require(variant, f"{which}_logps", f"{side}_lengths")
        if bool((lengths <= 0).any()):
            raise ValueError(f"DPOInputs: {side}_lengths must be > 0")
        return logps / lengths.to(logps.dtype)


@dataclass
class DPOParams:
    """Hyper-parameters read by the variants (each reads only its own)."""

    beta: float = 0.1  # DPO/IPO/SimPO temperature (Rafailov et al. use 0.1)
    label_smoothing: float = 0.0  # cdpo: assumed label-flip probability
    simpo_gamma: float = 0.5  # SimPO target margin (Meng et al. sweep 0.3-1.6 for beta 2-2.5)
    orpo_lambda: float = 0.1  # ORPO weight of the odds-ratio term (Hong et al. use 0.1)


_REF_FIELDS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _run_dpo(x: DPOInputs, p: DPOParams) -> tuple[torch.Tensor, Stats]:
    return dpo_loss(*x.require("dpo", *_REF_FIELDS), beta=p.beta, labels=x.labels)


def _run_cdpo(x: DPOInputs, p: DPOParams) -> tuple[torch.Tensor, Stats]:
    if p.label_smoothing <= 0:
        raise ValueError("label_smoothing: loss 'cdpo' needs label_smoothing > 0")
    return dpo_loss(*x.require("cdpo", *_REF_FIELDS), beta=p.beta, label_smoothing=p.label_smoothing)


def _run_ipo(x: DPOInputs, p: DPOParams) -> tuple[torch.Tensor, Stats]:
    avgs = [x.average("ipo", f) for f in ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")]
    return ipo_loss(*avgs, beta=p.beta)


def _run_simpo(x: DPOInputs, p: DPOParams) -> tuple[torch.Tensor, Stats]:
    chosen, rejected = x.average("simpo", "policy_chosen"), x.average("simpo", "policy_rejected")
    return simpo_loss(chosen, rejected, beta=p.beta, gamma=p.simpo_gamma)


def _run_orpo(x: DPOInputs, p: DPOParams) -> tuple[torch.Tensor, Stats]:
    chosen, rejected = x.average("orpo", "policy_chosen"), x.average("orpo", "policy_rejected")
    nll = x.chosen_nll if x.chosen_nll is not None else -chosen.mean()
    return orpo_loss(nll, chosen, rejected, lambda_=p.orpo_lambda)


DPOLossFn = Callable[[DPOInputs, DPOParams], "tuple[torch.Tensor, Stats]"]

#: Config word -> loss. "sigmoid" and "dpo" are the same loss.
DPO_LOSSES: dict[str, DPOLossFn] = {
    "sigmoid": _run_dpo,
    "dpo": _run_dpo,
    "cdpo": _run_cdpo,
    "ipo": _run_ipo,
    "simpo": _run_simpo,
    "orpo": _run_orpo,
}

#: Variants that never read the reference log-probs (a stage can skip the reference model).
REFERENCE_FREE = frozenset({"simpo", "orpo"})


def get_dpo_loss(name: str) -> DPOLossFn:
    """Look up a variant by config word; unknown words fail with the list of known ones."""
    try:
        return DPO_LOSSES[name]
    except KeyError:
        raise KeyError(f"loss_type: unknown DPO loss {name!r}; choose one of {sorted(DPO_LOSSES)}") from None
