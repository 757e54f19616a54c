"""The four task types: what a submission looks like, how it is validated, and how it is stored.

Submissions arrive in *display* terms (what the annotator saw: left/right, positions 1..k) and are
stored in *candidate* terms (indices into the item's candidate list), using the assignment's
recorded display order ``order[position] = candidate index``. So a label means the same whatever
side a response was shown on, and position bias stays measurable (``display_choice``).

=========  ======================================  ===========================================
task       submission (form field / JSON key)      stored value
=========  ======================================  ===========================================
pairwise   choice = "A" | "B" | "tie" (A = left),   {"preferred": 0 | 1 | "tie", "reason": str}
           reason (optional, <= 2000 chars)
ranking    order = display positions best first,    {"ranking": [candidate indices best first]}
           1-based ("2,1,3" or [2, 1, 3])
score      score = integer 1..7                     {"score": int}
critique   critique = text, 1..10000 chars          {"critique": str}
binary     thumb = "up" | "down" (JSON: true |      {"label": true | false, "reason": str}
           false), reason (optional)
steps      steps = one mark per step, 1 / 0 / -1    {"steps": [1 | 0 | -1, ...]} (good / neutral /
           or good / neutral / bad (form: step_0,   bad), one per step of the item
           step_1, ... radio fields)
=========  ======================================  ===========================================

Gold answers use the stored form (an import file's ``gold`` is 0 / 1 / "tie", a ranking, a score,
true / false, or a list of step marks); a gold item is answered correctly when the preferred
candidate matches (pairwise), the top-ranked candidate matches (ranking), the score is within
``SCORE_GOLD_TOLERANCE`` (score), the thumb matches (binary), or the first bad step is the gold's
first bad step, or neither has one (steps: finding the first mistake is the point of step labels,
Lightman et al. 2023). Critique projects have no gold items.

A steps item's answer is split into steps once, when the item is created
(:func:`rlhfkit.data.records.split_steps`: blank lines and numbered lines start a step).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rlhfkit.data.records import MAX_STEPS, STEP_BAD, STEP_VALUES
from rlhfkit.errors import RlhfkitError
from rlhfkit.feedback import schemas
from rlhfkit.feedback.models import TASK_TYPES
from rlhfkit.feedback.schemas import MAX_CRITIQUE, MAX_REASON, SCORE_MAX, SCORE_MIN  # noqa: F401

MAX_CANDIDATES = 16
NO_INTEROP = ("binary", "steps")  # task types interop.py (Label Studio / Argilla) does not map yet
SCORE_GOLD_TOLERANCE = 1
PAIRWISE_CHOICES = {"a": "left", "b": "right", "tie": "tie", "left": "left", "right": "right"}


class InvalidSubmission(RlhfkitError, ValueError):
    """A submitted label does not fit the task; ``field`` names the offending input."""

    def __init__(self, fieldname: str, problem: str):
        self.field, self.problem = fieldname, problem
        super().__init__(f"{fieldname}: {problem}")


def check_task_type(task_type: str) -> str:
    if task_type not in TASK_TYPES:
        raise ValueError(f"task type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    return task_type


def candidates_needed(task_type: str) -> tuple[int, int]:
    """(min, max) number of candidates an item of this task type holds."""
    return {"pairwise": (2, 2), "ranking": (2, MAX_CANDIDATES)}.get(task_type, (1, 1))


def _answer(task_type: str, data: Mapping):
    """The submission checked by its schema (:mod:`rlhfkit.feedback.schemas`)."""
    try:
        return schemas.validate(schemas.ANSWERS[task_type], dict(data))
    except schemas.InvalidInput as err:
        fieldname, _, problem = str(err).partition(": ")
        raise InvalidSubmission(fieldname, problem) from None


def parse_submission(task_type: str, data: Mapping, order: Sequence[int],
                     n_steps: int = 0) -> tuple[dict, str | None]:
    """Validate a submission; return (stored value, display choice or None).

    ``order[position]`` is the candidate shown at that display position; ``n_steps`` is the number
    of steps of a steps item.
    """
    if task_type not in schemas.ANSWERS:
        raise ValueError(f"unknown task type {task_type!r}")
    answer = _answer(task_type, data)
    if task_type == "pairwise":
        choice = PAIRWISE_CHOICES.get(answer.choice)
        if choice is None:
            raise InvalidSubmission("choice", f"expected A, B or tie, got {data.get('choice')!r}")
        preferred: Any = "tie" if choice == "tie" else order[0 if choice == "left" else 1]
        return {"preferred": preferred, "reason": answer.reason}, choice
    if task_type == "ranking":
        k = len(order)
        if sorted(answer.order) != list(range(1, k + 1)):
            raise InvalidSubmission("order", f"must list each position 1..{k} exactly once, "
                                             f"got {answer.order}")
        return {"ranking": [order[p - 1] for p in answer.order]}, None
    if task_type == "score":
        return {"score": answer.score}, None
    if task_type == "binary":
        return {"label": answer.thumb, "reason": answer.reason}, None
    if task_type == "steps":
        if len(answer.steps) != n_steps:
            raise InvalidSubmission("steps", f"expected {n_steps} marks (one per step), "
                                             f"got {len(answer.steps)}")
        return {"steps": answer.steps}, None
    return {"critique": answer.critique}, None


def parse_gold(task_type: str, raw: Any, n_candidates: int, where: str = "gold") -> dict:
    """A gold answer from an import file, in stored form.

    pairwise: 0 / 1 (index of the better response) or "tie"; ranking: list of indices best first;
    score: a number 1..7; critique: not supported.
    """
    if task_type == "pairwise":
        if raw == "tie" or (isinstance(raw, int) and not isinstance(raw, bool) and raw in (0, 1)):
            return {"preferred": raw}
        raise ValueError(f"{where}: expected 0, 1 (index of the better response) or \"tie\", got {raw!r}")
    if task_type == "ranking":
        if (isinstance(raw, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in raw)
                and sorted(raw) == list(range(n_candidates))):
            return {"ranking": list(raw)}
        raise ValueError(f"{where}: expected a permutation of 0..{n_candidates - 1}, got {raw!r}")
    if task_type == "score":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and SCORE_MIN <= raw <= SCORE_MAX:
            return {"score": raw}
        raise ValueError(f"{where}: expected a score {SCORE_MIN}..{SCORE_MAX}, got {raw!r}")
    if task_type == "binary":
        if isinstance(raw, bool):
            return {"label": raw}
        raise ValueError(f"{where}: expected true (thumbs up) or false (thumbs down), got {raw!r:.60}")
    if task_type == "steps":
        if (isinstance(raw, list) and 1 <= len(raw) <= MAX_STEPS
                and all(type(x) is int and x in STEP_VALUES for x in raw)):
            return {"steps": list(raw)}
        raise ValueError(f"{where}: expected a list of step marks 1, 0 or -1, got {raw!r:.60}")
    raise ValueError(f"{where}: {task_type} projects have no gold items")


def gold_correct(task_type: str, value: Mapping, gold: Mapping) -> bool:
    if task_type == "pairwise":
        return value["preferred"] == gold["preferred"]
    if task_type == "ranking":
        return value["ranking"][0] == gold["ranking"][0]
    if task_type == "score":
        return abs(value["score"] - gold["score"]) <= SCORE_GOLD_TOLERANCE
    if task_type == "binary":
        return value["label"] == gold["label"]
    if task_type == "steps":
        return first_bad_step(value["steps"]) == first_bad_step(gold["steps"])
    return False


def first_bad_step(marks: Sequence[int]) -> int | None:
    """Index of the first step marked bad (-1), None when no step is."""
    return next((i for i, m in enumerate(marks) if m == STEP_BAD), None)


def agreement_units(task_type: str, item_id: int, value: Mapping) -> list[tuple[Any, Any]]:
    """(unit, category) pairs a label contributes to agreement statistics.

    pairwise: one unit per item, category 0 / 1 / "tie"; ranking: one unit per candidate pair
    (i < j), category "i>j" or "j>i"; score: one unit per item, the score; binary: one unit per
    item, True / False; steps: one unit per step ``(item, i)``, the mark; critique: none.
    """
    if task_type == "pairwise":
        return [(item_id, str(value["preferred"]))]
    if task_type == "ranking":
        pos = {c: p for p, c in enumerate(value["ranking"])}
        cands = sorted(pos)
        return [((item_id, i, j), "first" if pos[i] < pos[j] else "second")
                for a, i in enumerate(cands) for j in cands[a + 1:]]
    if task_type == "score":
        return [(item_id, value["score"])]
    if task_type == "binary":
        return [(item_id, value["label"])]
    if task_type == "steps":
        return [((item_id, i), mark) for i, mark in enumerate(value["steps"])]
    return []
