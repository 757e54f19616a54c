"""The best-of-N estimator and the Gao et al. (2022) over-optimisation fits, by hand and on
synthetic data with a known peak."""

import itertools
import math

import numpy as np
import pytest

from rlhfkit.eval.overopt import bon_expected, fit_overopt, n_for_kl
from rlhfkit.eval.stats import bon_kl


def test_bon_expected_by_hand():
    proxy, gold = [1.0, 2.0, 3.0], [10.0, 30.0, 20.0]
    # N=2: subsets {1,2} -> 30, {1,3} -> 20, {2,3} -> 20 (gold of the proxy's best); mean 70/3
    assert bon_expected(proxy, gold, 2) == pytest.approx(70 / 3)
    assert bon_expected(proxy, proxy, 2) == pytest.approx((2 + 3 + 3) / 3)
    assert bon_expected(proxy, gold, 1) == pytest.approx(20.0)  # N=1: the plain mean
    assert bon_expected(proxy, gold, 3) == 20.0  # N=all: the proxy's argmax
    with pytest.raises(ValueError):
        bon_expected(proxy, gold, 4)


def test_bon_expected_equals_the_mean_over_every_subset():
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=7), rng.normal(size=7)
    for n in range(1, 8):
        subsets = list(itertools.combinations(range(7), n))
        brute = np.mean([gold[max(s, key=lambda i: proxy[i])] for s in subsets])
        assert bon_expected(proxy, gold, n) == pytest.approx(brute)


def test_bon_fit_recovers_a_known_peak_from_noisy_best_of_n_points():
    # gold gain R(d) = d (2 - d): peak at d* = 1 (KL 1), height 1; measured at the best-of-N KLs
    d = np.sqrt([bon_kl(2 ** k) for k in range(0, 11)])  # N = 1 .. 1024, d up to 2.4
    gain = d * (2 - d) + np.random.default_rng(0).normal(scale=0.02, size=d.size)
    fit = fit_overopt(d, gain, "bon")
    assert fit.alpha == pytest.approx(2, abs=0.1) and fit.beta == pytest.approx(1, abs=0.1)
    assert fit.peak_d == pytest.approx(1.0, abs=0.05)
    assert fit.peak_kl == pytest.approx(1.0, abs=0.1)
    assert fit.peak_gain == pytest.approx(1.0, abs=0.05)


def test_rl_fit_recovers_its_peak_exactly_without_noise():
    # R(d) = d (1 - 0.5 log d): dR/dd = 1 - 0.5 log d - 0.5 = 0 at d* = e, R(e) = e / 2
    d = np.linspace(0.1, 6, 30)
    fit = fit_overopt(d, d * (1 - 0.5 * np.log(d)), "rl")
    assert (fit.alpha, fit.beta) == (pytest.approx(1.0), pytest.approx(0.5))
    assert fit.peak_d == pytest.approx(math.e) and fit.peak_gain == pytest.approx(math.e / 2)


def test_a_proxy_that_keeps_rising_has_no_peak():
    d = np.sqrt([bon_kl(2 ** k) for k in range(7)])
    fit = fit_overopt(d, 0.8 * d + 0.1 * d * d, "bon")
    assert fit.beta < 0 and fit.peak_d is None and fit.peak_kl is None


def test_n_for_kl_inverts_bon_kl():
    for n in (1, 2, 16, 64, 1000):
        assert n_for_kl(bon_kl(n)) == pytest.approx(n, rel=1e-6)


def test_a_gold_that_only_falls_peaks_at_zero():
    d = np.sqrt([bon_kl(2 ** k) for k in range(7)])
    fit = fit_overopt(d, -0.3 * d - 0.5 * d * d, "bon")
    assert fit.alpha == pytest.approx(-0.3) and fit.peak_d == 0.0 and fit.peak_gain == 0.0


def test_describe_fits_states_the_fit_and_the_peak():
    from rlhfkit.eval.overopt import analyse_curve, describe_fits

    curve = [{"n": 2 ** k, "sqrt_kl": math.sqrt(bon_kl(2 ** k))} for k in range(7)]
    for r in curve:  # gold gain d (2 - d) in units of gold's std 0.5; proxy gain d (3 - 0.1 d)
        r["gold"], r["proxy"] = 0.5 * r["sqrt_kl"] * (2 - r["sqrt_kl"]), r["sqrt_kl"] * (3 - 0.1 * r["sqrt_kl"])
    a = analyse_curve(curve, proxy_std=1.0, gold_std=0.5, form="bon")
    assert a["gold_peak_fit"]["sqrt_kl"] == pytest.approx(1.0) and a["gold_peak_fit"]["n"] == pytest.approx(
        n_for_kl(1.0))
    lines = describe_fits(a, "bon")
    assert lines[0].startswith("proxy fit: gain = d (alpha - beta d) with alpha 3.0000, beta 0.1000")
    assert lines[1].startswith("gold fit: gain = d (alpha - beta d) with alpha 2.0000, beta 1.0000")
    # log N - (N-1)/N = 1 at N ~ 6.3 (ln 6.3 = 1.8405, 5.3/6.3 = 0.8413)
    assert lines[2].startswith("gold peaks at sqrt(KL) = 1.000 (KL 1.000 nats, N ~ 6.3), inside")
    assert lines[2].endswith("best measured: N = 8")  # sqrt(bon_kl(8)) = 1.097 is the closest to 1
