"""Binary and step-level feedback: the step splitter, the pair -> binary converter and the synthetic
step-labelled set (hand-checked chains, determinism, the shipped demo:steps file)."""

import re

import pytest

from rlhfkit.data.readers import read_records, to_json
from rlhfkit.data.records import (BinaryFeedback, Message, PreferencePair, StepFeedback, pair_to_binary,
                                  split_steps)
from rlhfkit.data.sources import load
from rlhfkit.data.synthetic import DEMO_ARGS, arithmetic_chains, chain_prompt, make_chain
from rlhfkit.resources import demo_path

U = (Message("user", "q"),)


@pytest.mark.parametrize("text, steps", [
    ("12 + 7 = 19\n\n19 * 3 = 57", ["12 + 7 = 19", "19 * 3 = 57"]),
    ("a\n \n\t\n\nb\r\n\r\nc", ["a", "b", "c"]),  # several blank lines (with spaces, CRLF) are one break
    ("first line\nsame step", ["first line\nsame step"]),  # a single newline does not split
    ("1. add\n2) multiply\n  continued\n(3) check\nStep 4: answer", ["1. add", "2) multiply\n  continued",
                                                                    "(3) check", "Step 4: answer"]),
    ("Plan:\n1. x\n2. y\n\nDone.", ["Plan:", "1. x", "2. y", "Done."]),  # text before the numbers is a step
    ("3.5 apples\n10% more", ["3.5 apples\n10% more"]),  # a decimal or a number without a marker
    ("1.\n2.", ["1.", "2."]),  # a bare marker at the end of a line
    ("  \n\n  ", []),
    ("", []),
])
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_pair_to_binary_splits_good_and_bad_and_skips_ties():
    good, bad = pair_to_binary(PreferencePair(U, "yes", "no", source="f:3", meta={"id": 1}))
    assert good == BinaryFeedback(U, "yes", True, source="f:3", meta={"id": 1})
    assert bad == BinaryFeedback(U, "no", False, source="f:3", meta={"id": 1})
    assert [b.response for b in pair_to_binary(PreferencePair(U, "yes", "no", label=0.2))] == ["no", "yes"]
    assert pair_to_binary(PreferencePair(U, "yes", "no", label=0.5)) == []


def test_hh_pairs_become_binary_records(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_text('{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello!", '
                    '"rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Go away."}\n')
    (pair,) = read_records(path, "pairs").records
    out = pair_to_binary(pair)
    assert [(b.prompt, b.response, b.label) for b in out] == [
        ((Message("user", "Hi"),), "Hello!", True), ((Message("user", "Hi"),), "Go away.", False)]
    assert to_json(out[1]) == {"prompt": "Hi", "response": "Go away.", "label": False}


def test_make_chain_marks_the_wrong_step_and_everything_after_it():
    ok = make_chain(12, [("+", 7), ("*", 3)])
    assert ok.prompt == (Message("user", "Start with 12, add 7, then multiply by 3. What is the result? "
                                         "Show each step."),)
    assert ok.steps == ("12 + 7 = 19", "19 * 3 = 57", "The answer is 57.")
    assert ok.step_labels == (1, 1, 1) and ok.meta == {"answer": 57, "given": 57, "correct": True,
                                                       "first_error": None}
    bad = make_chain(12, [("+", 7), ("*", 3), ("-", 5)], error_at=1, wrong=56, intro=True)
    assert bad.steps[1:] == ("12 + 7 = 19", "19 * 3 = 56", "56 - 5 = 51", "The answer is 51.")
    assert bad.step_labels == (0, 1, -1, -1, -1)  # "56 - 5 = 51" is right arithmetic on a wrong number
    assert bad.meta == {"answer": 52, "given": 51, "correct": False, "first_error": 2}
    with pytest.raises(ValueError, match="right result"):
        make_chain(12, [("+", 7)], error_at=0, wrong=19)
    assert chain_prompt(4, [("-", 1)]) == "Start with 4, subtract 1. What is the result? Show each step."


EQ = re.compile(r"^(-?\d+) ([-+*]) (\d+) = (-?\d+)$")


def test_generated_labels_follow_the_arithmetic():
    records = arithmetic_chains(40, seed=3, per_problem=2)
    assert len(records) == 80 and all(isinstance(r, StepFeedback) for r in records)
    assert 0 < sum(r.meta["correct"] for r in records) < 80
    for r in records:
        assert split_steps("\n\n".join(r.steps)) == list(r.steps)  # the studio splits them back the same
        broken = False
        for text, mark in zip(r.steps, r.step_labels):
            m = EQ.match(text)
            if m:
                a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
                broken = broken or c != {"+": a + b, "-": a - b, "*": a * b}[op]
                assert mark == (-1 if broken else 1), (r.steps, r.step_labels)
            elif text.startswith("The answer is"):
                assert mark == (-1 if broken else 1) and broken == (not r.meta["correct"])
            else:
                assert mark == 0
        assert r.meta["first_error"] == (r.step_labels.index(-1) if -1 in r.step_labels else None)


def test_generator_is_deterministic_per_seed():
    assert arithmetic_chains(10, seed=7) == arithmetic_chains(10, seed=7)
    assert arithmetic_chains(10, seed=7) != arithmetic_chains(10, seed=8)
    assert all(r.meta["correct"] for r in arithmetic_chains(5, error_rate=0.0))
    assert not any(r.meta["correct"] for r in arithmetic_chains(5, error_rate=1.0))
    with pytest.raises(ValueError, match="error_rate"):
        arithmetic_chains(5, error_rate=2.0)


def test_demo_steps_file_is_the_generator_output():
    shipped = load("demo:steps", "steps").records
    expected = arithmetic_chains(**DEMO_ARGS)
    assert [to_json(r) for r in shipped] == [to_json(r) for r in expected]
    assert shipped[0].source == "steps.jsonl:1" and demo_path("steps.jsonl").is_file()
