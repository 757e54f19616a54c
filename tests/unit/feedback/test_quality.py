"""Agreement, aggregation and screening statistics against hand-computed values."""

import math

import pytest

from rlhfkit.feedback import quality

YES, NO = "y", "n"


# ------------------------------------------------------------------------------------- Cohen ----

def test_cohen_kappa_hand_computed():
    a = [YES, YES, NO, YES, NO, YES, NO, NO, YES, YES]
    b = [YES, NO, NO, YES, NO, YES, YES, NO, YES, YES]
    # p_o = 8/10; both raters 6 yes / 4 no -> p_e = (6*6 + 4*4) / 100 = 0.52
    assert quality.cohen_kappa(a, b) == pytest.approx((0.8 - 0.52) / (1 - 0.52))


def test_cohen_kappa_perfect_and_chance_and_undefined():
    assert quality.cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1]) == pytest.approx(1.0)
    # systematic disagreement: p_o = 0, p_e = 0.5 -> -1
    assert quality.cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert math.isnan(quality.cohen_kappa(["x", "x"], ["x", "x"]))  # no variation at all
    assert math.isnan(quality.cohen_kappa([], []))
    with pytest.raises(ValueError, match="rater a"):
        quality.cohen_kappa([1], [1, 2])


def test_cohen_kappa_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    a = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0]
    b = [0, 1, 2, 1, 1, 0, 2, 2, 1, 0, 2, 0]
    assert quality.cohen_kappa(a, b) == pytest.approx(metrics.cohen_kappa_score(a, b))


# ------------------------------------------------------------------------------------ Fleiss ----

def test_fleiss_kappa_hand_computed():
    # 3 items x 3 raters, 2 categories. P_i = 1, 1/3, 1 -> P_bar = 7/9;
    # p = (5/9, 4/9) -> P_e = 41/81; kappa = (7/9 - 41/81) / (40/81) = 22/40
    assert quality.fleiss_kappa([[3, 0], [2, 1], [0, 3]]) == pytest.approx(22 / 40)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971)-style worked example: 10 items, 14 raters, 5 categories; kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert quality.fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_skips_single_ratings_and_two_raters_edge_cases():
    # an item with one rating carries no agreement information: same result without it
    assert quality.fleiss_kappa([[3, 0], [2, 1], [0, 3], [1, 0]]) == pytest.approx(22 / 40)
    assert math.isnan(quality.fleiss_kappa([[1, 0]]))
    assert quality.fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)


def test_units_to_counts_builds_the_fleiss_table():
    table = quality.units_to_counts({"u1": ["a", "a", "b"], "u2": ["b", "b", "b"]})
    assert table == [[2, 1], [0, 3]]


# ------------------------------------------------------------------------------ Krippendorff ----

N = None
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example with missing values:
# 4 observers x 12 units. Published: nominal 0.743, ordinal 0.815, interval 0.849.
RELIABILITY = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
UNITS = [list(u) for u in zip(*RELIABILITY)]


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815),
                                             ("interval", 0.849)])
def test_krippendorff_alpha_published_example(level, published):
    assert quality.krippendorff_alpha(UNITS, level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_alpha_hand_computed_nominal():
    # units (1,1), (1,2), (2,2): o_11 = o_22 = 2, o_12 = o_21 = 1, n_1 = n_2 = 3, n = 6
    # alpha = 1 - (n - 1) * (o_12 + o_21) / (n_1 n_2 + n_2 n_1) = 1 - 5 * 2 / 18
    assert quality.krippendorff_alpha([[1, 1], [1, 2], [2, 2]]) == pytest.approx(1 - 10 / 18)


def test_krippendorff_alpha_edge_cases():
    assert quality.krippendorff_alpha([[1, 1], [2, 2], [3, 3, None]]) == pytest.approx(1.0)
    assert math.isnan(quality.krippendorff_alpha([[1, 1], [1, 1]]))  # no variation
    assert math.isnan(quality.krippendorff_alpha([[1], [2, None]]))  # nothing pairable
    with pytest.raises(ValueError, match="level"):
        quality.krippendorff_alpha(UNITS, "cardinal")


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_alpha_matches_reference_package(level):
    kd = pytest.importorskip("krippendorff", reason="the krippendorff package is not installed")
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in row] for row in RELIABILITY], float)
    expected = kd.alpha(reliability_data=data, level_of_measurement=level)
    assert quality.krippendorff_alpha(UNITS, level) == pytest.approx(expected)


# ------------------------------------------------------------------------------- aggregation ----

def test_majority_vote_plain_weighted_and_split():
    assert quality.majority_vote(["a", "b", "a"]) == ("a", {"a": 2.0, "b": 1.0})
    assert quality.majority_vote(["a", "b"])[0] is None  # shared top -> no majority
    assert quality.majority_vote(["a", "b", "b"], weights=[3.0, 1.0, 1.0])[0] == "a"
    assert quality.majority_vote([]) == (None, {})


def test_borda_count():
    # three rankings of 3 candidates: scores c0 = 2+0+1 = 3, c1 = 1+2+2 = 5, c2 = 0+1+0 = 1
    assert quality.borda([[0, 1, 2], [1, 2, 0], [1, 0, 2]], 3) == [1, 0, 2]
    # weights flip it: the first ranking counts 5x -> c0 = 10+0+1 = 11, c1 = 5+2+2 = 9, c2 = 1
    assert quality.borda([[0, 1, 2], [1, 2, 0], [1, 0, 2]], 3, [5, 1, 1]) == [0, 1, 2]


def test_dawid_skene_beats_majority_with_spammers():
    # two careful annotators always right; three spammers always answer "0".
    truth = {i: ("1" if i % 2 else "0") for i in range(12)}
    obs = []
    for i, t in truth.items():
        obs += [(i, "good1", t), (i, "good2", t)] + [(i, f"spam{j}", "0") for j in range(3)]
    majority = {i: quality.majority_vote([c for (j, _a, c) in obs if j == i])[0] for i in truth}
    assert sum(majority[i] != truth[i] for i in truth) == 6  # majority is wrong on every "1"
    ds = quality.dawid_skene(obs)
    assert ds.converged
    assert ds.labels == truth
    assert ds.reliability["good1"] > 0.99 and ds.reliability["spam0"] == pytest.approx(0.5, abs=0.01)
    # spammers say "0" whatever the truth: their confusion rows are identical
    assert ds.confusion["spam1"]["1"]["0"] > 0.99 and ds.confusion["spam1"]["0"]["0"] > 0.99
    for i in truth:
        assert ds.posteriors[i][truth[i]] > 0.99
        assert sum(ds.posteriors[i].values()) == pytest.approx(1.0)


def test_dawid_skene_unanimous_and_empty():
    ds = quality.dawid_skene([(1, "a", "x"), (1, "b", "x"), (2, "a", "y"), (2, "b", "y")])
    assert ds.labels == {1: "x", 2: "y"}
    empty = quality.dawid_skene([])
    assert empty.posteriors == {} and empty.converged


# --------------------------------------------------------------------------------- screening ----

def test_gold_screening_flags_below_threshold_after_min_answers():
    out = quality.gold_screening({"ann": [True, True, False, True], "bad": [False, True, False],
                                  "new": [False], "none": []}, threshold=0.7, min_answered=3)
    assert out["ann"].accuracy == pytest.approx(0.75) and not out["ann"].flagged
    assert out["bad"].accuracy == pytest.approx(1 / 3) and out["bad"].flagged
    assert not out["new"].flagged  # one wrong answer is not enough evidence yet
    assert math.isnan(out["none"].accuracy) and not out["none"].flagged


def test_position_bias_rate_and_test():
    out = quality.position_bias(["left"] * 30 + ["right"] * 10 + ["tie"] * 10)
    assert out["left_rate"] == pytest.approx(0.75)
    assert out["tie_rate"] == pytest.approx(0.2)
    # z = (30 - 20) / sqrt(40 / 4) = 3.162 -> two-sided p = erfc(z / sqrt 2)
    assert out["z"] == pytest.approx(10 / math.sqrt(10))
    assert out["p_value"] == pytest.approx(math.erfc(out["z"] / math.sqrt(2)))
    balanced = quality.position_bias(["left", "right"])
    assert balanced["left_rate"] == 0.5 and balanced["p_value"] == pytest.approx(1.0)
    assert math.isnan(quality.position_bias(["tie"])["left_rate"])
