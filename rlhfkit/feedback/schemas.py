"""The one validation layer of the studio: every value a person or a script sends (forms, JSON
bodies, CLI options, imported texts) passes through a pydantic model or :func:`check_text` here
before anything is stored, so a bad input is a one-line ``field: problem`` and never a crash.

Rules shared by every field:

* text must be storable by SQLite and PostgreSQL alike: valid Unicode (no lone surrogates such as
  ``"\\ud800"``) and no NUL characters;
* numbers are finite (no ``Infinity`` / ``1e400``), whole numbers are whole (``2.5`` and ``true``
  are refused, never truncated), digits are ASCII (``"²"`` is not a number);
* unknown keys are refused (a typo is reported, not ignored).

:func:`validate` turns pydantic's errors into :class:`InvalidInput` (``ValueError``); the service
layer re-raises it as a 422 ``BadInput``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      ValidationError)

from rlhfkit.data.records import MAX_STEPS, STEP_BAD, STEP_GOOD, STEP_NEUTRAL
from rlhfkit.errors import RlhfkitError
from rlhfkit.feedback.models import TASK_TYPES

MAX_REASON = 2000
MAX_CRITIQUE = 10000
SCORE_MIN, SCORE_MAX = 1, 7
MAX_ASSIGNMENT_MINUTES = 30 * 24 * 60


class InvalidInput(RlhfkitError, ValueError):
    """``field: problem`` for the first few problems of one input."""


def text_problem(value: str) -> str | None:
    """Why a database cannot store ``value`` (NUL, lone surrogate), or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate)"
    return None


def check_text(value: str, fieldname: str = "text") -> str:
    """``value`` unchanged if a database can store it, else InvalidInput naming ``fieldname``."""
    problem = text_problem(value)
    if problem:
        raise InvalidInput(f"{fieldname}: {problem}")
    return value


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _whole(value: Any) -> Any:
    """Whole numbers: ints (not booleans) or ASCII digit strings; everything else is refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 12):
            raise ValueError(f"expected a whole number, got {value[:40]!r}")
        return int(text)
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_storable)]
Whole = Annotated[int, BeforeValidator(_whole)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSpec(_Strict):
    """A new project's settings (``rlhfkit studio create-project``, the admin form and API)."""

    name: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    task_type: Literal[TASK_TYPES]  # type: ignore[valid-type]
    overlap: Annotated[Whole, Field(ge=1, le=50)] = 3  # annotators per regular item
    gold_rate: Fraction = 0.1  # P(a task is an unannounced gold item)
    gold_threshold: Fraction = 0.7  # flag annotators below this gold accuracy ...
    min_gold: Annotated[Whole, Field(ge=0, le=10_000)] = 3  # ... after this many gold answers
    instructions: Annotated[Text, StringConstraints(max_length=20_000)] = ""
    # an unanswered task goes back to the pool after this many minutes (default one hour)
    assignment_minutes: Annotated[Whole, Field(ge=1, le=MAX_ASSIGNMENT_MINUTES)] = 60


class AnnotatorSpec(_Strict):
    name: Annotated[Text, StringConstraints(min_length=1, max_length=100)]
    expires_days: Annotated[float, Field(gt=0, le=3650, allow_inf_nan=False)] | None = None


class PairwiseAnswer(_Strict):
    choice: Annotated[str, BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v)]
    reason: Annotated[Text, StringConstraints(max_length=MAX_REASON)] = ""


def _positions(value: Any) -> Any:
    """"2,1,3" / "2 1 3" / [2, 1, 3] -> [2, 1, 3] (each a whole number)."""
    if isinstance(value, str):
        value = [p for p in value.replace(" ", ",").split(",") if p]
    if not isinstance(value, (list, tuple)) or len(value) > 64:
        raise ValueError("expected the display positions best first, e.g. '2,1,3'")
    try:
        return [_whole(p) for p in value]
    except ValueError:
        raise ValueError(f"positions must be whole numbers, got {str(value)[:60]}") from None


class RankingAnswer(_Strict):
    order: Annotated[list[int], BeforeValidator(_positions)]  # display positions, best first


def _score(value: Any) -> int:
    try:
        score = _whole(value)
    except ValueError:
        score = None
    if not isinstance(score, int) or not SCORE_MIN <= score <= SCORE_MAX:
        raise ValueError(f"expected a whole number {SCORE_MIN}..{SCORE_MAX}, got {str(value)[:40]!r}")
    return score


class ScoreAnswer(_Strict):
    score: Annotated[int, BeforeValidator(_score)]


class CritiqueAnswer(_Strict):
    critique: Annotated[Text, StringConstraints(min_length=1, max_length=MAX_CRITIQUE)]


THUMBS = {"up": True, "down": False, True: True, False: False}  # form value or JSON boolean


def _thumb(value: Any) -> bool:
    key = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(key, (str, bool)) or key not in THUMBS:
        raise ValueError(f"expected up or down, got {str(value)[:40]!r}")
    return THUMBS[key]


class BinaryAnswer(_Strict):
    """Thumbs up / down on one response (``thumb`` = "up" | "down", or true | false in JSON)."""

    thumb: Annotated[bool, BeforeValidator(_thumb)]
    reason: Annotated[Text, StringConstraints(max_length=MAX_REASON)] = ""


STEP_WORDS = {"good": STEP_GOOD, "neutral": STEP_NEUTRAL, "bad": STEP_BAD}
STEP_MARKS = {**STEP_WORDS, **{str(v): v for v in STEP_WORDS.values()}, **{v: v for v in STEP_WORDS.values()}}


def _step_marks(value: Any) -> list[int]:
    """[1, 0, -1] / ["good", "neutral", "bad"] / "1,0,-1" -> [1, 0, -1]; a None (a step the form
    left unmarked) names the step."""
    if isinstance(value, str):
        value = [p for p in value.replace(" ", ",").split(",") if p]
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_STEPS:
        raise ValueError("expected one mark per step (good, neutral or bad), e.g. [1, 0, -1]")
    marks = []
    for i, mark in enumerate(value):
        key = mark.strip().lower() if isinstance(mark, str) else mark
        if isinstance(key, bool) or not isinstance(key, (str, int)) or key not in STEP_MARKS:
            got = "nothing" if mark is None else repr(mark)[:20]
            raise ValueError(f"step {i + 1}: choose good, neutral or bad (1, 0 or -1), got {got}")
        marks.append(STEP_MARKS[key])
    return marks


class StepsAnswer(_Strict):
    """One mark per step of a multi-step answer: 1 good, 0 neutral, -1 bad."""

    steps: Annotated[list[int], BeforeValidator(_step_marks)]


ANSWERS = {"pairwise": PairwiseAnswer, "ranking": RankingAnswer, "score": ScoreAnswer,
           "critique": CritiqueAnswer, "binary": BinaryAnswer, "steps": StepsAnswer}


def _problem(err: dict) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    kind, ctx = err.get("type"), err.get("ctx") or {}
    if kind == "missing":
        msg = "missing"
    elif kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        msg = "must not be empty"
    elif kind in ("too_long", "string_too_long"):
        msg = f"too long (at most {ctx.get('max_length')} characters)"
    elif kind == "string_unicode":
        msg = "contains invalid Unicode (a lone surrogate)"
    elif kind == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and kind != "value_error":
        msg = f"{msg}, got {str(err['input'])[:40]!r}"
    return f"{loc or 'input'}: {msg}"


def validate(model: type[_Strict], data: Any):
    """``model(**data)`` or InvalidInput listing the first three problems."""
    if not isinstance(data, dict):
        raise InvalidInput("body: expected an object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        raise InvalidInput("; ".join(_problem(e) for e in errors[:3])) from None

