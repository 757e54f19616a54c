"""Reward-model over-optimisation (Gao et al. 2022, "Scaling laws for reward model
overoptimization"): pure functions (numpy only).

A policy optimised against a proxy reward climbs the proxy indefinitely while the gold reward (what
the proxy stands for) first rises and then falls. Gao et al. fit, with d = sqrt(KL(pi || pi_init)),
and R the gold score's gain over the initial policy:

    best-of-N:  R_bon(d) = d (alpha - beta d)          peak at d* = alpha / (2 beta)
    RL:         R_rl(d)  = d (alpha - beta log d)      peak at d* = exp(alpha / beta - 1)

Both are linear in (alpha, beta), so the fit is ordinary least squares without intercept (R(0) = 0).

Best-of-N needs no training: sample n responses per prompt once, and the expected score of the best
of N <= n of them (the best by the proxy) follows exactly from the ranks (:func:`bon_expected`, an
unbiased estimator that averages over every N-subset of the n samples, as Gao et al. do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Form = Literal["bon", "rl"]


def bon_expected(select_by: Sequence[float], values: Sequence[float], n: int) -> float:
    """E[values of the argmax of ``select_by`` among n of the samples drawn without replacement].

    Sort the m samples by ``select_by`` ascending (ties keep their order); the sample of rank i
    (1-based) is the best of a random n-subset with probability C(i-1, n-1) / C(m, n)."""
    s = np.asarray(select_by, dtype=float)
    v = np.asarray(values, dtype=float)
    m = s.size
    if not 1 <= n <= m:
        raise ValueError(f"bon_expected: n must be in 1..{m} (the samples per prompt), got {n}")
    order = np.argsort(s, kind="stable")
    weights = np.array([math.comb(i - 1, n - 1) for i in range(1, m + 1)], dtype=float) / math.comb(m, n)
    return float((weights * v[order]).sum())


def _features(d: np.ndarray, form: Form) -> np.ndarray:
    if form == "bon":
        return np.stack([d, -d * d], axis=1)  # R = alpha d - beta d^2
    if form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.stack([d, -d * np.log(safe)], axis=1)  # R = alpha d - beta d log d
    raise ValueError(f"form: expected 'bon' or 'rl', got {form!r}")


@dataclass(frozen=True)
class OveroptFit:
    form: str
    alpha: float
    beta: float
    peak_d: float | None  # sqrt(KL) where the fitted gain peaks (0: it only falls); None: never turns down
    peak_gain: float | None

    @property
    def peak_kl(self) -> float | None:
        return None if self.peak_d is None else self.peak_d ** 2

    def predict(self, d: Sequence[float]) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        return _features(d, self.form) @ np.array([self.alpha, self.beta])  # type: ignore[arg-type]


def fit_overopt(d: Sequence[float], gain: Sequence[float], form: Form = "bon") -> OveroptFit:
    """Least-squares (alpha, beta) of the Gao et al. form through the points (d, gain), and its peak."""
    d = np.asarray(d, dtype=float)
    y = np.asarray(gain, dtype=float)
    if d.shape != y.shape or d.size < 2:
        raise ValueError(f"fit_overopt: need >= 2 points with matching shapes, got {d.size} and {y.size}")
    (alpha, beta), *_ = np.linalg.lstsq(_features(d, form), y, rcond=None)
    alpha, beta = float(alpha), float(beta)
    if beta <= 0:
        return OveroptFit(form, alpha, beta, None, None)
    # bon: a negative alpha means the gain falls from the start, so the best is d = 0 (N = 1)
    peak = max(0.0, alpha / (2 * beta)) if form == "bon" else math.exp(alpha / beta - 1)
    fit = OveroptFit(form, alpha, beta, peak, 0.0)
    return OveroptFit(form, alpha, beta, peak, float(fit.predict([peak])[0]))


def n_for_kl(kl: float, n_max: float = 1e12) -> float:
    """The (real) N whose best-of-N KL, log N - (N-1)/N, equals ``kl`` (bisection on a log scale)."""
    from rlhfkit.eval.stats import bon_kl

    if kl <= 0:
        return 1.0
    lo, hi = 0.0, math.log(n_max)
    for _ in range(100):
        mid = (lo + hi) / 2
        if bon_kl(math.exp(mid)) < kl:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def pooled_std(scores: Sequence[Sequence[float]]) -> float:
    """Standard deviation of all scores ``[P][K]`` together (1.0 when they are all equal)."""
    flat = np.array([s for row in scores for s in row], dtype=float)
    return float(flat.std()) or 1.0


def analyse_curve(curve: list[dict], proxy_std: float, gold_std: float, form: Form) -> dict:
    """Gains over the first point (``curve[0]``: N = 1, or the start of an RL run) in units of each
    reward's standard deviation, the Gao et al. fit of each, and where the gold fit peaks.

    ``curve``: rows with ``sqrt_kl``, ``proxy`` and ``gold`` (and ``n`` for best-of-N)."""
    d = [r["sqrt_kl"] for r in curve]
    gains = {"proxy": [(r["proxy"] - curve[0]["proxy"]) / proxy_std for r in curve],
             "gold": [(r["gold"] - curve[0]["gold"]) / gold_std for r in curve]}
    enough = sum(x > 0 for x in d) >= 2  # two parameters through the origin need two points beyond it
    fits = {k: fit_overopt(d, g, form) if enough else None for k, g in gains.items()}
    gold_fit = fits["gold"]
    best = max(curve, key=lambda r: r["gold"])
    peak = None
    if gold_fit is not None and gold_fit.peak_d is not None:
        peak = {"sqrt_kl": gold_fit.peak_d, "kl": gold_fit.peak_kl, "gain_std": gold_fit.peak_gain,
                "inside_measured_range": gold_fit.peak_d <= max(d)}
        if form == "bon":
            peak["n"] = n_for_kl(gold_fit.peak_kl)
    from dataclasses import asdict

    return {"gains": gains, "fits": {k: asdict(f) if f else None for k, f in fits.items()},
            "fit_objects": fits, "gold_peak_fit": peak,
            "gold_best_measured": {k: v for k, v in best.items() if k in ("n", "step", "label", "sqrt_kl")}}


FIT_TEXT = {"bon": ("d (alpha - beta d)", "N = 1"), "rl": ("d (alpha - beta log d)", "the start")}


def describe_fits(summary: dict, form: Form) -> list[str]:
    """Lines that state each fit and where gold peaks (``summary``: what analyse_curve returned,
    as written to overopt.json / frontier.json)."""
    shape, start = FIT_TEXT[form]
    lines = [f"{name} fit: gain = {shape} with alpha {fit['alpha']:.4f}, beta {fit['beta']:.4f} "
             f"(d = sqrt(KL), gain in std units over {start})" for name, fit in summary["fits"].items() if fit]
    best = summary["gold_best_measured"]
    best_text = f"N = {best['n']}" if "n" in best else best.get("label", "")
    peak = summary["gold_peak_fit"]
    if peak is None:
        return lines + [f"gold does not turn down within the fit (best measured: {best_text})"]
    where = "inside" if peak["inside_measured_range"] else "beyond (extrapolated)"
    n = f", N ~ {peak['n']:.1f}" if "n" in peak else ""
    return lines + [f"gold peaks at sqrt(KL) = {peak['sqrt_kl']:.3f} (KL {peak['kl']:.3f} nats{n}), {where} "
                    f"the measured range; best measured: {best_text}"]
