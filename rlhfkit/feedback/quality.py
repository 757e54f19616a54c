"""Quality control for human feedback: agreement, aggregation and gold screening (SPEC section 3).

Pure functions over plain Python values (no database, no numpy), so each statistic can be checked
against a hand computation:

* :func:`cohen_kappa` -- two raters, nominal categories (Cohen 1960).
* :func:`fleiss_kappa` -- many raters, nominal categories (Fleiss 1971), generalised to a varying
  number of raters per item.
* :func:`krippendorff_alpha` -- any number of raters, missing values, nominal / ordinal / interval /
  ratio metrics (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").
* :func:`majority_vote`, :func:`borda`, :func:`dawid_skene` -- aggregation of several labels per item,
  plain or reliability-weighted (Dawid and Skene 1979, EM over per-annotator confusion matrices).
* :func:`gold_screening`, :func:`position_bias` -- annotator screening signals.

Undefined statistics (no variation at all, fewer than two ratings) are ``float('nan')``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Mapping, Sequence

NAN = float("nan")
LEVELS = ("nominal", "ordinal", "interval", "ratio")


# --------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------

def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who labelled the same units (``a[i]`` and ``b[i]``).

    kappa = (p_o - p_e) / (1 - p_e), p_o = observed agreement, p_e = sum_c p_a(c) p_b(c).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels from rater a but {len(b)} from rater b")
    n = len(a)
    if n == 0:
        return NAN
    p_o = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    p_e = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if p_e == 1.0:
        return NAN  # both raters used one and the same category: chance agreement is total
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from a table ``counts[item][category]`` = raters who chose that category.

    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)); P_bar = mean_i P_i; p_j = sum_i n_ij / sum_i n_i;
    P_e = sum_j p_j^2; kappa = (P_bar - P_e) / (1 - P_e). With the same n_i for every item this is
    Fleiss (1971); items rated by fewer than two raters carry no agreement and are skipped.
    """
    rows = [list(map(int, row)) for row in counts if sum(row) >= 2]
    if not rows:
        return NAN
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("fleiss_kappa: every row needs the same number of categories")
    p_items = [(sum(x * x for x in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    p_bar = sum(p_items) / len(p_items)
    total = sum(sum(r) for r in rows)
    p_cat = [sum(r[j] for r in rows) / total for j in range(width)]
    p_e = sum(p * p for p in p_cat)
    if p_e == 1.0:
        return NAN
    return (p_bar - p_e) / (1.0 - p_e)


def units_to_counts(units: Mapping[Hashable, Sequence[Hashable]]) -> list[list[int]]:
    """``{unit: [category, ...]}`` -> the ``counts[item][category]`` table of :func:`fleiss_kappa`."""
    cats = sorted({c for values in units.values() for c in values}, key=repr)
    index = {c: j for j, c in enumerate(cats)}
    table = []
    for values in units.values():
        row = [0] * len(cats)
        for c in values:
            row[index[c]] += 1
        table.append(row)
    return table


def _delta2(level: str, c: float, k: float, cum: Mapping | None = None,
            marg: Mapping | None = None) -> float:
    """Squared difference function of Krippendorff's alpha for one metric."""
    if c == k:
        return 0.0
    if level == "nominal":
        return 1.0
    if level == "interval":
        return float(c - k) ** 2
    if level == "ratio":
        return ((c - k) / (c + k)) ** 2 if (c + k) != 0 else 0.0
    # ordinal: (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over the ordered values between c and k
    lo, hi = (c, k) if c < k else (k, c)
    between = cum[hi] - cum[lo] + marg[lo]
    return (between - (marg[c] + marg[k]) / 2.0) ** 2


def krippendorff_alpha(units: Iterable[Sequence], level: str = "nominal") -> float:
    """Krippendorff's alpha over ``units``: each unit is the list of values it received (None = missing).

    alpha = 1 - (n - 1) * sum_ck o_ck d2(c, k) / sum_ck n_c n_k d2(c, k), where o_ck is the
    coincidence matrix (each unit with m values adds 1 / (m - 1) for every ordered pair of its
    values), n_c its margins and n the number of pairable values.
    """
    if level not in LEVELS:
        raise ValueError(f"krippendorff_alpha: level must be one of {LEVELS}, got {level!r}")
    coincid: dict = defaultdict(float)
    for values in units:
        vals = [v for v in values if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for i, c in enumerate(vals):
            for j, k in enumerate(vals):
                if i != j:
                    coincid[(c, k)] += 1.0 / (m - 1)
    marg: dict = defaultdict(float)
    for (c, _k), o in coincid.items():
        marg[c] += o
    n = sum(marg.values())
    if n <= 1:
        return NAN
    cum = None
    if level == "ordinal":
        cum, running = {}, 0.0
        for v in sorted(marg):
            running += marg[v]
            cum[v] = running
    observed = sum(o * _delta2(level, c, k, cum, marg) for (c, k), o in coincid.items())
    values = list(marg)
    expected = sum(marg[c] * marg[k] * _delta2(level, c, k, cum, marg)
                   for c in values for k in values)
    if expected == 0:
        return NAN
    return 1.0 - (n - 1) * observed / expected


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------

def majority_vote(votes: Sequence[Hashable], weights: Sequence[float] | None = None):
    """The category with the largest (weighted) vote; ``None`` when the top is shared or no votes.

    Returns ``(winner, totals)`` with ``totals`` = {category: summed weight}.
    """
    totals: dict = defaultdict(float)
    for i, v in enumerate(votes):
        totals[v] += 1.0 if weights is None else float(weights[i])
    if not totals:
        return None, {}
    best = max(totals.values())
    top = [c for c, t in totals.items() if math.isclose(t, best)]
    return (top[0] if len(top) == 1 else None), dict(totals)


def borda(rankings: Sequence[Sequence[int]], k: int, weights: Sequence[float] | None = None) -> list[int]:
    """Aggregate best-first rankings of ``k`` candidates by (weighted) Borda count.

    A candidate at position p of a full ranking scores k - 1 - p; the result is best-first, equal
    scores broken by the lower candidate index.
    """
    score = [0.0] * k
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else float(weights[i])
        for pos, cand in enumerate(ranking):
            score[cand] += w * (k - 1 - pos)
    return sorted(range(k), key=lambda c: (-score[c], c))


@dataclass
class DawidSkeneResult:
    """Posterior class probabilities per item and a confusion matrix per annotator.

    ``confusion[annotator][true][observed]`` = P(annotator says observed | true class);
    ``reliability[annotator]`` = sum_k prior_k * confusion[annotator][k][k] (P(correct)).
    """

    categories: list
    posteriors: dict
    priors: dict
    confusion: dict
    reliability: dict
    iterations: int
    converged: bool
    labels: dict = field(default_factory=dict)  # item -> most probable category

    def label(self, item) -> Hashable:
        return self.labels[item]


def _vote_posteriors(by_item: Mapping, cats: list) -> dict:
    post = {}
    for item, obs in by_item.items():
        counts = Counter(c for _a, c in obs)
        post[item] = {c: counts[c] / len(obs) for c in cats}
    return post


def _m_step(by_item: Mapping, post: Mapping, cats: list, annotators: list, smoothing: float):
    priors = {c: (sum(post[i][c] for i in post) + smoothing) / (len(post) + smoothing * len(cats))
              for c in cats}
    conf = {a: {t: {o: smoothing for o in cats} for t in cats} for a in annotators}
    for item, obs in by_item.items():
        for a, o in obs:
            for t in cats:
                conf[a][t][o] += post[item][t]
    for a in annotators:
        for t in cats:
            z = sum(conf[a][t].values())
            for o in cats:
                conf[a][t][o] /= z
    return priors, conf


def _e_step(by_item: Mapping, priors: Mapping, conf: Mapping, cats: list) -> tuple[dict, float]:
    post, loglik = {}, 0.0
    for item, obs in by_item.items():
        logp = {t: math.log(priors[t]) + sum(math.log(conf[a][t][o]) for a, o in obs) for t in cats}
        top = max(logp.values())
        z = sum(math.exp(v - top) for v in logp.values())
        post[item] = {t: math.exp(logp[t] - top) / z for t in cats}
        loglik += top + math.log(z)
    return post, loglik


def dawid_skene(observations: Iterable[tuple], categories: Sequence | None = None,
                max_iter: int = 200, tol: float = 1e-8, smoothing: float = 0.01) -> DawidSkeneResult:
    """Dawid-Skene EM over ``(item, annotator, category)`` observations.

    Initialised from vote fractions; M-step: priors and row-normalised confusion counts weighted by
    the posteriors (``smoothing`` pseudo-counts keep every probability positive); E-step:
    P(t | item) proportional to prior_t * prod_obs confusion[a][t][o]. Stops when the
    log-likelihood changes by less than ``tol``.
    """
    by_item: dict = defaultdict(list)
    for item, annotator, cat in observations:
        by_item[item].append((annotator, cat))
    cats = list(categories) if categories is not None else sorted(
        {c for obs in by_item.values() for _a, c in obs}, key=repr)
    annotators = sorted({a for obs in by_item.values() for a, _c in obs}, key=repr)
    if not by_item:
        return DawidSkeneResult(cats, {}, {}, {}, {}, 0, True)
    post = _vote_posteriors(by_item, cats)
    previous, converged, it = -math.inf, False, 0
    for it in range(1, max_iter + 1):
        priors, conf = _m_step(by_item, post, cats, annotators, smoothing)
        post, loglik = _e_step(by_item, priors, conf, cats)
        if abs(loglik - previous) < tol:
            converged = True
            break
        previous = loglik
    reliability = {a: sum(priors[t] * conf[a][t][t] for t in cats) for a in annotators}
    labels = {i: max(cats, key=lambda c, p=p: (p[c], -cats.index(c))) for i, p in post.items()}
    return DawidSkeneResult(cats, post, priors, conf, reliability, it, converged, labels)


# --------------------------------------------------------------------------------------------------
# Screening
# --------------------------------------------------------------------------------------------------

@dataclass
class GoldStats:
    answered: int
    correct: int
    accuracy: float
    flagged: bool


def gold_screening(results: Mapping[Hashable, Sequence[bool]], threshold: float,
                   min_answered: int = 1) -> dict:
    """Per-annotator gold accuracy; flagged when at least ``min_answered`` gold items were answered
    and the accuracy is below ``threshold``."""
    out = {}
    for annotator, hits in results.items():
        answered, correct = len(hits), sum(bool(h) for h in hits)
        acc = correct / answered if answered else NAN
        out[annotator] = GoldStats(answered, correct, acc,
                                   answered >= min_answered and answered > 0 and acc < threshold)
    return out


def position_bias(choices: Iterable[str]) -> dict:
    """How often a decisive pairwise choice picked the left-hand response.

    ``choices`` are "left" / "right" / "tie" as shown on screen. Returns ``left_rate`` among decisive
    choices (0.5 = no bias), the counts, the tie rate, and a two-sided binomial z-test p-value
    (normal approximation) against 0.5.
    """
    counts = Counter(choices)
    left, right, tie = counts.get("left", 0), counts.get("right", 0), counts.get("tie", 0)
    decisive, total = left + right, left + right + tie
    rate = left / decisive if decisive else NAN
    if decisive:
        z = (left - decisive / 2.0) / math.sqrt(decisive / 4.0)
        p = math.erfc(abs(z) / math.sqrt(2.0))
    else:
        z, p = NAN, NAN
    return {"left": left, "right": right, "tie": tie, "n": total, "left_rate": rate,
            "tie_rate": tie / total if total else NAN, "z": z, "p_value": p}
