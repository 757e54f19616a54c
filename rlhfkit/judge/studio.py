"""The judge as a studio annotator: its verdicts on a pairwise project's items are stored as labels of
annotator ``ai:<model>`` through the studio's own service functions, so gold accuracy, kappa against
each person and Dawid-Skene reliability apply to it exactly as to a person.

A stored label is ``{"preferred": 0 | 1 | "tie", "reason": ..., "p_candidate_0": P(candidate 0
better)}`` (the soft probability rides along for soft-label exports). Verdicts that are not ok, or
below ``min_confidence``, are counted and not stored; items the judge already labelled are skipped,
so a rerun only judges what is new. Gold items are judged too (that is how its gold accuracy is
measured).

Note: the studio counts every label of an item toward its ``overlap``, the judge's included; label
with the judge after people have finished, or raise the project's overlap by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhfkit.judge.judge import Judge, JudgePair
from rlhfkit.judge.verdict import Verdict, keep


@dataclass
class StudioJudgeResult:
    project: str
    annotator: str
    items: int  # pairwise items in the project
    already: int  # items this judge had labelled before
    stored: int
    not_ok: int  # unparseable or refused: counted, not stored
    below_confidence: int
    verdicts: list


def judge_project(db: Any, project_ref: Any, judge: Judge) -> StudioJudgeResult:
    """Judge every pairwise item of the project not yet labelled by ``judge.annotator`` and store
    the verdicts as that annotator's labels (one transaction)."""
    from rlhfkit.feedback.report import load_project
    from rlhfkit.feedback.service import BadInput

    info, items, labels = load_project(db, project_ref)
    if info["task_type"] != "pairwise":
        raise BadInput(f"project {info['name']!r} is a {info['task_type']} project; the judge labels "
                       "pairwise projects")
    done = {lab.item_id for lab in labels if lab.annotator == judge.annotator}
    todo = [item for item in items if item.item_id not in done]
    pairs = [JudgePair(item.prompt, item.candidates[0], item.candidates[1],
                       meta={"item_id": item.item_id}) for item in todo]
    verdicts = judge.compare_many(pairs)
    stored = store_verdicts(db, info["id"], judge, verdicts)
    below = sum(1 for v in verdicts if v.ok and not keep(v, judge.min_confidence))
    return StudioJudgeResult(info["name"], judge.annotator, len(items), len(done), stored,
                             sum(1 for v in verdicts if not v.ok), below, verdicts)


def verdict_label(verdict: Verdict, annotator: str) -> dict:
    """The stored label value of a verdict (candidate 0 = response A)."""
    agree = "both orders agree" if verdict.consistent else "the two orders disagree"
    return {"preferred": verdict.preferred,
            "reason": f"{annotator}: P(first better) = {verdict.prob:.3f}, {agree}",
            "p_candidate_0": round(verdict.prob, 6)}


def store_verdicts(db: Any, project_id: int, judge: Judge, verdicts: list[Verdict]) -> int:
    """Store the kept verdicts (``meta["item_id"]`` names the item) as the judge's labels."""
    from rlhfkit.feedback.models import Item
    from rlhfkit.feedback.service import find_project, get_or_create_annotator, record_label

    kept = [v for v in verdicts if keep(v, judge.min_confidence)]
    with db.transaction() as s:
        project = find_project(s, project_id)
        annotator = get_or_create_annotator(s, judge.annotator)
        for v in kept:
            record_label(s, project, s.get(Item, v.meta["item_id"]), annotator,
                         verdict_label(v, judge.annotator))
    return len(kept)
