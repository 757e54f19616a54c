"""Export studio labels as rlhfkit records (JSONL exactly as ``record_to_json`` writes them).

========  ===================================================================================
task      records
========  ===================================================================================
pairwise  PreferencePair per item (aggregated) or per label (``raw``); a tie or a split vote is
          ``label`` 0.5; ``soft`` gives label = P(chosen better) from the votes / posterior
ranking   Ranking per item (Borda count; weighted by Dawid-Skene reliability for
          ``dawid-skene``) or per label; ``as_pairs`` expands into PreferencePairs
score     ScoreFeedback per item (majority score, ``mean``, or Dawid-Skene posterior mode)
critique  LanguageFeedback per label (free text is never aggregated)
binary    BinaryFeedback ``{"prompt", "response", "label": true | false}`` per item (majority;
          an item whose votes split evenly has no label and is left out, counted in ``dropped``
          as "split vote"; Dawid-Skene posterior mode) or per label (``raw``)
steps     StepFeedback ``{"prompt", "steps", "step_labels"}`` per item, each step aggregated on
          its own (majority, a split step is neutral 0; or Dawid-Skene per step), or per label
========  ===================================================================================

``meta`` carries the provenance the reward stage and audits need: project, item id, annotators,
votes, the aggregation method, item agreement (share of labels that agree with the aggregate)
and the project's agreement statistics.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rlhfkit.data.records import (STEP_NEUTRAL, BinaryFeedback, LanguageFeedback, PreferencePair,
                                  Ranking, ScoreFeedback, StepFeedback, ranking_to_pairs,
                                  record_to_json)
from rlhfkit.errors import RlhfkitError
from rlhfkit.feedback import quality
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.report import ItemRow, LabelRow, agreement, load_project, reliability
from rlhfkit.utils.io import atomic_write_text

METHODS = ("majority", "dawid-skene", "raw", "mean")


class ExportError(RlhfkitError, ValueError):
    """An export that cannot be written as asked (method, task type, output file)."""


def _base_meta(info: dict, item: ItemRow, labels: list[LabelRow], method: str, project_agr: dict) -> dict:
    meta = {"project": info["name"], "item_id": item.item_id, "method": method,
            "annotators": [lab.annotator for lab in labels], "n_labels": len(labels),
            "project_agreement": project_agr}
    if item.is_gold:
        meta["gold"] = True
    if item.source:
        meta["source"] = item.source
    return meta


def _pair(item: ItemRow, preferred: Any, label: float, meta: dict) -> PreferencePair:
    c = item.candidates
    if preferred == "tie" or preferred is None:
        return PreferencePair(item.prompt, c[0], c[1], label=0.5, meta=meta)
    return PreferencePair(item.prompt, c[preferred], c[1 - preferred], label=label, meta=meta)


def _pairwise(info, item, labels, method, soft, ds, project_agr):
    if method == "raw":
        out = []
        for lab in labels:
            meta = _base_meta(info, item, [lab], method, project_agr)
            meta.update(reason=lab.value.get("reason", ""), shown=lab.display_choice)
            out.append(_pair(item, lab.value["preferred"], 1.0, meta))
        return out
    votes = [str(lab.value["preferred"]) for lab in labels]
    counts = Counter(votes)
    meta = _base_meta(info, item, labels, method, project_agr)
    meta["votes"] = {k: counts.get(k, 0) for k in ("0", "1", "tie")}
    reasons = [lab.value.get("reason") for lab in labels if lab.value.get("reason")]
    if reasons:
        meta["reasons"] = reasons
    if method == "dawid-skene":
        post = ds.posteriors[item.item_id]
        winner = ds.labels[item.item_id]
        meta["posterior"] = {k: round(v, 4) for k, v in post.items()}
        p_win = {c: post.get(c, 0.0) + 0.5 * post.get("tie", 0.0) for c in ("0", "1")}
    else:
        winner, _totals = quality.majority_vote(votes)
        meta["split"] = winner is None
        n = len(votes)
        p_win = {c: (counts.get(c, 0) + 0.5 * counts.get("tie", 0)) / n for c in ("0", "1")}
    top = counts.get(winner, 0) if winner else max(counts.values())
    meta["agreement"] = round(top / len(votes), 4)
    if winner in (None, "tie"):
        if soft:  # the side the votes lean to becomes "chosen", label = its win probability
            lean = "0" if p_win["0"] >= p_win["1"] else "1"
            return [_pair(item, int(lean), p_win[lean], meta)]
        return [_pair(item, "tie", 0.5, meta)]
    label = p_win[winner] if soft else 1.0
    return [_pair(item, int(winner), label, meta)]


def _ranking(info, item, labels, method, ds, project_agr, as_pairs):
    k = len(item.candidates)
    if method == "raw":
        recs = [Ranking(item.prompt, tuple(item.candidates), tuple(lab.value["ranking"]),
                        meta=_base_meta(info, item, [lab], method, project_agr)) for lab in labels]
    else:
        weights = None
        if method == "dawid-skene":
            weights = [ds.reliability.get(lab.annotator, 1.0) for lab in labels]
        order = quality.borda([lab.value["ranking"] for lab in labels], k, weights)
        meta = _base_meta(info, item, labels, method, project_agr)
        meta["rankings"] = [lab.value["ranking"] for lab in labels]
        meta["agreement"] = round(sum(lab.value["ranking"][0] == order[0] for lab in labels)
                                  / len(labels), 4)
        recs = [Ranking(item.prompt, tuple(item.candidates), tuple(order), meta=meta)]
    if as_pairs:
        return [p for r in recs for p in ranking_to_pairs(r)]
    return recs


def _score(info, item, labels, method, ds, project_agr):
    if method == "raw":
        return [ScoreFeedback(item.prompt, item.candidates[0], float(lab.value["score"]),
                              meta=_base_meta(info, item, [lab], method, project_agr))
                for lab in labels]
    scores = [lab.value["score"] for lab in labels]
    meta = _base_meta(info, item, labels, method, project_agr)
    meta["scores"] = scores
    if method == "mean":
        value = statistics.fmean(scores)
    elif method == "dawid-skene":
        value = ds.labels[item.item_id]
        meta["posterior"] = {str(k): round(v, 4) for k, v in ds.posteriors[item.item_id].items()}
    else:
        winner, _ = quality.majority_vote(scores)
        value = winner if winner is not None else statistics.median(scores)
    meta["agreement"] = round(sum(s == value for s in scores) / len(scores), 4)
    return [ScoreFeedback(item.prompt, item.candidates[0], float(value), meta=meta)]


def _binary(info, item, labels, method, ds, project_agr):
    if method == "raw":
        return [BinaryFeedback(item.prompt, item.candidates[0], lab.value["label"],
                               meta={**_base_meta(info, item, [lab], method, project_agr),
                                     "reason": lab.value.get("reason", "")}) for lab in labels]
    votes = [lab.value["label"] for lab in labels]
    meta = _base_meta(info, item, labels, method, project_agr)
    meta["votes"] = {"up": votes.count(True), "down": votes.count(False)}
    reasons = [lab.value.get("reason") for lab in labels if lab.value.get("reason")]
    if reasons:
        meta["reasons"] = reasons
    if method == "dawid-skene":
        winner = ds.labels[item.item_id]
        meta["posterior"] = {str(k).lower(): round(v, 4) for k, v in ds.posteriors[item.item_id].items()}
    else:
        winner, _totals = quality.majority_vote(votes)
        if winner is None:
            return []  # an even split: neither good nor bad (counted by export_records)
    meta["agreement"] = round(votes.count(winner) / len(votes), 4)
    return [BinaryFeedback(item.prompt, item.candidates[0], bool(winner), meta=meta)]


def _steps(info, item, labels, method, ds, project_agr):
    steps = tuple(item.steps)
    if method == "raw":
        return [StepFeedback(item.prompt, steps, tuple(lab.value["steps"]),
                             meta=_base_meta(info, item, [lab], method, project_agr)) for lab in labels]
    marks, split = [], []
    for i in range(len(steps)):
        votes = [lab.value["steps"][i] for lab in labels]
        if method == "dawid-skene":
            winner = ds.labels[(item.item_id, i)]
        else:
            winner, _totals = quality.majority_vote(votes)
        if winner is None:
            winner = STEP_NEUTRAL  # the annotators split evenly on this step
            split.append(i)
        marks.append(int(winner))
    meta = _base_meta(info, item, labels, method, project_agr)
    meta["marks"] = [lab.value["steps"] for lab in labels]
    meta["step_agreement"] = [round(sum(lab.value["steps"][i] == m for lab in labels) / len(labels), 4)
                              for i, m in enumerate(marks)]
    if split:
        meta["split_steps"] = split
    return [StepFeedback(item.prompt, steps, tuple(marks), meta=meta)]


SPLIT_VOTE = "split vote"


def export_records(db: Database, project_ref: Any, method: str = "majority", soft: bool = False,
                   include_gold: bool = False, min_labels: int = 1, as_pairs: bool = False,
                   dropped: Counter | None = None) -> list:
    """Aggregate (or list) a project's labels as rlhfkit record objects. Items left out for a reason
    other than the options (a binary item whose votes split evenly) are counted in ``dropped``."""
    if method not in METHODS:
        raise ExportError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    info, items, labels = load_project(db, project_ref)
    task = info["task_type"]
    if method == "mean" and task != "score":
        raise ExportError("method 'mean' applies to score projects only")
    by_item: dict = defaultdict(list)
    for lab in labels:
        by_item[lab.item_id].append(lab)
    agr = {k: v for k, v in agreement(task, labels).items() if k != "cohen_pairs"}
    ds = reliability(task, labels) if method == "dawid-skene" else None
    out: list = []
    for item in items:
        labs = by_item.get(item.item_id, [])
        if not labs or len(labs) < min_labels or (item.is_gold and not include_gold):
            continue
        if task == "pairwise":
            out += _pairwise(info, item, labs, method, soft, ds, agr)
        elif task == "ranking":
            out += _ranking(info, item, labs, method, ds, agr, as_pairs)
        elif task == "score":
            out += _score(info, item, labs, method, ds, agr)
        elif task == "binary":
            recs = _binary(info, item, labs, method, ds, agr)
            if not recs and dropped is not None:
                dropped[SPLIT_VOTE] += 1
            out += recs
        elif task == "steps":
            out += _steps(info, item, labs, method, ds, agr)
        else:
            out += [LanguageFeedback(item.prompt, item.candidates[0], lab.value["critique"],
                                     meta=_base_meta(info, item, [lab], "raw", agr)) for lab in labs]
    return out


def records_to_jsonl(records: list) -> str:
    return "".join(json.dumps(record_to_json(r), ensure_ascii=False) + "\n" for r in records)


def export_jsonl(db: Database, project_ref: Any, path: str | Path, **options) -> int:
    """Write the export to ``path`` (JSONL, atomically); returns the number of records (options as
    :func:`export_records`, ``dropped`` included)."""
    records = export_records(db, project_ref, **options)
    atomic_write_text(path, records_to_jsonl(records))
    return len(records)
