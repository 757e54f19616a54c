"""The comparison of one policy with the baseline, by hand: every policy sample against every
baseline sample of the same prompt."""

import pytest

from rlhfkit.eval.compare import compare_scores, pair_arrays


def test_pairs_of_each_prompt_by_hand():
    # prompt 0: policy [3, 1] vs baseline [2, 2]: 3>2 twice (W W), 1<2 twice (L L)
    # prompt 1: policy [5, 5] vs baseline [5, 4]: tie, win, tie, win
    v, dl = pair_arrays([[3, 1], [5, 5]], [[2, 2], [5, 4]], [[10, 4], [7, 7]], [[6, 8], [7, 3]], tie_eps=0.0)
    assert v.tolist() == [[1, 1, 0, 0], [0.5, 1, 0.5, 1]]
    assert dl.tolist() == [[4, 2, -2, -4], [0, 4, 0, 4]]  # policy length - baseline length


def test_compare_scores_by_hand():
    out = compare_scores([[3, 1], [5, 5]], [[2, 2], [5, 4]], [[10, 4], [7, 7]], [[6, 8], [7, 3]], n_boot=400)
    assert (out["wins"], out["ties"], out["losses"]) == (4, 2, 2)
    assert out["win_rate"] == pytest.approx((4 + 2 / 2) / 8)  # 0.625
    # two prompts with means 0.5 and 0.75: resamples give 0.5, 0.625 or 0.75
    assert out["win_rate_ci"] == [0.5, 0.75]
    assert out["mean_length_diff"] == pytest.approx((4 + 2 - 2 - 4 + 0 + 4 + 0 + 4) / 8)  # 1.0
    assert 0 < out["lc_win_rate"] < 1 and out["lc_win_rate_ci"][0] <= out["lc_win_rate_ci"][1]
    # a tie margin of 1.5 turns the 1-point wins and losses into ties
    wide = compare_scores([[3, 1], [5, 5]], [[2, 2], [5, 4]], [[1, 1], [1, 1]], [[1, 1], [1, 1]], tie_eps=1.5,
                          n_boot=10)
    assert (wide["wins"], wide["ties"], wide["losses"]) == (0, 8, 0) and wide["lc_win_rate"] == pytest.approx(0.5)
