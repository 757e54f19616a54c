"""Rewards to advantages: per-token KL-shaped rewards, GAE, group-relative baselines.

Tensors are ``[B, T]`` over response tokens with ``mask [B, T]`` (true = a generated token). The
masks may be right-padded (the usual layout of generated responses), left-padded, or ragged in any
way: masked positions are simply not steps of the episode.
"""

from __future__ import annotations

import torch

from rlhfkit.losses.utils import check_same_shape, masked_sum, masked_whiten

__all__ = [
    "compute_gae",
    "compute_gae_reference",
    "per_token_rewards",
    "last_valid_index",
    "group_advantages",
    "reinforce_pp_advantages",
]


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), vectorised over B.

    Shapes: ``rewards``, ``values``, ``mask`` ``[B, T]`` -> ``(advantages [B, T], returns [B, T])``.

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                      (the value targets)

    "t+1" is the next VALID position of the same row; after a row's last valid token the episode
    ends, so V_{t+1} = A_{t+1} = 0 there. Masked positions are skipped and come out as 0 in both
    outputs. A reverse scan over T (a Python loop over time, tensor ops over the batch). Pass
    detached rewards and values (no gradient is meant to flow through advantages).
    """
    check_same_shape(rewards=rewards, values=values, mask=mask)
    mask_b = mask.bool()
    B, T = rewards.shape
    zero = torch.zeros(B, dtype=values.dtype, device=values.device)
    next_value, next_adv = zero, zero
    advantages = torch.zeros_like(values)
    for t in reversed(range(T)):
        m = mask_b[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # TD error
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(m, adv_t, zero)
        next_value = torch.where(m, values[:, t], next_value)  # carry across masked holes
        next_adv = torch.where(m, adv_t, next_adv)
    returns = torch.where(mask_b, advantages + values, torch.zeros_like(values))
    return advantages, returns


def compute_gae_reference(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`compute_gae` with plain nested Python loops over batch and time (for tests)."""
    B, T = rewards.shape
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for b in range(B):
        steps = [t for t in range(T) if bool(mask[b, t])]
        next_value, next_adv = 0.0, 0.0
        for t in reversed(steps):
            r, v = float(rewards[b, t]), float(values[b, t])
            delta = r + gamma * next_value - v
            a = delta + gamma * lam * next_adv
            adv[b][t], ret[b][t] = a, a + v
            next_value, next_adv = v, a
    kw = {"dtype": values.dtype, "device": values.device}
    return torch.tensor(adv, **kw), torch.tensor(ret, **kw)


def last_valid_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of the last true entry of each row: ``[B, T] -> [B]`` (long). Rows without one fail."""
    mask_b = mask.bool()
    empty = ~mask_b.any(dim=-1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"mask: row(s) {rows[:10]} have no valid token")
    T = mask_b.shape[-1]
    return T - 1 - mask_b.flip(-1).int().argmax(dim=-1)  # first true from the right


def per_token_rewards(
    score: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    has_eos: torch.Tensor | None = None,
    missing_eos_penalty: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KL-shaped per-token rewards for PPO (Ziegler et al. 2019; Stiennon et al. 2020).

    Shapes: ``score [B]`` (reward-model score of each response), ``kl [B, T]`` (per-token KL
    estimate, e.g. :func:`rlhfkit.losses.ppo.kl_penalty` k1), ``mask [B, T]`` -> ``rewards [B, T]``:

        r_t = -beta * kl_t                  on every valid token
        r_T = -beta * kl_T + score          on the LAST valid token of the row

    The last valid token is found per row from the mask, so right-padded (and left-padded)
    responses of different lengths are handled; padded positions get 0.
    EOS trick (Huang et al. 2023): with ``missing_eos_penalty`` set, responses whose ``has_eos [B]``
    is false get that fixed score instead of the reward model's.

    Stats: ``score`` (mean, after the EOS trick), ``kl`` (mean per-sequence SUM of kl),
    ``non_score_reward`` (mean per-sequence sum of -beta kl), ``total`` (mean per-sequence reward).
    """
    check_same_shape(kl=kl, mask=mask)
    if tuple(score.shape) != (kl.shape[0],):
        raise ValueError(f"score: expected shape ({kl.shape[0]},), got {tuple(score.shape)}")
    if missing_eos_penalty is not None:
        if has_eos is None:
            raise ValueError("has_eos: required when missing_eos_penalty is set")
        score = torch.where(has_eos.bool(), score, torch.full_like(score, missing_eos_penalty))
    mask_b = mask.bool()
    non_score = torch.where(mask_b, -beta * kl, torch.zeros_like(kl))
    last = last_valid_index(mask_b)  # [B]
    rewards = non_score.scatter_add(1, last.unsqueeze(1), score.to(kl.dtype).unsqueeze(1))
    stats = {
        "score": score.detach().float().mean(),
        "kl": masked_sum(kl.detach(), mask_b, dim=-1).mean(),
        "non_score_reward": non_score.detach().sum(-1).mean(),
        "total": rewards.detach().sum(-1).mean(),
    }
    return rewards, stats


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    method: str = "grpo",
    std_normalize: bool | None = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Group-relative advantages for G samples per prompt: ``rewards [N*G] -> advantages [N*G]``.

    Layout: the G samples of a prompt are contiguous (``rewards.view(N, G)``).

        grpo (Shao et al. 2024, section 4.1.2):  A_i = (r_i - mean_g) / (std_g + eps)
        rloo (Ahmadian et al. 2024):              A_i = r_i - (sum_g - r_i) / (G - 1)
                                                      = G / (G - 1) * (r_i - mean_g)

    std_g is the sample (unbiased) standard deviation of the group. ``std_normalize`` defaults to
    True for grpo and False for rloo; set it explicitly to override (False for grpo gives the
    "Dr. GRPO" variant, True for rloo divides by (std_g + eps) as well).

    Stats: ``reward_mean``, ``reward_std`` (mean within-group std), ``zero_std_frac`` (share of
    groups where every sample got the same reward: they carry no learning signal).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards: expected shape [N*G], got {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size: must be >= 2, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"rewards: length {rewards.numel()} is not a multiple of group_size {group_size}")
    if method not in ("grpo", "rloo"):
        raise ValueError(f"method: must be 'grpo' or 'rloo', got {method!r}")
    if std_normalize is None:
        std_normalize = method == "grpo"
    grouped = rewards.view(-1, group_size)  # [N, G]
    G = group_size
    mean = grouped.mean(dim=1, keepdim=True)  # [N, 1]
    std = grouped.std(dim=1, keepdim=True)  # unbiased, [N, 1]
    if method == "grpo":
        adv = grouped - mean
    else:
        adv = grouped - (grouped.sum(dim=1, keepdim=True) - grouped) / (G - 1)  # leave-one-out
    if std_normalize:
        adv = adv / (std + eps)
    stats = {
        "reward_mean": rewards.detach().float().mean(),
        "reward_std": std.detach().float().mean(),
        "zero_std_frac": (std.detach() == 0).float().mean(),
    }
    return adv.reshape(-1), stats


def reinforce_pp_advantages(
    score: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    gamma: float = 1.0,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REINFORCE++ advantages (Hu 2025, "REINFORCE++", sec. 3): no critic, no group baseline; the
    token KL is in the reward and the returns are normalised over the whole batch.

    Shapes: ``score [B]``, ``kl [B, T]`` (per-token KL(pi || pi_ref) estimate), ``mask [B, T]`` (every
    row with at least one valid token), ``keep [B]`` (rows that count in the normalisation and the
    loss; None = all) -> ``advantages [B, T]``:

        r_t = -beta * KL_t  (+ score on the last token)       (:func:`per_token_rewards`)
        G_t = sum_{s >= t} gamma^(s - t) r_s                    (return-to-go: GAE with V = 0, lambda 1)
        A_t = (G_t - mean(G)) / std(G)                          mean, std over every kept token of the batch

    Rows outside ``keep`` get 0. Stats: those of :func:`per_token_rewards`.
    """
    rewards, stats = per_token_rewards(score, kl, mask, beta)
    returns, _ = compute_gae(rewards, torch.zeros_like(rewards), mask, gamma=gamma, lam=1.0)
    counted = mask.bool() if keep is None else mask.bool() & keep.bool().unsqueeze(1)
    if int(counted.sum()) < 2:  # nothing to normalise against: no signal
        return torch.zeros_like(returns), stats
    return masked_whiten(returns, counted), stats  # global batch normalisation
