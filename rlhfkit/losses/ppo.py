"""PPO / GRPO losses and KL machinery (SPEC sections 5 and 6).

Per-token tensors are ``[B, T]`` over the response tokens with ``mask [B, T]`` (true = a generated
token that counts). ``logp`` is the current policy's log-prob of each sampled token (with grad),
``old_logp`` the rollout-time one, ``ref_logp`` the frozen reference's.

Reductions (``reduction=``): ``"token"`` averages over every valid token of the batch (long
responses weigh more); ``"sequence"`` averages within each response, then over the responses that
have a valid token (GRPO, Shao et al. 2024 eq. 3; a response dropped from the update, mask all 0,
is not counted, so the mean matches the micro-batch weights of :func:`rlhfkit.rl.update.row_weights`);
``"constant"`` sums each response's tokens, divides by a fixed ``max_len`` and averages over the
non-empty responses (Dr. GRPO, Liu et al. 2025: no per-response length normalisation).
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhfkit.losses.utils import check_same_shape, masked_mean, masked_sum

__all__ = [
    "kl_penalty",
    "KL_ESTIMATORS",
    "policy_loss",
    "value_loss",
    "grpo_policy_loss",
    "kl_term",
    "ppo_kl_penalty_loss",
    "PolicyKLController",
    "AdaptiveKLController",
    "FixedKLController",
]

Stats = dict[str, torch.Tensor]


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio  # log p - log q: unbiased, high variance, can be negative


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio**2  # low variance, biased


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    neg = -log_ratio  # log q - log p
    return torch.exp(neg) - 1 - neg  # (q/p - 1) - log(q/p): unbiased, always >= 0


#: Schulman (2020), "Approximating KL divergence": estimators of KL(p || q) from samples of p,
#: written in terms of log_ratio = log p(x) - log q(x).
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled by pi: ``[B, T]`` -> ``[B, T]``.

        k1 = logp - ref_logp
        k2 = 0.5 * (logp - ref_logp)^2
        k3 = exp(ref_logp - logp) - 1 - (ref_logp - logp)

    No masking here; reduce with :func:`rlhfkit.losses.utils.masked_mean` / ``masked_sum``.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp)
    try:
        fn = KL_ESTIMATORS[estimator]
    except KeyError:
        raise KeyError(f"kl_estimator: unknown {estimator!r}; choose one of {sorted(KL_ESTIMATORS)}") from None
    return fn(logp - ref_logp)


def _reduce(per_token: torch.Tensor, mask: torch.Tensor, reduction: str,
            max_len: int | None = None) -> torch.Tensor:
    if reduction == "token":
        return masked_mean(per_token, mask)
    if reduction in ("sequence", "constant"):
        if reduction == "sequence":
            per_row = masked_mean(per_token, mask, dim=-1)  # [B]; 0 for an empty row
        else:  # Dr. GRPO: a token sum over a fixed length, not the response's own length
            if not max_len or max_len < 1:
                raise ValueError(f"max_len: must be >= 1 for reduction 'constant', got {max_len}")
            per_row = masked_sum(per_token, mask, dim=-1) / max_len
        return masked_mean(per_row, mask.bool().any(dim=-1))  # over the non-empty rows only
    raise ValueError(f"reduction: must be 'token', 'sequence' or 'constant', got {reduction!r}")


def _clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float,
    clip_eps_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token -min(r A, clip(r, 1-eps, 1+eps_high) A), the ratio r, and where the clipped term is
    active. ``clip_eps_high=None`` is the symmetric PPO clip (eps_high = eps)."""
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if clip_eps <= 0 or high <= 0:
        raise ValueError(f"clip_eps: must be > 0, got {clip_eps} (high {high})")
    ratio = torch.exp(logp - old_logp)  # r_t = pi(a|s) / pi_old(a|s)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high)
    per_token = torch.maximum(unclipped, clipped)  # Schulman et al. 2017 eq. 7 (negated)
    return per_token, ratio, clipped > unclipped


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    reduction: str = "token",
) -> tuple[torch.Tensor, Stats]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), all inputs ``[B, T]``.

        r_t = exp(logp_t - old_logp_t)
        L = mean_t -min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)     (masked mean, see reduction)

    At the first minibatch of an epoch r = 1, so L = -mean(A).

    Stats: ``loss``; ``clipfrac`` (share of valid tokens where the clipped term is the active one,
    i.e. the token gives no gradient); ``approx_kl`` (k3 estimate of KL(pi_old || pi) over valid
    tokens); ``ratio`` (mean r), ``ratio_max``.
    """
    check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    per_token, ratio, clip_active = _clipped_surrogate(logp, old_logp, advantages, clip_eps)
    loss = _reduce(per_token, mask, reduction)
    with torch.no_grad():
        mask_b = mask.bool()
        stats = {
            "loss": loss.detach(),
            "clipfrac": masked_mean(clip_active.float(), mask),
            "approx_kl": masked_mean(kl_penalty(old_logp, logp.detach(), "k3"), mask),
            "ratio": masked_mean(ratio, mask),
            "ratio_max": torch.where(mask_b, ratio, torch.zeros_like(ratio)).max(),
        }
    return loss, stats


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(R - V) / Var(R) over valid tokens; nan when Var(R) is 0 (undefined)."""
    r_mean = masked_mean(returns, mask)
    var_r = masked_mean((returns - r_mean) ** 2, mask)
    resid = returns - values
    var_resid = masked_mean((resid - masked_mean(resid, mask)) ** 2, mask)
    return torch.where(var_r > 0, 1 - var_resid / var_r.clamp(min=1e-30), torch.full_like(var_r, float("nan")))


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None = None,
    reduction: str = "token",
) -> tuple[torch.Tensor, Stats]:
    """Value-function loss, all inputs ``[B, T]``.

        unclipped:  L = 0.5 * mean (V - R)^2
        clipped:    V_clip = V_old + clip(V - V_old, -eps, eps)
                    L = 0.5 * mean max((V - R)^2, (V_clip - R)^2)     (Huang et al. 2023, PPO detail)

    Stats: ``loss``, ``vf_clipfrac`` (share of valid tokens where V is outside V_old +- eps and the
    clipped error is the larger one; 0 without clipping), ``explained_variance``
    (1 - Var(R - V)/Var(R); nan when the returns are constant), ``values`` (mean V), ``returns``
    (mean R).
    """
    check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    err = (values - returns) ** 2
    if clip_eps is None:
        per_token = err
        clip_active = torch.zeros_like(err, dtype=torch.bool)
    else:
        if clip_eps <= 0:
            raise ValueError(f"clip_eps: must be > 0 or None, got {clip_eps}")
        delta = values - old_values
        outside = delta.abs() > clip_eps  # only there does clipping change V
        v_clipped = torch.where(outside, old_values + torch.clamp(delta, -clip_eps, clip_eps), values)
        err_clipped = (v_clipped - returns) ** 2  # == err exactly inside the range (no rounding)
        per_token = torch.maximum(err, err_clipped)
        clip_active = err_clipped > err
    loss = 0.5 * _reduce(per_token, mask, reduction)
    with torch.no_grad():
        stats = {
            "loss": loss.detach(),
            "vf_clipfrac": masked_mean(clip_active.float(), mask),
            "explained_variance": _explained_variance(values.detach(), returns, mask),
            "values": masked_mean(values.detach(), mask),
            "returns": masked_mean(returns, mask),
        }
    return loss, stats


def grpo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.04,
    kl_estimator: str = "k3",
    reduction: str = "sequence",
    clip_eps_high: float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, Stats]:
    """GRPO objective (Shao et al. 2024, eq. 3) as a loss: clipped surrogate plus a KL term.

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` are ``[B, T]``; ``advantages`` is ``[B]``
    (one group-relative advantage per response, broadcast over its tokens; see
    :func:`rlhfkit.losses.advantages.group_advantages`) or ``[B, T]``.
    ``old_logp=None`` means a single update per rollout: r = 1 with gradient (old = logp.detach()).
    ``ref_logp`` may be None only when ``beta == 0``.

        per token: l_t = -min(r_t A, clip(r_t, 1 - eps, 1 + eps) A) + beta * KL_t
        KL_t (k3)  = exp(ref_logp - logp) - 1 - (ref_logp - logp)
        L = mean over responses of the mean over their tokens        (reduction="sequence", paper)
          | mean over all valid tokens of the batch                   (reduction="token")
          | mean over responses of (sum over their tokens) / max_len  (reduction="constant")

    ``clip_eps_high`` (None = ``clip_eps``) is the upper clip 1 + eps_high of DAPO's decoupled clip
    (:func:`rlhfkit.losses.policy_variants.dapo_policy_loss`).

    Stats: ``loss``, ``policy_loss`` (surrogate part), ``kl`` (mean per-token KL), ``clipfrac``,
    ``clipfrac_low`` / ``clipfrac_high`` (tokens clipped below 1 - eps / above 1 + eps_high),
    ``ratio``, ``approx_kl`` (k3 of old vs new).
    """
    if old_logp is None:
        old_logp = logp.detach()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1).expand_as(logp)  # [B] -> [B, T]
    check_same_shape(logp=logp, old_logp=old_logp, ref_logp=ref_logp, advantages=advantages, mask=mask)
    surrogate, ratio, clip_active = _clipped_surrogate(logp, old_logp, advantages, clip_eps, clip_eps_high)
    kl = kl_term(logp, ref_logp, beta, kl_estimator)
    per_token = surrogate + beta * kl
    loss = _reduce(per_token, mask, reduction, max_len)
    with torch.no_grad():
        stats = {
            "loss": loss.detach(),
            "policy_loss": _reduce(surrogate, mask, reduction, max_len),
            "kl": masked_mean(kl, mask),
            "clipfrac": masked_mean(clip_active.float(), mask),
            "clipfrac_low": masked_mean((clip_active & (ratio < 1)).float(), mask),
            "clipfrac_high": masked_mean((clip_active & (ratio > 1)).float(), mask),
            "ratio": masked_mean(ratio, mask),
            "approx_kl": masked_mean(kl_penalty(old_logp, logp.detach(), "k3"), mask),
        }
    return loss, stats


def kl_term(logp: torch.Tensor, ref_logp: torch.Tensor | None, beta: float, estimator: str) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) ``[B, T]`` for a ``beta * KL`` loss term; zeros when ``beta == 0``
    (then ``ref_logp`` may be None)."""
    if beta == 0:
        return torch.zeros_like(logp)
    if ref_logp is None:
        raise ValueError("ref_logp: required when beta != 0")
    return kl_penalty(logp, ref_logp, estimator)


def ppo_kl_penalty_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    reduction: str = "token",
) -> tuple[torch.Tensor, Stats]:
    """PPO's KL-penalty variant (Schulman et al. 2017, sec. 4, eq. 8), all inputs ``[B, T]``: no
    clipping; the policy is held near the rollout policy by a KL penalty instead.

        L^KLPEN = -E_t[ r_t A_t - beta KL[pi_old(.|s_t), pi(.|s_t)] ]
        r_t = exp(logp_t - old_logp_t);   KL_t (k3, from the token sampled by pi_old)
            = exp(logp_t - old_logp_t) - 1 - (logp_t - old_logp_t)

    k3 is the unbiased sampled-token estimate of the per-state KL (Schulman 2020); the paper uses
    the exact KL over actions. Adapt ``beta`` between updates with :class:`PolicyKLController`.

    Stats: ``loss``, ``policy_kl`` (mean KL_t), ``ratio`` (mean r), ``approx_kl`` (= policy_kl,
    the name PPO-clip logs), ``clipfrac`` (0: nothing is clipped).
    """
    check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    if beta < 0:
        raise ValueError(f"beta: must be >= 0, got {beta}")
    ratio = torch.exp(logp - old_logp)
    kl = kl_penalty(old_logp, logp, "k3")  # KL(pi_old || pi) per token, grad through logp
    loss = _reduce(-advantages * ratio + beta * kl, mask, reduction)  # eq. 8, negated
    with torch.no_grad():
        policy_kl = masked_mean(kl, mask)
        stats = {"loss": loss.detach(), "policy_kl": policy_kl, "approx_kl": policy_kl,
                 "ratio": masked_mean(ratio, mask), "clipfrac": torch.zeros(())}
    return loss, stats


class PolicyKLController:
    """The adaptive beta of PPO's KL-penalty variant (Schulman et al. 2017, sec. 4): after each
    policy update, with d = the mean KL(pi_old || pi) it reached,

        d < d_target / 1.5:  beta <- beta / 2
        d > d_target * 1.5:  beta <- beta * 2

    ``target=0`` keeps beta fixed. ``value`` is the current beta."""

    def __init__(self, init_beta: float, target: float):
        if init_beta <= 0 or target < 0:
            raise ValueError(f"init_beta: must be > 0 and target >= 0, got {init_beta} and {target}")
        self.value = float(init_beta)
        self.target = float(target)

    def update(self, policy_kl: float | torch.Tensor) -> float:
        d = float(policy_kl)
        if self.target > 0 and d < self.target / 1.5:
            self.value /= 2
        elif self.target > 0 and d > self.target * 1.5:
            self.value *= 2
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value, self.target = float(state["value"]), float(state["target"])


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, the log-space proportional controller).

        e = clip(KL_current / KL_target - 1, -0.2, 0.2)
        beta <- beta * (1 + e * n_steps / horizon)

    ``n_steps`` is the number of samples (episodes) the KL was measured on; ``horizon`` sets how
    fast beta reacts (Ziegler et al. use 10000). ``value`` is the current beta.
    """

    def __init__(self, init_beta: float, target: float, horizon: float):
        for name, v in (("init_beta", init_beta), ("target", target), ("horizon", horizon)):
            if v <= 0:
                raise ValueError(f"{name}: must be > 0, got {v}")
        self.value = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)  # proportional, clipped
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value, self.target, self.horizon = (float(state[k]) for k in ("value", "target", "horizon"))


class FixedKLController:
    """Constant KL coefficient; same interface as :class:`AdaptiveKLController`."""

    def __init__(self, beta: float):
        if beta < 0:
            raise ValueError(f"beta: must be >= 0, got {beta}")
        self.value = float(beta)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
