"""Win rates, bootstrap CIs, the length-controlled win rate and best-of-N KL, against values
computed by hand."""

import math

import numpy as np
import pytest

from rlhfkit.eval.stats import (bon_kl, bootstrap_ci, length_controlled_win_rate, logistic_fit, verdicts,
                                win_rate)


def test_verdicts_and_win_rate_count_a_tie_as_one_half():
    v = verdicts([3.0, 1.0, 2.0, 2.05, 0.0], [1.0, 2.0, 2.0, 2.0, 0.0], tie_eps=0.1)
    assert v.tolist() == [1.0, 0.0, 0.5, 0.5, 0.5]
    wr = win_rate(v)
    assert (wr.wins, wr.ties, wr.losses, wr.n) == (1, 3, 1, 5)
    assert wr.rate == pytest.approx((1 + 3 / 2) / 5)  # 0.5
    assert verdicts([2.05], [2.0]).tolist() == [1.0]  # no tie margin by default
    with pytest.raises(ValueError):
        verdicts([1.0], [1.0, 2.0])


def test_bootstrap_percentile_ci_by_hand():
    # data [0, 0, 1]: the mean of 3 draws is 0 (p 8/27), 1/3 (12/27), 2/3 (6/27) or 1 (1/27);
    # cumulative 0.296, 0.741, 0.963, 1: the 10% quantile is 0 and the 90% quantile is 2/3.
    data = np.array([0.0, 0.0, 1.0])
    lo, hi = bootstrap_ci(3, lambda idx: data[idx].mean(), n_boot=4000, confidence=0.8, seed=1)
    assert (lo, hi) == (0.0, pytest.approx(2 / 3))
    # a constant has a zero-width interval; the same seed gives the same interval
    assert bootstrap_ci(5, lambda idx: 0.5, n_boot=50) == (0.5, 0.5)
    noisy = np.random.default_rng(0).normal(size=40)
    stat = lambda idx: noisy[idx].mean()  # noqa: E731
    assert bootstrap_ci(40, stat, n_boot=200, seed=3) == bootstrap_ci(40, stat, n_boot=200, seed=3)


def test_bootstrap_ci_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(0).normal(loc=2.0, scale=1.0, size=400)
    lo, hi = bootstrap_ci(400, lambda idx: x[idx].mean(), n_boot=2000, seed=0)
    half = 1.96 * x.std() / math.sqrt(400)  # 0.098
    assert lo == pytest.approx(x.mean() - half, abs=0.015)
    assert hi == pytest.approx(x.mean() + half, abs=0.015)


def test_logistic_fit_recovers_group_rates_of_a_saturated_model():
    # two length groups; two parameters fit both group rates exactly:
    # dlen 0: 6 wins in 10 -> b0 = logit(0.6); dlen 1: 9 in 10 -> b0 + b1 = logit(0.9)
    x = np.array([0.0] * 10 + [1.0] * 10)
    y = np.array([1.0] * 6 + [0.0] * 4 + [1.0] * 9 + [0.0])
    b0, b1 = logistic_fit(x, y)
    assert b0 == pytest.approx(math.log(0.6 / 0.4), abs=1e-5)
    assert b0 + b1 == pytest.approx(math.log(0.9 / 0.1), abs=1e-5)


def test_length_controlled_win_rate_is_the_win_rate_at_equal_length():
    # raw win rate 0.75, but the policy's extra wins all come with longer answers:
    # at equal length it wins 6 of 10 -> LC win rate 0.6 (whatever the length unit)
    dlen = [0.0] * 10 + [40.0] * 10
    v = [1.0] * 6 + [0.0] * 4 + [1.0] * 9 + [0.0]
    assert win_rate(v).rate == 0.75
    assert length_controlled_win_rate(v, dlen) == pytest.approx(0.6, abs=1e-5)
    # ties are soft labels: equal length, 2 wins, 2 ties, 0 losses -> (2 + 1) / 4
    assert length_controlled_win_rate([1, 1, 0.5, 0.5], [0, 0, 0, 0]) == pytest.approx(0.75, abs=1e-5)
    # symmetric design with no length effect: LC = raw = 0.5
    assert length_controlled_win_rate([1, 0, 1, 0], [-1, -1, 1, 1]) == pytest.approx(0.5, abs=1e-6)


def test_best_of_n_kl():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)  # 0.19315
    assert bon_kl(64) == pytest.approx(4.158883 - 63 / 64, abs=1e-6)  # 3.17451
    with pytest.raises(ValueError):
        bon_kl(0)
