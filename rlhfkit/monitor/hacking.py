"""Reward-hacking watch (SPEC sections 5 and 7): detectors that look at each rollout batch.

A policy optimised against a learned (or rule-based) reward finds the reward's blind spots: it
grows its answers, repeats itself, collapses onto one answer for every prompt, emits runs of
punctuation, or drives the reward model far outside the range it was trained on, usually with a
jump in KL. Each detector below is a small pure function over plain Python data (texts, token
lists, scores) that returns a :class:`Finding` (or None); :class:`HackingMonitor` runs them every
step, remembers what it needs across steps (the first batch's length, the KL history), logs a named
warning with example responses, and turns a detector into a stop or a per-response score penalty
when the config says so.

Detectors and their names (the ``name`` in the log and in ``hacking.jsonl``):

    length_blowup     mean response length > length_ratio x the first batch's mean
    repetition        a response whose unique-token ratio is below min_unique_ratio, or whose
                      share of repeated n-grams is above max_repeated_ngrams
    mode_collapse     distinct-n across the batch (unique n-grams / all n-grams) below min_distinct
    special_chars     a run of >= special_run identical non-alphanumeric, non-space characters
    reward_range      a score outside the reward model's calibration range (min/max of its scores on
                      a reference set) widened by range_margin x its width
    kl_spike          batch KL > kl_spike_factor x max(mean KL of the previous steps, kl_min)
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from rlhfkit.config import opt

log = logging.getLogger("rlhfkit")

Action = Literal["warn", "stop", "penalty"]
BatchAction = Literal["warn", "stop"]  # batch-level detectors cannot penalise one response


class RewardHackingWarning(UserWarning):
    """Category of the warnings the monitor emits (named by detector in the message)."""


class RewardHackingStop(RuntimeError):
    """Raised when a detector configured with ``action: stop`` fires."""

    def __init__(self, finding: "Finding"):
        self.finding = finding
        super().__init__(f"stopped by the reward-hacking watch: {finding.name}: {finding.message}")


@dataclass
class HackingConfig:
    enabled: bool = opt(True, "run the reward-hacking detectors on every rollout batch")
    length_ratio: float = opt(2.0, "length_blowup: mean response length above this x the first batch's mean")
    length_action: Action = opt("warn", "length_blowup: warn, stop the run, or penalty (responses over the limit)")
    min_unique_ratio: float = opt(0.3, "repetition: unique tokens / tokens below this flags a response")
    max_repeated_ngrams: float = opt(0.5, "repetition: share of n-grams that repeat an earlier one above this")
    ngram: int = opt(3, "repetition: n of the repeated n-grams")
    min_tokens: int = opt(12, "repetition: only responses with at least this many tokens are checked")
    repetition_action: Action = opt("warn", "repetition: warn, stop, or penalty")
    min_distinct: float = opt(0.2, "mode_collapse: distinct-2 across the batch below this (0 = off)")
    diversity_action: BatchAction = opt("warn", "mode_collapse: warn or stop")
    special_run: int = opt(8, "special_chars: a run of this many identical punctuation/symbol characters")
    special_action: Action = opt("warn", "special_chars: warn, stop, or penalty")
    range_margin: float = opt(0.5, "reward_range: allowed overshoot as a share of the calibration range width")
    range_action: Action = opt("warn", "reward_range: warn, stop, or penalty")
    kl_spike_factor: float = opt(3.0, "kl_spike: batch KL above this x max(mean KL of the earlier steps, kl_min)")
    kl_min: float = opt(1.0, "kl_spike: floor of the KL baseline (nats per response), so tiny early KLs do not count")
    kl_action: BatchAction = opt("warn", "kl_spike: warn or stop")
    penalty: float = opt(-1.0, "score added to a flagged response when a detector's action is penalty")
    examples: int = opt(2, "example responses quoted in each warning")

    def validate(self) -> None:
        if self.length_ratio <= 1:
            raise ValueError("length_ratio must be > 1")
        if not 0 <= self.min_unique_ratio <= 1 or not 0 <= self.max_repeated_ngrams <= 1:
            raise ValueError("min_unique_ratio and max_repeated_ngrams must be in [0, 1]")
        if self.ngram < 1 or self.special_run < 2:
            raise ValueError("ngram must be >= 1 and special_run >= 2")


@dataclass
class Finding:
    """One detector firing on one batch. ``flagged`` holds the indices of the responses at fault
    (empty for batch-level detectors); ``value`` is the measured statistic, ``threshold`` the limit."""

    name: str
    message: str
    value: float
    threshold: float
    flagged: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def to_json(self, step: int) -> dict:
        return {"step": step, "name": self.name, "message": self.message, "value": self.value,
                "threshold": self.threshold, "flagged": len(self.flagged), "examples": self.examples}


# ---------------------------------------------------------------------------------------------
# Statistics (pure functions; hand-checked in tests/unit/monitor)


def ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def unique_token_ratio(tokens: Sequence) -> float:
    """len(set(tokens)) / len(tokens); 1.0 for an empty response."""
    return len(set(tokens)) / len(tokens) if tokens else 1.0


def repeated_ngram_share(tokens: Sequence, n: int) -> float:
    """Share of the response's n-grams that already occurred earlier in it (0 when it has none)."""
    grams = ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(responses: Sequence[Sequence], n: int) -> float:
    """Distinct-n across a batch (Li et al. 2016): unique n-grams / all n-grams of all responses."""
    grams = [g for r in responses for g in ngrams(r, n)]
    return len(set(grams)) / len(grams) if grams else 1.0


def longest_special_run(text: str) -> int:
    """Length of the longest run of one repeated character that is neither alphanumeric nor space."""
    best = 0
    for match in re.finditer(r"([^\w\s])\1*", text):
        best = max(best, len(match.group(0)))
    return best


# ---------------------------------------------------------------------------------------------
# Detectors: each returns a Finding or None


def _quote(texts: Sequence[str], index: Sequence[int], k: int, width: int = 160) -> list[str]:
    out = []
    for i in list(index)[:k]:
        text = " ".join(texts[i].split())
        out.append(text if len(text) <= width else text[:width] + "...")
    return out


def detect_length_blowup(lengths: Sequence[int], baseline: float | None, ratio: float,
                         texts: Sequence[str], k: int = 2) -> Finding | None:
    if not lengths or not baseline:
        return None
    mean = sum(lengths) / len(lengths)
    limit = ratio * baseline
    if mean <= limit:
        return None
    flagged = sorted((i for i, n in enumerate(lengths) if n > limit), key=lambda i: -lengths[i])
    return Finding("length_blowup", f"mean response length {mean:.1f} tokens is {mean / baseline:.1f}x "
                   f"the first batch's {baseline:.1f} (limit {ratio}x)", mean, limit, flagged,
                   _quote(texts, flagged, k))


def detect_repetition(tokens: Sequence[Sequence[int]], texts: Sequence[str], cfg: HackingConfig,
                      k: int = 2) -> Finding | None:
    flagged, worst = [], 1.0
    for i, toks in enumerate(tokens):
        if len(toks) < cfg.min_tokens:
            continue
        unique = unique_token_ratio(toks)
        repeated = repeated_ngram_share(toks, cfg.ngram)
        if unique < cfg.min_unique_ratio or repeated > cfg.max_repeated_ngrams:
            flagged.append(i)
            worst = min(worst, unique)
    if not flagged:
        return None
    return Finding("repetition", f"{len(flagged)} of {len(tokens)} responses repeat themselves (unique-token "
                   f"ratio down to {worst:.2f}, limit {cfg.min_unique_ratio}; repeated {cfg.ngram}-grams "
                   f"limit {cfg.max_repeated_ngrams})", worst, cfg.min_unique_ratio, flagged,
                   _quote(texts, flagged, k))


def detect_mode_collapse(tokens: Sequence[Sequence[int]], texts: Sequence[str], min_distinct: float,
                         k: int = 2) -> Finding | None:
    if min_distinct <= 0 or len(tokens) < 2:
        return None
    value = distinct_n(tokens, 2)
    if value >= min_distinct:
        return None
    return Finding("mode_collapse", f"distinct-2 across the batch is {value:.3f} (limit {min_distinct}): "
                   "the policy gives nearly the same answer to every prompt", value, min_distinct, [],
                   _quote(texts, range(len(texts)), k))


def detect_special_chars(texts: Sequence[str], run: int, k: int = 2) -> Finding | None:
    runs = [longest_special_run(t) for t in texts]
    flagged = [i for i, n in enumerate(runs) if n >= run]
    if not flagged:
        return None
    return Finding("special_chars", f"{len(flagged)} of {len(texts)} responses contain a run of "
                   f"{max(runs)} repeated special characters (limit {run})", float(max(runs)), float(run),
                   flagged, _quote(texts, flagged, k))


def calibration_bounds(calibration: Any) -> tuple[float, float] | None:
    """(low, high) of a reward model's calibration range: a (min, max) pair, or the dict a
    :class:`rlhfkit.models.reward.RewardModel` reports (``min``/``max`` of its reference-set scores)."""
    if calibration is None:
        return None
    if isinstance(calibration, dict):
        if "min" not in calibration or "max" not in calibration:
            return None
        return float(calibration["min"]), float(calibration["max"])
    lo, hi = calibration
    return float(lo), float(hi)


def detect_reward_range(scores: Sequence[float], calibration: Any, margin: float,
                        texts: Sequence[str], k: int = 2) -> Finding | None:
    """Scores outside [min, max] of the reward model's reference-set rewards, widened on each side
    by ``margin`` x (max - min)."""
    bounds = calibration_bounds(calibration)
    if bounds is None:
        return None
    lo, hi = bounds
    slack = margin * max(hi - lo, 1e-8)
    low, high = lo - slack, hi + slack
    flagged = [i for i, s in enumerate(scores) if s < low or s > high]
    if not flagged:
        return None
    far = max((scores[i] for i in flagged), key=lambda s: abs(s - (lo + hi) / 2))
    return Finding("reward_range", f"{len(flagged)} of {len(scores)} rewards fall outside the reward model's "
                   f"calibration range [{lo:.3g}, {hi:.3g}] widened to [{low:.3g}, {high:.3g}] (e.g. {far:.3g}): "
                   "the policy may be exploiting the reward model", float(far), high if far > high else low,
                   flagged, _quote(texts, flagged, k))


def detect_kl_spike(kl: float, history: Sequence[float], factor: float, kl_min: float,
                    min_history: int = 2) -> Finding | None:
    """KL above ``factor x max(mean of history, kl_min)``; needs ``min_history`` earlier steps (the
    first steps start from KL ~ 0, which would make any movement look like a spike)."""
    if len(history) < min_history or not math.isfinite(kl):
        return None
    mean = sum(history) / len(history)
    limit = factor * max(mean, kl_min)
    if kl <= limit:
        return None
    return Finding("kl_spike", f"KL to the reference jumped to {kl:.3g} nats per response, above "
                   f"{factor} x max(mean of the previous {len(history)} steps = {mean:.3g}, kl_min = {kl_min})",
                   kl, limit)


# ---------------------------------------------------------------------------------------------
# The monitor: runs the detectors, keeps cross-step state, applies actions


@dataclass
class MonitorResult:
    findings: list[Finding]
    penalties: list[float]  # per response, added to its score (0 where no penalty applies)

    def metrics(self) -> dict:
        out = {f"hacking/{f.name}": 1.0 for f in self.findings}
        out["hacking/penalised"] = float(sum(1 for p in self.penalties if p != 0))
        return out


class HackingMonitor:
    """Stateful runner of the detectors. ``check_responses`` runs before the reward is shaped (so
    penalties can be added to scores); ``check_kl`` after the KL to the reference is known."""

    KL_HISTORY = 20

    def __init__(self, cfg: HackingConfig, calibration_range: tuple[float, float] | None = None,
                 sink=None):
        self.cfg = cfg
        self.calibration_range = calibration_range
        self.baseline_length: float | None = None
        self.kl_history: list[float] = []
        self.sink = sink  # callable(step, finding) that records findings (e.g. to hacking.jsonl)
        self.counts: dict[str, int] = {}

    def _fire(self, step: int, finding: Finding, action: str) -> None:
        self.counts[finding.name] = self.counts.get(finding.name, 0) + 1
        examples = "".join(f"\n    e.g. {e!r}" for e in finding.examples)
        log.warning("reward hacking? [%s] step %d: %s%s", finding.name, step, finding.message, examples)
        if self.sink is not None:
            self.sink(step, finding)
        if action == "stop":
            raise RewardHackingStop(finding)

    def check_responses(self, step: int, texts: Sequence[str], tokens: Sequence[Sequence[int]],
                        scores: Sequence[float]) -> MonitorResult:
        """Length, repetition, diversity, special characters and reward range on one batch."""
        cfg = self.cfg
        penalties = [0.0] * len(texts)
        if not cfg.enabled:
            return MonitorResult([], penalties)
        lengths = [len(t) for t in tokens]
        if self.baseline_length is None and lengths:
            self.baseline_length = max(1.0, sum(lengths) / len(lengths))
        k = cfg.examples
        checks = [
            (detect_length_blowup(lengths, self.baseline_length, cfg.length_ratio, texts, k), cfg.length_action),
            (detect_repetition(tokens, texts, cfg, k), cfg.repetition_action),
            (detect_mode_collapse(tokens, texts, cfg.min_distinct, k), cfg.diversity_action),
            (detect_special_chars(texts, cfg.special_run, k), cfg.special_action),
            (detect_reward_range(scores, self.calibration_range, cfg.range_margin, texts, k), cfg.range_action),
        ]
        findings = []
        for finding, action in checks:
            if finding is None:
                continue
            findings.append(finding)
            if action == "penalty":
                for i in finding.flagged:
                    penalties[i] = cfg.penalty
        # fire after collecting, so a stop still reports everything this batch showed
        for finding, action in checks:
            if finding is not None and action != "stop":
                self._fire(step, finding, action)
        for finding, action in checks:
            if finding is not None and action == "stop":
                self._fire(step, finding, action)
        return MonitorResult(findings, penalties)

    def check_kl(self, step: int, kl: float) -> Finding | None:
        if not self.cfg.enabled:
            return None
        finding = detect_kl_spike(kl, self.kl_history, self.cfg.kl_spike_factor, self.cfg.kl_min)
        self.kl_history = (self.kl_history + [float(kl)])[-self.KL_HISTORY:]
        if finding is not None:
            self._fire(step, finding, self.cfg.kl_action)
        return finding

    def state_dict(self) -> dict:
        return {"baseline_length": self.baseline_length, "kl_history": list(self.kl_history),
                "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.baseline_length = state["baseline_length"]
        self.kl_history = list(state["kl_history"])
        self.counts = dict(state.get("counts", {}))
