"""HH transcript parsing: turns, markers inside text, shared prompt, drop reasons."""

import pytest

from rlhfkit.data import hh
from rlhfkit.data.records import DataError, Message, PreferencePair

PREFIX = (
    "\n\nHuman: My note says 'Human: remember milk'.\nHuman: and a new line\n\n"
    "Assistant: Got it.  Anything else?\n\nHuman: What should I cook tonight?"
)


def test_parse_dialogue_splits_only_on_full_markers():
    turns = hh.parse_hh_dialogue(PREFIX + "\n\nAssistant: Try a vegetable stir-fry. ")
    assert turns == [
        Message("user", "My note says 'Human: remember milk'.\nHuman: and a new line"),
        Message("assistant", "Got it.  Anything else?"),
        Message("user", "What should I cook tonight?"),
        Message("assistant", "Try a vegetable stir-fry."),
    ]


def test_parse_dialogue_tolerates_leading_whitespace_and_missing_blank_lines():
    assert hh.parse_hh_dialogue("  Human: hi\n\nAssistant: hello") == [
        Message("user", "hi"), Message("assistant", "hello")]
    assert hh.parse_hh_dialogue(" \n\nHuman: hi") == [Message("user", "hi")]


@pytest.mark.parametrize("text, problem", [
    ("no markers at all", "no '\\n\\nHuman: '"),
    ("Preamble\n\nHuman: hi\n\nAssistant: yo", "text before the first turn marker"),
])
def test_parse_dialogue_rejects_malformed_text(text, problem):
    with pytest.raises(DataError) as err:
        hh.parse_hh_dialogue(text, "f.jsonl:3", "chosen")
    assert str(err.value).startswith("f.jsonl:3: chosen: ")
    assert problem in str(err.value)


def test_hh_pair_shared_prefix_becomes_prompt():
    pair = hh.hh_pair(PREFIX + "\n\nAssistant: Try a stir-fry.", PREFIX + "\n\nAssistant: Cook it yourself.",
                      "t.jsonl:1")
    assert isinstance(pair, PreferencePair)
    assert [m.role for m in pair.prompt] == ["user", "assistant", "user"]
    assert pair.prompt[-1].content == "What should I cook tonight?"
    assert (pair.chosen, pair.rejected, pair.label, pair.source) == (
        "Try a stir-fry.", "Cook it yourself.", 1.0, "t.jsonl:1")


def test_hh_pair_drop_reasons():
    a = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: "
    b = "\n\nHuman: hi\n\nAssistant: hey there\n\nHuman: bye\n\nAssistant: "
    assert hh.hh_pair(a + "see you", b + "farewell") == hh.DIFFER_EARLY
    assert hh.hh_pair(a + "see you", a + " see you ") == hh.IDENTICAL
    assert hh.hh_pair(a, a + "farewell") == hh.EMPTY_RESPONSE
    near = hh.hh_pair(a + "See you!", a + "See you.")
    assert isinstance(near, PreferencePair) and (near.chosen, near.rejected) == ("See you!", "See you.")


def test_hh_pair_must_end_with_assistant_after_human():
    with pytest.raises(DataError, match=r"^x:1: rejected: the dialogue does not end with an Assistant"):
        hh.hh_pair("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a", "x:1")
    with pytest.raises(DataError, match="no Human turn before"):
        hh.hh_pair("\n\nAssistant: b", "\n\nAssistant: c", "x:1")


def test_hh_prompt_single_and_pair():
    a = "\n\nHuman: hi\n\nAssistant: hello"
    assert hh.hh_prompt(a) == (Message("user", "hi"),)
    assert hh.hh_prompt("\n\nHuman: only a question") == (Message("user", "only a question"),)
    assert hh.hh_prompt(a, "\n\nHuman: hi\n\nAssistant: yo") == (Message("user", "hi"),)
    assert hh.hh_prompt(a + "\n\nAssistant: more", a + "\n\nHuman: x\n\nAssistant: y") == hh.DIFFER_EARLY
