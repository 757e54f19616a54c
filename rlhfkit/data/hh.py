"""Anthropic HH-RLHF transcripts: ``{"chosen": dialogue, "rejected": dialogue}`` -> a PreferencePair.

A dialogue is a string of alternating ``"\\n\\nHuman: ..."`` and ``"\\n\\nAssistant: ..."`` turns. The
two dialogues of a pair share every turn but the last assistant one: the shared part is the prompt, the
two last assistant turns are the chosen and rejected responses (Bai et al., 2022, section 2).

Only the exact markers ``"\\n\\nHuman: "`` / ``"\\n\\nAssistant: "`` (a marker may also end the text)
start a turn, so "Human:" inside a sentence or after a single newline stays part of the text. Leading
whitespace before the first marker is ignored; each turn's text is stripped of surrounding whitespace.

Pairs that cannot become a clean training pair are not errors but drop reasons, counted by the readers:
:data:`DIFFER_EARLY` (the dialogues differ before the last assistant turn), :data:`IDENTICAL` (the
two responses are the same text), :data:`EMPTY_RESPONSE` (a last assistant turn with no text, which
the harmless train split has twice). Nearly identical responses are kept.
"""

from __future__ import annotations

import re

from rlhfkit.data.records import DataError, Message, PreferencePair

DIFFER_EARLY = "differ before the last turn"
IDENTICAL = "identical responses"
EMPTY_RESPONSE = "empty response"

_ROLE = {"Human": "user", "Assistant": "assistant"}
_MARKER = re.compile(r"\n\n(Human|Assistant):(?: |$)")


def looks_like_hh(text: object) -> bool:
    """True when ``text`` is a string holding at least one HH turn marker."""
    if not isinstance(text, str):
        return False
    normal = "\n\n" + text.lstrip()
    return _MARKER.search(normal) is not None


def parse_hh_dialogue(text: str, where: str = "", fieldname: str = "dialogue") -> list[Message]:
    """Split an HH dialogue into Messages (Human -> ``user``, Assistant -> ``assistant``).

    Raises DataError when ``text`` is not a string, has no turn marker, or has text before the first
    marker.
    """
    if not isinstance(text, str):
        raise DataError(where, fieldname, "expected a string")
    parts = _MARKER.split("\n\n" + text.lstrip())
    # re.split with one group: [before, role1, text1, role2, text2, ...]
    before, rest = parts[0], parts[1:]
    if not rest:
        raise DataError(where, fieldname, "no '\\n\\nHuman: ' or '\\n\\nAssistant: ' turn found")
    if before.strip():
        raise DataError(where, fieldname, f"text before the first turn marker: {before.strip()[:40]!r}")
    return [Message(_ROLE[role], content.strip()) for role, content in zip(rest[0::2], rest[1::2])]


def hh_prompt(chosen_text: str, rejected_text: str | None = None, where: str = "") -> tuple | str:
    """The prompt of an HH record: the turns before the last assistant turn of ``chosen_text`` (all
    turns when it ends with a human turn). With ``rejected_text`` too, the two dialogues must agree
    before their last turns, else the drop reason :data:`DIFFER_EARLY` is returned.
    """
    if rejected_text is not None:
        split = _split_pair(chosen_text, rejected_text, where)
        return split if isinstance(split, str) else split[0]
    turns = parse_hh_dialogue(chosen_text, where, "chosen")
    if turns[-1].role == "assistant":
        turns = turns[:-1]
    _check_prompt_turns(turns, where, "chosen")
    return tuple(turns)


def hh_pair(chosen_text: str, rejected_text: str, where: str = "") -> PreferencePair | str:
    """Two HH dialogues -> a PreferencePair, or a drop reason (one of the module constants).

    Raises DataError for malformed dialogues (no markers, not ending with an assistant turn, no human
    turn before it).
    """
    split = _split_pair(chosen_text, rejected_text, where)
    if isinstance(split, str):
        return split
    prompt, good, bad = split
    if not good or not bad:
        return EMPTY_RESPONSE
    if good == bad:
        return IDENTICAL
    return PreferencePair(prompt=prompt, chosen=good, rejected=bad, source=where)


def _split_pair(chosen_text: str, rejected_text: str, where: str) -> tuple[tuple, str, str] | str:
    """(shared prompt, chosen response, rejected response), or DIFFER_EARLY."""
    chosen = parse_hh_dialogue(chosen_text, where, "chosen")
    rejected = parse_hh_dialogue(rejected_text, where, "rejected")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1].role != "assistant":
            raise DataError(where, name, "the dialogue does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        return DIFFER_EARLY
    _check_prompt_turns(chosen[:-1], where, "chosen")
    return tuple(chosen[:-1]), chosen[-1].content, rejected[-1].content


def _check_prompt_turns(turns: list, where: str, fieldname: str) -> None:
    if not turns:
        raise DataError(where, fieldname, "no Human turn before the last Assistant turn")
    if turns[-1].role != "user":
        raise DataError(where, fieldname, "the turn before the last Assistant turn is not a Human turn")
    if not turns[-1].content:
        raise DataError(where, fieldname, "the last Human turn is empty")
