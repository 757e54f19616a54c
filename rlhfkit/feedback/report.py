"""A project's quality report: progress, agreement, annotator quality, position bias.

Built from the labels in the database with the pure statistics of :mod:`rlhfkit.feedback.quality`;
shown on the admin page, served as JSON to the admin API and printed by ``rlhfkit studio report``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from rlhfkit.feedback import quality, tasks
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.ingest import prompt_from_json
from rlhfkit.feedback.models import Annotator, Assignment, Item, Label
from rlhfkit.feedback.service import find_project, item_steps


@dataclass
class LabelRow:
    label_id: int
    item_id: int
    annotator: str
    value: dict
    display_choice: str | None
    is_gold: bool
    gold: dict | None
    seconds: float | None


@dataclass
class ItemRow:
    item_id: int
    prompt: tuple
    candidates: list
    is_gold: bool
    gold: dict | None
    source: str
    steps: list = field(default_factory=list)  # steps items: the steps as shown


def load_project(db: Database, project_ref: Any) -> tuple[dict, list[ItemRow], list[LabelRow]]:
    """(project settings, items, labels) in one read transaction."""
    with db.read() as s:
        p = find_project(s, project_ref)
        info = {"id": p.id, "name": p.name, "task_type": p.task_type, "overlap": p.overlap,
                "gold_rate": p.gold_rate, "gold_threshold": p.gold_threshold,
                "min_gold": p.min_gold, "archived": p.archived}
        items = [ItemRow(i.id, prompt_from_json(i.prompt_json), json.loads(i.candidates_json),
                         i.is_gold, json.loads(i.gold_json) if i.gold_json else None, i.source,
                         item_steps(i))
                 for i in s.execute(select(Item).where(Item.project_id == p.id)
                                    .order_by(Item.id)).scalars()]
        gold = {i.item_id: (i.is_gold, i.gold) for i in items}
        rows = s.execute(select(Label, Annotator.name).join(Annotator, Annotator.id == Label.annotator_id)
                         .where(Label.project_id == p.id).order_by(Label.id)).all()
        labels = [LabelRow(lab.id, lab.item_id, name, json.loads(lab.value_json), lab.display_choice,
                           gold[lab.item_id][0], gold[lab.item_id][1], lab.seconds)
                  for lab, name in rows]
        info["open_assignments"] = s.execute(select(func.count(Assignment.id)).where(
            Assignment.project_id == p.id, Assignment.done.is_(False))).scalar_one()
    return info, items, labels


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 4)


def agreement(task_type: str, labels: list[LabelRow]) -> dict:
    """Cohen's kappa per annotator pair, Fleiss' kappa and Krippendorff's alpha for a project, over
    its agreement units (:func:`rlhfkit.feedback.tasks.agreement_units`: one per step of a steps
    item, so step labels agree step by step)."""
    units: dict = defaultdict(dict)  # unit -> {annotator: category}
    for lab in labels:
        for unit, cat in tasks.agreement_units(task_type, lab.item_id, lab.value):
            units[unit][lab.annotator] = cat
    shared = {u: v for u, v in units.items() if len(v) >= 2}
    out: dict = {"units": len(shared)}
    if task_type == "critique":
        out["note"] = "free-text critiques have no agreement statistic"
        return out
    out["fleiss_kappa"] = _finite(quality.fleiss_kappa(
        quality.units_to_counts({u: list(v.values()) for u, v in shared.items()})))
    out["alpha_nominal"] = _finite(quality.krippendorff_alpha([list(v.values()) for v in shared.values()]))
    if task_type in ("score", "steps"):  # steps: bad < neutral < good is an order too
        for level in ("ordinal", "interval") if task_type == "score" else ("ordinal",):
            out[f"alpha_{level}"] = _finite(quality.krippendorff_alpha(
                [list(v.values()) for v in shared.values()], level))
    pairs = []
    names = sorted({a for v in shared.values() for a in v})
    for a, b in itertools.combinations(names, 2):
        common = [u for u, v in shared.items() if a in v and b in v]
        if common:
            k = quality.cohen_kappa([shared[u][a] for u in common], [shared[u][b] for u in common])
            pairs.append({"a": a, "b": b, "n": len(common), "kappa": _finite(k)})
    out["cohen_pairs"] = pairs
    finite = [p["kappa"] for p in pairs if p["kappa"] is not None]
    out["cohen_mean"] = round(sum(finite) / len(finite), 4) if finite else None
    return out


def reliability(task_type: str, labels: list[LabelRow]):
    """Dawid-Skene over the agreement units of every label (None for critiques or no labels)."""
    obs = [(unit, lab.annotator, cat) for lab in labels
           for unit, cat in tasks.agreement_units(task_type, lab.item_id, lab.value)]
    if not obs:
        return None
    return quality.dawid_skene(obs)


def annotator_quality(info: dict, labels: list[LabelRow], ds) -> list[dict]:
    task_type = info["task_type"]
    hits: dict = defaultdict(list)
    per: dict = defaultdict(list)
    for lab in labels:
        per[lab.annotator].append(lab)
        if lab.is_gold and lab.gold is not None:
            hits[lab.annotator].append(tasks.gold_correct(task_type, lab.value, lab.gold))
    screen = quality.gold_screening({a: hits.get(a, []) for a in per}, info["gold_threshold"],
                                    info["min_gold"])
    rows = []
    for name in sorted(per):
        g = screen[name]
        secs = [lab.seconds for lab in per[name] if lab.seconds is not None]
        row = {"annotator": name, "labels": len(per[name]), "gold_answered": g.answered,
               "gold_correct": g.correct, "gold_accuracy": _finite(g.accuracy), "flagged": g.flagged,
               "reliability": _finite(ds.reliability.get(name)) if ds else None,
               "median_seconds": round(statistics.median(secs), 1) if secs else None}
        if task_type == "pairwise":
            row["left_rate"] = _finite(quality.position_bias(
                lab.display_choice for lab in per[name] if lab.display_choice)["left_rate"])
        rows.append(row)
    return rows


def project_report(db: Database, project_ref: Any) -> dict:
    """Everything the admin quality page shows, as plain JSON-able values."""
    info, items, labels = load_project(db, project_ref)
    regular = [i for i in items if not i.is_gold]
    per_item: dict = defaultdict(int)
    for lab in labels:
        per_item[lab.item_id] += 1
    progress = {
        "items": len(regular), "gold_items": len(items) - len(regular),
        "labels": len(labels), "gold_labels": sum(lab.is_gold for lab in labels),
        "target_labels": len(regular) * info["overlap"],
        "regular_labels": sum(min(per_item[i.item_id], info["overlap"]) for i in regular),
        "complete_items": sum(per_item[i.item_id] >= info["overlap"] for i in regular),
        "open_assignments": info["open_assignments"],
    }
    t = progress["target_labels"]
    progress["percent"] = round(100.0 * progress["regular_labels"] / t, 1) if t else 0.0
    ds = reliability(info["task_type"], labels)
    report = {"project": info, "progress": progress,
              "agreement": agreement(info["task_type"], labels),
              "annotators": annotator_quality(info, labels, ds)}
    if info["task_type"] == "pairwise":
        bias = quality.position_bias(lab.display_choice for lab in labels if lab.display_choice)
        report["position_bias"] = {k: (_finite(v) if isinstance(v, float) else v) for k, v in bias.items()}
    return report
