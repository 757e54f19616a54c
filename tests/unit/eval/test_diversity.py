"""Diversity metrics and the mode-collapse verdict on small texts, against values computed by hand."""

import math

import numpy as np
import pytest

from rlhfkit.eval.diversity import (CollapseThresholds, distinct, diversity_metrics, is_refusal,
                                    mean_pairwise_cosine, mode_collapse_verdict, opening, refusal_share,
                                    self_bleu, top_opening)


def test_distinct_n_on_words():
    texts = ["the cat sat", "The cat ran"]
    # words: the cat sat the cat ran -> 4 unique of 6; bigrams: the-cat twice, cat-sat, cat-ran -> 3 of 4
    assert distinct(texts, 1) == pytest.approx(4 / 6)
    assert distinct(texts, 2) == pytest.approx(3 / 4)
    assert distinct(["one"], 2) == 1.0  # no bigram at all


def test_self_bleu_by_hand():
    a, b = "the cat sat on the mat", "the cat sat on a mat"
    # each against the other: n-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (no brevity penalty)
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25  # 0.5373
    assert self_bleu([a, b]) == pytest.approx(expected, abs=1e-4)
    assert self_bleu([a, a, a]) == pytest.approx(1.0)
    assert self_bleu(["alpha beta gamma delta", "one two three four"]) == 0.0
    assert self_bleu([a]) == 0.0


def test_mean_pairwise_cosine_by_hand():
    # (1,0).(0,1) = 0; (1,0).(1,1)/sqrt2 = 1/sqrt2; (0,1).(1,1)/sqrt2 = 1/sqrt2 -> mean sqrt2/3
    assert mean_pairwise_cosine([[1, 0], [0, 1], [1, 1]]) == pytest.approx(math.sqrt(2) / 3)
    assert mean_pairwise_cosine([[2, 0], [5, 0]]) == pytest.approx(1.0)
    assert math.isnan(mean_pairwise_cosine([[1, 0]]))


def test_refusals_and_openings():
    assert is_refusal("I'm sorry, but I can\u2019t help with that.")
    assert is_refusal("As an AI language model, I cannot do this")
    assert not is_refusal("Sure! Here is how to make a strong password.")
    assert refusal_share(["I cannot do that.", "Sure.", "Yes", "I won't."]) == 0.5
    assert opening("Great question! Let me explain") == "great question let"
    assert opening("Toronto - The capital") == "toronto the capital"
    assert top_opening(["Great question! A", "great question, let B", "No."], n_words=2) == (
        "great question", pytest.approx(2 / 3))


def test_diversity_metrics_and_mode_collapse_verdict():
    groups = [["the answer is yes", "the answer is yes"], ["the answer is yes", "the answer is yes"]]
    emb = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    m = diversity_metrics(groups, emb)
    assert m["distinct_1"] == pytest.approx(4 / 16) and m["distinct_2"] == pytest.approx(3 / 12)
    assert m["self_bleu_within"] == pytest.approx(1.0) and m["self_bleu_across"] == pytest.approx(1.0)
    assert m["cosine_within"] == pytest.approx(1.0) and m["cosine_across"] == pytest.approx(0.0)
    assert (m["top_opening"], m["top_opening_share"], m["length_mean"]) == ("the answer is", 1.0, 4.0)
    reasons = mode_collapse_verdict(m, CollapseThresholds())
    assert len(reasons) == 2 and "self-BLEU" in reasons[0] and "open with" in reasons[1]
    varied = diversity_metrics([["a b c", "d e f"], ["g h i", "j k l"]])
    assert varied["distinct_2"] == 1.0 and varied["cosine_within"] is None
    assert mode_collapse_verdict(varied, CollapseThresholds()) == []
    # against a baseline twice as diverse
    half = dict(varied, distinct_2=0.45)
    assert "baseline" in mode_collapse_verdict(half, CollapseThresholds(), baseline={"distinct_2": 0.9})[0]


def test_response_embeddings_with_the_policy_model(tiny):
    from rlhfkit.eval.diversity import response_embeddings

    model, tok = tiny
    texts = ["hello there", "a much longer response that needs padding in its batch", "hello there"]
    batched = response_embeddings(model, tok, texts, batch_size=3)
    alone = response_embeddings(model, tok, texts[:1], batch_size=1)
    assert batched.shape == (3, model.config.hidden_size)
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)  # right padding leaves it unchanged
    assert mean_pairwise_cosine(batched[[0, 2]]) == pytest.approx(1.0)
