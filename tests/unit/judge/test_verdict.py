"""Hand-computed values for the judge's arithmetic: soft labels, order-swap averaging, consistency,
summaries and verdict parsing."""

import math

import pytest

from rlhfkit.judge.verdict import (OrderResult, Verdict, agreement_with_label, combine_orders, keep,
                                   parse_verdict, soft_label, summarize)


def test_soft_label_normalises_over_the_two_choice_tokens():
    # P(A) = 0.6, P(B) = 0.2 over the vocabulary -> 0.6 / (0.6 + 0.2) = 0.75
    assert soft_label(math.log(0.6), math.log(0.2)) == pytest.approx(0.75)
    assert soft_label(-3.0, -3.0) == 0.5
    assert soft_label(-1000.0, 0.0) == pytest.approx(0.0, abs=1e-300)  # no overflow
    assert soft_label(0.0, -1000.0) == 1.0


def test_order_swap_average_and_consistency():
    # A first: P(first) = 0.8 -> P(A) = 0.8; B first: P(first) = 0.4 -> P(A) = 1 - 0.4 = 0.6
    v = combine_orders(OrderResult(0.8), OrderResult(0.4))
    assert (v.p_ab, v.p_ba) == (0.8, pytest.approx(0.6))
    assert v.prob == pytest.approx(0.7) and v.consistent is True and v.status == "ok"
    assert v.preferred == 0 and v.confidence == pytest.approx(0.7)
    # a judge that always picks the first-shown response: P(A) = 0.8 and 1 - 0.7 = 0.3
    v = combine_orders(OrderResult(0.8), OrderResult(0.7))
    assert v.prob == pytest.approx(0.55) and v.consistent is False
    # one order with no preference is inconsistent with a preference in the other
    assert combine_orders(OrderResult(0.5), OrderResult(0.2)).consistent is False
    assert combine_orders(OrderResult(0.5), OrderResult(0.5)).preferred == "tie"


def test_a_failed_order_fails_the_verdict_with_the_worse_status():
    bad = OrderResult(None, "unparseable", "none", "hmm")
    refused = OrderResult(None, "refused", "none", "I cannot")
    v = combine_orders(OrderResult(0.9), bad)
    assert v.status == "unparseable" and v.prob is None and v.consistent is None and v.preferred is None
    assert combine_orders(refused, bad).status == "refused"
    assert combine_orders(bad, refused).texts == ("hmm", "I cannot")


def _v(prob, consistent=True, status="ok", label=None):
    return Verdict(prob, prob, prob, status, consistent if status == "ok" else None, label=label)


def test_summary_counts_and_accuracy():
    verdicts = [_v(0.9, True, label=1.0),  # right side
                _v(0.3, True, label=1.0),  # wrong side
                _v(0.5, False, label=1.0),  # no preference: counts 0.5
                _v(0.6, False, label=0.5),  # tie label: not in accuracy
                _v(0.7, True),  # no label
                _v(None, status="unparseable", label=1.0),
                _v(None, status="refused")]
    s = summarize(verdicts, min_confidence=0.7)
    assert (s.pairs, s.ok, s.unparseable, s.refused) == (7, 5, 1, 1)
    assert s.inconsistent == 2 and s.inconsistent_share == pytest.approx(2 / 5)
    assert s.labelled == 3 and s.accuracy == pytest.approx((1 + 0 + 0.5) / 3)
    # confidences 0.9, 0.7, 0.5, 0.6, 0.7 -> kept at >= 0.7: 3
    assert s.kept == 3 and s.mean_confidence == pytest.approx((0.9 + 0.7 + 0.5 + 0.6 + 0.7) / 5)
    assert keep(_v(0.3), 0.7) and not keep(_v(0.35), 0.7) and not keep(_v(None, status="refused"))
    assert agreement_with_label(0.2, 0.0) == 1.0 and agreement_with_label(0.2, 0.5) is None
    assert any("accuracy" in line for line in s.lines())


def test_summary_of_nothing():
    s = summarize([])
    assert s.pairs == 0 and s.inconsistent_share is None and s.accuracy is None


@pytest.mark.parametrize("text, expected", [
    ("Verdict: A", ("A", "ok")),
    ("verdict:B", ("B", "ok")),
    ("The first one is clearer because it answers the question.\nVerdict: B", ("B", "ok")),
    ("The better response is Response A.", ("A", "ok")),
    ("Answer: (B)", ("B", "ok")),
    ("**Verdict:** A", ("A", "ok")),
    ("A", ("A", "ok")),
    (" (B).", ("B", "ok")),
    ("Response A", ("A", "ok")),
    ("Verdict: tie", ("tie", "ok")),
    ('The answer is "A" and not B', ("A", "ok")),  # SmolLM2-135M's favourite form on llama.cpp
    ('The answer "B" is better', ("B", "ok")),
    ('The answer is "Verdict: A', ("A", "ok")),
    ("The answer is a good question", (None, "unparseable")),  # an article, not a verdict
    ("The answer that is more helpful, honest", (None, "unparseable")),
    ("Verdict: A ... on reflection, Verdict: B", (None, "unparseable")),
    ("Both responses are fine.", (None, "unparseable")),
    ("A or B, hard to say", (None, "unparseable")),
    ("", (None, "unparseable")),
    ("I'm sorry, but I can't help compare these.", (None, "refused")),
    ("As an AI, I must decline to judge this conversation.", (None, "refused")),
    ("I cannot answer that.", (None, "refused")),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def test_a_verdict_after_an_apology_is_still_a_verdict():
    assert parse_verdict("I'm sorry the question is vague, but Verdict: A") == ("A", "ok")
