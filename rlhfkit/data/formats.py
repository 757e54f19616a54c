"""One JSON object -> one typed record, per feedback kind (SPEC section 1), with validation.

Each ``parse_<kind>(obj, where)`` returns a record, or a drop-reason string for records that are
well-formed but unusable for training (identical responses, ...), and raises
:class:`~rlhfkit.data.records.DataError` ("file:line: field: problem") for anything malformed.

Conventions shared by every kind:

* ``prompt`` is a string (one user turn) or a list of ``{"role", "content"}`` messages; a system
  message may only come first, and the prompt must end with a non-empty user turn.
* Response texts must be non-empty strings (whitespace only counts as empty). Nothing is truncated.
* A JSON ``null`` means the key is absent (Parquet and dataset folders fill missing columns with null).
* ``meta`` (an object) passes through. Unknown top-level keys are kept too, moved into ``meta`` under
  their own name, so no information is lost on the way to an export; a key that is also in ``meta``
  is an error (ambiguous).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from rlhfkit.data import hh
from rlhfkit.data.records import (
    MAX_STEPS,
    STEP_VALUES,
    BinaryFeedback,
    DataError,
    LanguageFeedback,
    PreferencePair,
    Ranking,
    ScoreFeedback,
    SFTExample,
    StepFeedback,
    as_conversation,
)

KINDS = ("sft", "pairs", "rankings", "scores", "language", "binary", "steps", "prompts")

_KNOWN = {
    "sft": {"prompt", "response", "messages"},
    "pairs": {"prompt", "chosen", "rejected", "margin", "tie", "label"},
    "rankings": {"prompt", "responses", "ranking"},
    "scores": {"prompt", "response", "score"},
    "language": {"prompt", "response", "feedback"},
    "binary": {"prompt", "response", "label"},
    "steps": {"prompt", "steps", "step_labels"},
}


# --------------------------------------------------------------------------------------------------
# field helpers


def _get(obj: dict, key: str, where: str) -> Any:
    if obj.get(key) is None:
        raise DataError(where, key, "missing")
    return obj[key]


def text_field(value: Any, where: str, fieldname: str) -> str:
    """A non-empty string, returned unchanged."""
    if not isinstance(value, str):
        raise DataError(where, fieldname, f"expected a string, got {_type(value)}")
    if not value.strip():
        raise DataError(where, fieldname, "empty string")
    return value


# Scores, margins and labels are trained in float32, squared (MSE) or put inside a sigmoid: beyond
# this magnitude a value is a unit or export mistake (1e300 becomes inf, then a NaN loss), not feedback.
MAX_ABS_NUMBER = 1e6


def number_field(value: Any, where: str, fieldname: str) -> float:
    """A finite int or float (not a bool) with ``|value| <= MAX_ABS_NUMBER``, as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(where, fieldname, f"expected a number, got {_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(where, fieldname, f"expected a finite number, got {value}")
    if abs(value) > MAX_ABS_NUMBER:  # exact for ints of any size too
        shown = f"{value:g}" if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
        raise DataError(where, fieldname, f"{shown} is out of range (|value| <= {MAX_ABS_NUMBER:g}; "
                        "rescale the values)")
    return float(value)


def check_prompt(conv: tuple, where: str, fieldname: str = "prompt") -> tuple:
    """System only first, ends with a non-empty user turn. Returns ``conv``."""
    for i, msg in enumerate(conv):
        if msg.role == "system" and i != 0:
            raise DataError(where, f"{fieldname}[{i}].role", "a system message may only come first")
    if conv[-1].role != "user":
        raise DataError(where, fieldname, f"must end with a user turn, ends with {conv[-1].role!r}")
    if not conv[-1].content.strip():
        raise DataError(where, fieldname, "the last user turn is empty")
    return conv


def prompt_field(value: Any, where: str, fieldname: str = "prompt") -> tuple:
    return check_prompt(as_conversation(value, where, fieldname), where, fieldname)


def _meta(obj: dict, kind: str, where: str) -> dict:
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise DataError(where, "meta", f"expected an object, got {_type(meta)}")
    extra = {k: v for k, v in obj.items() if k not in _KNOWN[kind] and k != "meta" and v is not None}
    for key in extra:
        if key in meta:
            raise DataError(where, key, "also present in meta (ambiguous)")
    return {**meta, **extra}


def _type(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", str: "a string", list: "a list", dict: "an object",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------------
# one parser per kind


def parse_sft(obj: dict, where: str) -> SFTExample:
    """``{"prompt", "response"}`` or chat ``{"messages": [..., assistant]}``."""
    if obj.get("messages") is not None:
        if obj.get("prompt") is not None or obj.get("response") is not None:
            raise DataError(where, "messages", "give either messages or prompt/response, not both")
        conv = as_conversation(obj["messages"], where, "messages")
        if len(conv) < 2 or conv[-1].role != "assistant":
            raise DataError(where, "messages", "must end with an assistant message after a user turn")
        prompt = check_prompt(conv[:-1], where, "messages")
        response = text_field(conv[-1].content, where, f"messages[{len(conv) - 1}].content")
    else:
        prompt = prompt_field(_get(obj, "prompt", where), where)
        response = text_field(_get(obj, "response", where), where, "response")
    return SFTExample(prompt=prompt, response=response, source=where, meta=_meta(obj, "sft", where))


def parse_pair(obj: dict, where: str) -> PreferencePair | str:
    """Explicit pairs, message-list pairs, or HH transcripts (no prompt, two dialogue strings)."""
    chosen, rejected = _get(obj, "chosen", where), _get(obj, "rejected", where)
    margin = None if obj.get("margin") is None else number_field(obj["margin"], where, "margin")
    label, meta = _label(obj, where), _meta(obj, "pairs", where)
    if obj.get("prompt") is None and isinstance(chosen, str) and isinstance(rejected, str):
        if not hh.looks_like_hh(chosen):
            raise DataError(where, "prompt", "missing (and chosen is not an HH dialogue)")
        pair = hh.hh_pair(chosen, rejected, where)
    elif obj.get("prompt") is None:
        pair = _pair_from_dialogues(chosen, rejected, where)
    else:
        prompt = prompt_field(obj["prompt"], where)
        good = _response(chosen, prompt, where, "chosen")
        bad = _response(rejected, prompt, where, "rejected")
        pair = hh.IDENTICAL if good.strip() == bad.strip() else PreferencePair(prompt, good, bad, source=where)
    if isinstance(pair, str):
        return pair
    pair.margin, pair.label, pair.meta = margin, label, meta
    return pair


def _response(value: Any, prompt: tuple, where: str, fieldname: str) -> str:
    """A response given as text, as one assistant message, or as the full dialogue (prompt + answer)."""
    if isinstance(value, str):
        return text_field(value, where, fieldname)
    if not isinstance(value, (list, tuple)):
        raise DataError(where, fieldname, f"expected a string or a list of messages, got {_type(value)}")
    conv = as_conversation(value, where, fieldname)
    if conv[:len(prompt)] == prompt:
        conv = conv[len(prompt):]
    if len(conv) != 1 or conv[0].role != "assistant":
        raise DataError(where, fieldname, "expected one assistant message (after the prompt)")
    return text_field(conv[0].content, where, f"{fieldname}.content")


def _pair_from_dialogues(chosen: Any, rejected: Any, where: str) -> PreferencePair | str:
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise DataError(where, "prompt", "missing (chosen and rejected must then both be dialogues)")
    good = as_conversation(chosen, where, "chosen")
    bad = as_conversation(rejected, where, "rejected")
    for name, conv in (("chosen", good), ("rejected", bad)):
        if len(conv) < 2 or conv[-1].role != "assistant":
            raise DataError(where, name, "the dialogue must end with an assistant message after a user turn")
    if good[:-1] != bad[:-1]:
        return hh.DIFFER_EARLY
    prompt = check_prompt(good[:-1], where, "chosen")
    g = text_field(good[-1].content, where, f"chosen[{len(good) - 1}].content")
    b = text_field(bad[-1].content, where, f"rejected[{len(bad) - 1}].content")
    if g.strip() == b.strip():
        return hh.IDENTICAL
    return PreferencePair(prompt, g, b, source=where)


def _label(obj: dict, where: str) -> float:
    """``label`` (P(chosen better) in [0, 1]) and/or ``tie`` (bool; a tie is label 0.5)."""
    tie = obj.get("tie")
    if tie is not None and not isinstance(tie, bool):
        raise DataError(where, "tie", f"expected true or false, got {_type(tie)}")
    if obj.get("label") is None:
        return 0.5 if tie else 1.0
    label = number_field(obj["label"], where, "label")
    if not 0.0 <= label <= 1.0:
        raise DataError(where, "label", f"expected a probability in [0, 1], got {label}")
    if tie and label != 0.5:
        raise DataError(where, "tie", f"true, but label is {label} (a tie is 0.5)")
    return label


def parse_ranking(obj: dict, where: str) -> Ranking | str:
    """``{"prompt", "responses": [...], "ranking": [indices best first]}`` (full or partial order)."""
    prompt = prompt_field(_get(obj, "prompt", where), where)
    responses = _get(obj, "responses", where)
    if not isinstance(responses, (list, tuple)) or len(responses) < 2:
        raise DataError(where, "responses", "expected a list of at least 2 strings")
    responses = tuple(text_field(r, where, f"responses[{i}]") for i, r in enumerate(responses))
    ranking = _get(obj, "ranking", where)
    if not isinstance(ranking, (list, tuple)) or len(ranking) < 2:
        raise DataError(where, "ranking", "expected a list of at least 2 response indices, best first")
    for i, idx in enumerate(ranking):
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise DataError(where, f"ranking[{i}]", f"expected an integer index, got {_type(idx)}")
        if not 0 <= idx < len(responses):
            raise DataError(where, f"ranking[{i}]", f"index {idx} out of range 0..{len(responses) - 1}")
    if len(set(ranking)) != len(ranking):
        dup = sorted({i for i in ranking if list(ranking).count(i) > 1})
        raise DataError(where, "ranking", f"index {dup[0]} appears more than once")
    ranked = [responses[i].strip() for i in ranking]
    if len(set(ranked)) != len(ranked):
        return "repeated response in ranking"
    return Ranking(prompt, responses, tuple(ranking), source=where, meta=_meta(obj, "rankings", where))


def parse_score(obj: dict, where: str) -> ScoreFeedback:
    prompt = prompt_field(_get(obj, "prompt", where), where)
    response = text_field(_get(obj, "response", where), where, "response")
    score = number_field(_get(obj, "score", where), where, "score")
    return ScoreFeedback(prompt, response, score, source=where, meta=_meta(obj, "scores", where))


def parse_language(obj: dict, where: str) -> LanguageFeedback:
    prompt = prompt_field(_get(obj, "prompt", where), where)
    response = text_field(_get(obj, "response", where), where, "response")
    feedback = text_field(_get(obj, "feedback", where), where, "feedback")
    return LanguageFeedback(prompt, response, feedback, source=where, meta=_meta(obj, "language", where))


def parse_binary(obj: dict, where: str) -> BinaryFeedback:
    """``{"prompt", "response", "label": true | false}`` (thumbs up / down); 1, 0 or "yes" are refused."""
    prompt = prompt_field(_get(obj, "prompt", where), where)
    response = text_field(_get(obj, "response", where), where, "response")
    label = _get(obj, "label", where)
    if not isinstance(label, bool):
        raise DataError(where, "label", f"expected true or false, got {_type(label)}")
    return BinaryFeedback(prompt, response, label, source=where, meta=_meta(obj, "binary", where))


def parse_steps(obj: dict, where: str) -> StepFeedback:
    """``{"prompt", "steps": [text, ...], "step_labels": [1 | 0 | -1, ...]}``, one mark per step
    (1 good, 0 neutral, -1 bad)."""
    prompt = prompt_field(_get(obj, "prompt", where), where)
    steps, marks = _get(obj, "steps", where), _get(obj, "step_labels", where)
    if not isinstance(steps, (list, tuple)) or not 1 <= len(steps) <= MAX_STEPS:
        raise DataError(where, "steps", f"expected a list of 1..{MAX_STEPS} step texts")
    steps = tuple(text_field(t, where, f"steps[{i}]") for i, t in enumerate(steps))
    if not isinstance(marks, (list, tuple)):
        raise DataError(where, "step_labels", f"expected a list of 1, 0 or -1, got {_type(marks)}")
    if len(marks) != len(steps):
        raise DataError(where, "step_labels", f"{len(marks)} labels for {len(steps)} steps")
    for i, mark in enumerate(marks):
        if type(mark) is not int or mark not in STEP_VALUES:  # bool and 1.0 refused too
            got = repr(mark)[:40] if isinstance(mark, (int, float, str)) else _type(mark)
            raise DataError(where, f"step_labels[{i}]", f"expected 1 (good), 0 (neutral) or -1 (bad), "
                                                        f"got {got}")
    return StepFeedback(prompt, steps, tuple(int(m) for m in marks), source=where,
                        meta=_meta(obj, "steps", where))


def parse_prompt(obj: dict, where: str) -> tuple | str:
    """The prompt of any record kind, as a Conversation (tuple of Message).

    ``{"prompt": ...}``; chat ``{"messages": [...]}`` (without a final assistant message if there is
    one); an HH transcript (the turns the two dialogues share before their last assistant turns; a
    pair that differs earlier is a drop); or a pair whose chosen side is a message list.
    """
    if obj.get("prompt") is not None:
        return prompt_field(obj["prompt"], where)
    for key in ("messages", "chosen"):
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, str) and key == "chosen":
            rejected = obj.get("rejected")
            return hh.hh_prompt(value, rejected if isinstance(rejected, str) else None, where)
        conv = as_conversation(value, where, key)
        if conv[-1].role == "assistant":
            conv = conv[:-1]
        if not conv:
            raise DataError(where, key, "no user turn before the assistant message")
        return check_prompt(conv, where, key)
    raise DataError(where, "prompt", "missing")


PARSERS: dict[str, Callable[[dict, str], Any]] = {
    "sft": parse_sft,
    "pairs": parse_pair,
    "rankings": parse_ranking,
    "scores": parse_score,
    "language": parse_language,
    "binary": parse_binary,
    "steps": parse_steps,
    "prompts": parse_prompt,
}


def parse_record(obj: Any, kind: str, where: str) -> Any:
    """Dispatch on ``kind``; ``obj`` must be a JSON object. Null-valued top-level keys are dropped."""
    if kind not in PARSERS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(obj, dict):
        raise DataError(where, "record", f"expected a JSON object, got {_type(obj)}")
    obj = {k: v for k, v in obj.items() if v is not None}
    return PARSERS[kind](obj, where)


__all__ = ["KINDS", "PARSERS", "parse_record", "check_prompt", "prompt_field", "text_field",
           "number_field"]
