"""Active selection ranks candidate pairs by ensemble disagreement / confidence (hand-computed)."""

import math

import numpy as np
import pytest

from rlhfkit.rounds.select import (Candidate, candidate_pairs, confidence, disagreement, rank_pairs,
                                   select_pairs)

# rewards[member][prompt][sample]
REWARDS = np.array([[[0, 1, 3], [2, 2, 0]],
                    [[0, 3, 1], [2, 0, 0]]], dtype=float)
PAIRS = candidate_pairs([["a", "b", "c"], ["x", "y", "z"]])


def test_candidates_skip_identical_texts():
    assert candidate_pairs([["a", "b", "a "], ["x"]]) == [Candidate(0, 0, 1), Candidate(0, 1, 2)]
    assert PAIRS == [Candidate(0, 0, 1), Candidate(0, 0, 2), Candidate(0, 1, 2),
                     Candidate(1, 0, 1), Candidate(1, 0, 2), Candidate(1, 1, 2)]


def test_disagreement_is_member_std_of_reward_difference():
    # differences: member 0 = -1, -3, -2, 0, 2, 2; member 1 = -3, -1, 2, 2, 2, 0
    # population std of two values = |d0 - d1| / 2
    assert disagreement(REWARDS, PAIRS).tolist() == [1.0, 1.0, 2.0, 1.0, 0.0, 1.0]


def test_confidence_is_distance_of_mean_preference_from_half():
    # mean differences -2, -2, 0, 1, 2, 1
    s1, s2 = 1 / (1 + math.exp(-1)) - 0.5, 1 / (1 + math.exp(-2)) - 0.5
    assert confidence(REWARDS, PAIRS) == pytest.approx([s2, s2, 0.0, s1, s2, s1])


def test_rank_by_disagreement_largest_first_ties_in_order():
    assert rank_pairs(PAIRS, "disagreement", REWARDS) == [2, 0, 1, 3, 5, 4]
    assert select_pairs(PAIRS, "disagreement", 3, REWARDS) == [Candidate(0, 1, 2), Candidate(0, 0, 1),
                                                                Candidate(0, 0, 2)]


def test_rank_least_confident_first():
    assert rank_pairs(PAIRS, "least_confident", REWARDS) == [2, 3, 5, 0, 1, 4]


def test_one_member_has_no_disagreement():
    assert disagreement(REWARDS[:1], PAIRS).tolist() == [0.0] * 6


def test_random_is_a_seeded_permutation_and_budget_caps():
    a = rank_pairs(PAIRS, "random", seed=3)
    assert sorted(a) == list(range(6)) and a == rank_pairs(PAIRS, "random", seed=3)
    assert len(select_pairs(PAIRS, "random", 10)) == 6
    assert select_pairs(PAIRS, "random", 0) == []


def test_model_based_strategy_needs_rewards():
    with pytest.raises(ValueError, match="previous round"):
        rank_pairs(PAIRS, "disagreement", None)
