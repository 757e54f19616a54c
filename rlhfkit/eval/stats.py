"""Win rates and their uncertainty: pure functions over plain numbers (numpy only).

* :func:`verdicts`: one comparison = 1 (policy better), 0.5 (tie), 0 (baseline better).
* :func:`win_rate`: the mean verdict, a tie counting one half, with the counts.
* :func:`bootstrap_ci`: percentile bootstrap over independent units (prompts), seeded.
* :func:`length_controlled_win_rate`: logistic regression of the verdict on the length
  difference, reported as the win rate at equal length, sigmoid(b0) (AlpacaEval LC, Dubois et al.
  2024, in its simplest form).
* :func:`bon_kl`: the KL of best-of-N sampling to the base policy, log N - (N-1)/N (as used by
  Gao et al. 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class WinRate:
    rate: float  # (wins + ties / 2) / n
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses


def verdicts(policy_scores: Sequence[float], baseline_scores: Sequence[float], tie_eps: float = 0.0) -> np.ndarray:
    """``[n]`` verdicts of paired scores: 1 where policy > baseline + tie_eps, 0 where
    policy < baseline - tie_eps, 0.5 otherwise (a tie)."""
    a = np.asarray(policy_scores, dtype=float)
    b = np.asarray(baseline_scores, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"verdicts: {a.shape} policy scores but {b.shape} baseline scores")
    diff = a - b
    return np.where(diff > tie_eps, 1.0, np.where(diff < -tie_eps, 0.0, 0.5))


def win_rate(v: Sequence[float]) -> WinRate:
    """Win rate of verdicts ``v`` (values 1, 0.5, 0): a tie counts one half."""
    v = np.asarray(v, dtype=float)
    if v.size == 0:
        raise ValueError("win_rate: no comparisons")
    wins, ties = int((v == 1.0).sum()), int((v == 0.5).sum())
    return WinRate(rate=float(v.mean()), wins=wins, ties=ties, losses=int(v.size) - wins - ties)


def bootstrap_ci(n_units: int, statistic: Callable[[np.ndarray], float], n_boot: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (Efron & Tibshirani 1993, ch. 13) of ``statistic(index)``.

    ``index`` is an ``[n_units]`` resample (with replacement) of the unit indices 0..n_units-1:
    resample the independent units (prompts), not the comparisons within a prompt, which share the
    prompt. Returns the (1-c)/2 and (1+c)/2 quantiles of the ``n_boot`` resampled statistics."""
    if n_units < 1:
        raise ValueError("bootstrap_ci: no units to resample")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap_ci: confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n_units, size=n_units)) for _ in range(n_boot)])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(lo), float(hi)


def logistic_fit(x: np.ndarray, y: np.ndarray, iters: int = 50, ridge: float = 1e-6) -> tuple[float, float]:
    """(b0, b1) maximising sum y log p + (1-y) log(1-p), p = sigmoid(b0 + b1 x), y in [0, 1] (soft
    labels allowed: a tie is y = 0.5). Newton-Raphson (IRLS); ``ridge`` keeps a separable set finite."""
    X = np.stack([np.ones_like(x), x], axis=1)  # [n, 2]
    beta = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30.0, 30.0)))
        grad = X.T @ (y - p) - ridge * beta
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def length_controlled_win_rate(v: Sequence[float], length_diff: Sequence[float]) -> float:
    """Win rate at equal length: fit P(policy wins) = sigmoid(b0 + b1 * dlen) and return sigmoid(b0).

    ``dlen`` = policy length - baseline length per comparison. It is divided by its RMS before the
    fit (a pure rescaling of b1: b0, the log-odds at dlen = 0, is unchanged). Longer answers tend to
    win under learned rewards; this reports what is left of the win rate once length is accounted
    for."""
    y = np.asarray(v, dtype=float)
    x = np.asarray(length_diff, dtype=float)
    if y.shape != x.shape or y.size == 0:
        raise ValueError(f"length_controlled_win_rate: {y.size} verdicts and {x.size} length differences")
    scale = math.sqrt(float((x ** 2).mean()))
    b0, _ = logistic_fit(x / scale if scale > 0 else x, y)
    return 1.0 / (1.0 + math.exp(-b0))


def bon_kl(n: int | float) -> float:
    """KL(best-of-n || base) = log n - (n-1)/n, an upper bound that is tight for continuous
    rewards (Gao et al. 2022, "Scaling laws for reward model overoptimization")."""
    if n < 1:
        raise ValueError(f"bon_kl: n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n
