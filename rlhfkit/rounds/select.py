"""Active selection: which candidate pairs of a round are worth a label (pure functions, numpy only).

A round samples K responses per prompt; every unordered pair (i, j) of one prompt's responses is a
candidate. With the label budget B, the B candidates that rank first are labelled:

* ``disagreement``: the largest spread of the reward-model ensemble about the pair. Member m's
  preference is d_m = r_m(x, y_i) - r_m(x, y_j); the pair's score is std_m(d_m) (population std),
  the pairs the members disagree on most (an estimate of epistemic uncertainty, as in
  ensemble-based active preference learning).
* ``least_confident``: P(i > j) = sigmoid(mean_m d_m) closest to 0.5, i.e. the smallest
  |P - 0.5| (works with one reward model).
* ``random``: a seeded random order, the control.

Ties keep the candidates' order (prompt-major, then i, then j), so a ranking is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Strategy = Literal["disagreement", "least_confident", "random"]
STRATEGIES = ("disagreement", "least_confident", "random")


@dataclass(frozen=True)
class Candidate:
    """Responses ``i`` and ``j`` (i < j) of prompt ``prompt``."""

    prompt: int
    i: int
    j: int


def candidate_pairs(texts: Sequence[Sequence[str]]) -> list[Candidate]:
    """Every pair of distinct responses per prompt (``texts[p][k]``): identical texts carry no
    preference and are skipped."""
    out = []
    for p, group in enumerate(texts):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if group[i].strip() != group[j].strip():
                    out.append(Candidate(p, i, j))
    return out


def reward_differences(rewards: np.ndarray, pairs: Sequence[Candidate]) -> np.ndarray:
    """``[M, N]``: member m's r(y_i) - r(y_j) for each pair; ``rewards`` is ``[M, P, K]``."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 3:
        raise ValueError(f"rewards must be [members, prompts, samples], got shape {r.shape}")
    p = np.array([c.prompt for c in pairs], dtype=int)
    i = np.array([c.i for c in pairs], dtype=int)
    j = np.array([c.j for c in pairs], dtype=int)
    return r[:, p, i] - r[:, p, j]


def disagreement(rewards: np.ndarray, pairs: Sequence[Candidate]) -> np.ndarray:
    """``[N]`` std over members of the reward difference (0 for a single member)."""
    return reward_differences(rewards, pairs).std(axis=0)


def confidence(rewards: np.ndarray, pairs: Sequence[Candidate]) -> np.ndarray:
    """``[N]`` |P(i > j) - 0.5| with P = sigmoid(mean over members of the reward difference)."""
    mean = reward_differences(rewards, pairs).mean(axis=0)
    return np.abs(np.tanh(mean / 2.0)) / 2.0  # = |sigmoid(mean) - 0.5|, exactly symmetric in the sign


def rank_pairs(pairs: Sequence[Candidate], strategy: str, rewards: np.ndarray | None = None,
               seed: int = 0) -> list[int]:
    """Indices into ``pairs``, most worth labelling first."""
    if strategy == "random":
        return [int(k) for k in np.random.default_rng(seed).permutation(len(pairs))]
    if strategy not in STRATEGIES:
        raise ValueError(f"selection: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if rewards is None:
        raise ValueError(f"selection={strategy} needs the previous round's reward model scores")
    if not pairs:
        return []
    key = -disagreement(rewards, pairs) if strategy == "disagreement" else confidence(rewards, pairs)
    return [int(k) for k in np.argsort(key, kind="stable")]


def select_pairs(pairs: Sequence[Candidate], strategy: str, budget: int, rewards: np.ndarray | None = None,
                 seed: int = 0) -> list[Candidate]:
    """The ``budget`` candidates that rank first (all of them when there are fewer)."""
    return [pairs[k] for k in rank_pairs(pairs, strategy, rewards, seed)[:max(0, budget)]]
