"""Typed feedback records: one dataclass per feedback format of SPEC section 1.

Every prompt is a conversation: a tuple of :class:`Message` (roles ``system``, ``user``,
``assistant``) that ends with a ``user`` turn; a plain string prompt becomes one user turn. Responses
are the text of the next assistant turn. ``source`` is ``"file:line"`` (for messages), ``meta`` keeps
anything else a record carried (annotator ids, agreement, ...), and survives export.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from rlhfkit.errors import RlhfkitError

ROLES = ("system", "user", "assistant")


class DataError(RlhfkitError, ValueError):
    """A bad record: the message reads ``file:line: field: problem``."""

    def __init__(self, where: str, fieldname: str, problem: str):
        self.where, self.field, self.problem = where, fieldname, problem
        super().__init__(f"{where}: {fieldname}: {problem}")


def no_usable(key: str, spec: Any, what: str, why: str = "") -> DataError:
    """The error for a data source that leaves nothing to work on: ``key: spec: no usable <what>``
    (``where`` is the config key, ``field`` the file it names), ``why`` in parentheses."""
    return DataError(key, str(spec), f"no usable {what}" + (f" ({why})" if why else ""))


@dataclass(frozen=True)
class Message:
    role: str
    content: str


Conversation = tuple  # tuple[Message, ...]


@dataclass
class SFTExample:
    prompt: Conversation
    response: str
    source: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class PreferencePair:
    """``chosen`` preferred over ``rejected``; ``label`` = P(chosen better): 1.0, soft, or 0.5 (tie)."""

    prompt: Conversation
    chosen: str
    rejected: str
    margin: float | None = None
    label: float = 1.0
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def tie(self) -> bool:
        return self.label == 0.5


@dataclass
class Ranking:
    """``ranking`` lists indices into ``responses``, best first (a full or partial order)."""

    prompt: Conversation
    responses: tuple
    ranking: tuple
    source: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class ScoreFeedback:
    prompt: Conversation
    response: str
    score: float
    source: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class LanguageFeedback:
    prompt: Conversation
    response: str
    feedback: str
    source: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class BinaryFeedback:
    """A thumbs up (``label`` True) or down (False) on one response (the data KTO learns from)."""

    prompt: Conversation
    response: str
    label: bool
    source: str = ""
    meta: dict = field(default_factory=dict)


STEP_GOOD, STEP_NEUTRAL, STEP_BAD = 1, 0, -1
STEP_VALUES = (STEP_GOOD, STEP_NEUTRAL, STEP_BAD)
MAX_STEPS = 100  # steps one answer may have (readers and the studio)


@dataclass
class StepFeedback:
    """A multi-step answer with one mark per step: 1 good, 0 neutral, -1 bad (process supervision,
    Lightman et al. 2023). ``steps[i]`` is the text of step i, ``step_labels[i]`` its mark."""

    prompt: Conversation
    steps: tuple
    step_labels: tuple
    source: str = ""
    meta: dict = field(default_factory=dict)


Record = Union[SFTExample, PreferencePair, Ranking, ScoreFeedback, LanguageFeedback, BinaryFeedback,
               StepFeedback]


def as_conversation(value: Any, where: str = "", fieldname: str = "prompt") -> Conversation:
    """A string or a list of ``{"role", "content"}`` dicts -> a tuple of Message."""
    if isinstance(value, str):
        return (Message("user", value),)
    if isinstance(value, (list, tuple)) and value:
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Message):
                out.append(item)
                continue
            if not isinstance(item, dict):
                raise DataError(where, f"{fieldname}[{i}]", "expected an object with role and content")
            role, content = item.get("role"), item.get("content")
            if role not in ROLES:
                raise DataError(where, f"{fieldname}[{i}].role", f"expected one of {ROLES}, got {role!r}")
            if not isinstance(content, str):
                raise DataError(where, f"{fieldname}[{i}].content", "expected a string")
            out.append(Message(role, content))
        return tuple(out)
    raise DataError(where, fieldname, "expected a non-empty string or list of messages")


def conversation_to_json(conv: Conversation) -> Any:
    """Inverse of :func:`as_conversation`: a single user turn becomes a plain string again."""
    if len(conv) == 1 and conv[0].role == "user":
        return conv[0].content
    return [{"role": m.role, "content": m.content} for m in conv]


def record_to_json(record: Record) -> dict:
    """The JSONL form the readers accept back (``source`` dropped, ``meta`` kept when non-empty)."""
    data = asdict(record)
    data.pop("source", None)
    data["prompt"] = conversation_to_json(record.prompt)
    if isinstance(record, PreferencePair):
        if data["margin"] is None:
            data.pop("margin")
        if record.label == 1.0:
            data.pop("label")
    if isinstance(record, Ranking):
        data["responses"], data["ranking"] = list(record.responses), list(record.ranking)
    if isinstance(record, StepFeedback):
        data["steps"], data["step_labels"] = list(record.steps), list(record.step_labels)
    if not data.get("meta"):
        data.pop("meta", None)
    return data


def ranking_to_pairs(ranking: Ranking) -> list[PreferencePair]:
    """y1 > y2 > ... > yk expands into all k(k-1)/2 ordered pairs (SPEC section 1)."""
    order = list(ranking.ranking)
    pairs = []
    for i, better in enumerate(order):
        for worse in order[i + 1:]:
            pairs.append(PreferencePair(
                prompt=ranking.prompt,
                chosen=ranking.responses[better],
                rejected=ranking.responses[worse],
                source=ranking.source,
                meta=dict(ranking.meta),
            ))
    return pairs


def pair_to_binary(pair: PreferencePair) -> list[BinaryFeedback]:
    """A preference pair -> one thumbs-up record (the better answer) and one thumbs-down record (the
    worse), as Ethayarajh et al. (2024) do to train KTO on preference data such as HH.
    ``label`` < 0.5 means the rejected side won, so
    the sides swap; a tie (0.5) says neither is good or bad and gives no records."""
    if pair.label == 0.5:
        return []
    good, bad = (pair.chosen, pair.rejected) if pair.label > 0.5 else (pair.rejected, pair.chosen)
    return [BinaryFeedback(pair.prompt, good, True, source=pair.source, meta=dict(pair.meta)),
            BinaryFeedback(pair.prompt, bad, False, source=pair.source, meta=dict(pair.meta))]


# a line that starts a numbered step: "1. ", "2) ", "(3) ", "Step 4: ", "step 5." (the marker stays in
# the step's text); "3.5 apples" is not a marker (no space after the dot)
_NUMBERED = re.compile(r"^[ \t]*(?:step[ \t]*\d{1,3}[.:)]?|\(?\d{1,3}[.):])(?:[ \t]|$)", re.IGNORECASE)
_BLANK = re.compile(r"\n[ \t]*\n")


def split_steps(text: str) -> list[str]:
    """The steps of a multi-step answer: a new step starts after one or more blank lines and at every
    line that begins with a step number ("1.", "2)", "(3)", "Step 4:"). Each step is stripped of
    surrounding whitespace and keeps its number; empty steps are dropped; a single newline inside a
    step does not split it. Text without either marker is one step; blank text gives no steps.
    """
    steps: list[str] = []
    for block in _BLANK.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        current: list[str] = []
        for line in block.split("\n"):
            if _NUMBERED.match(line) and any(x.strip() for x in current):
                steps.append("\n".join(current).strip())
                current = []
            current.append(line)
        steps.append("\n".join(current).strip())
    return [step for step in steps if step]
