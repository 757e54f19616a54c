"""Import and export Label Studio and Argilla JSON, for the four studio task types.

Label Studio (checked against Label Studio 1.23.2's own exports in tests/fixtures/label_studio/).
Reads its JSON export (a list of tasks ``{"id", "data", "annotations": [{"result": [...],
"completed_by", "ground_truth", "was_cancelled", "created_at", "updated_at"}], "meta"}``) and its
JSON_MIN export (one flat row per annotation: the task's data fields, its ``id``, one column per
control, ``annotator``); :func:`labelstudio_config` gives the labelling config rlhfkit exports for.

=========  ============================================  =========================================
task       ``data``                                      ``result`` entries (type: value)
=========  ============================================  =========================================
pairwise   prompt (or messages), answer1, answer2        choices: {"choices": ["answer1"|"answer2"|
           (rlhfkit; "Human Preference collection for    "tie"]} (from_name "preference"), textarea
           RLHF" template) or pairText1, pairText2       "reason"; or the Pairwise tag's
           ("Pairwise classification" template)          pairwise: {"selected": "left"|"right"}
ranking    prompt, candidates = [{"id", "title",         ranker: {"ranker": {<Ranker name>: [ids
           "body"}]                                      best first]}} (List + Ranker, no buckets)
score      prompt, response                              rating: {"rating": 1..7}
critique   prompt, response                              textarea: {"text": ["...", ...]} (every
                                                         entry kept, joined by blank lines)
=========  ============================================  =========================================

Identity: a task's Label Studio id is kept (``Item.source = "labelstudio task <id>"``), so
importing a file again adds only labels from annotators the item has none from. ``completed_by``
(a user id, an email or ``{id, email}``) names the annotator by email where the export (or a user
list) has one, else ``labelstudio user <id>``; several annotations by one user on one task count
as their latest. Answer1 / left is recorded as shown on the left (position bias). Label Studio's
``ground_truth`` flag leaves the annotation a vote unless the import asks for ``ground_truth="gold"``.

Export: Label Studio accepts annotations only from members of its organisation, so a label is an
annotation only for annotators mapped to a member's email (``emails``); other labels are
predictions with model_version ``rlhfkit:<annotator>`` (read back as that annotator's labels), and
a gold answer travels in ``meta.rlhfkit.gold``, never as an invented annotator.

Argilla (``{"settings": {...}, "records": [...]}`` or a bare list of records, as Argilla 2's
``records.to_list(flatten=False)`` writes them; Argilla 1 FeedbackDataset records whose
``responses`` is a list of ``{"user_id", "values": {question: {"value"}}, "status"}`` are read too):

=========  ==========================================  =============================================
task       ``fields``                                  question (name: value)
=========  ==========================================  =============================================
pairwise   prompt, response_1, response_2              preference: "response_1"|"response_2"|"tie";
                                                       reason: text
ranking    prompt, response_1 .. response_k            ranking: ["response_2", "response_1", ...]
                                                       best first (or v1 [{"value", "rank"}])
score      prompt, response                            score: 1..7
critique   prompt, response                            critique: text
=========  ==========================================  =============================================

``metadata.gold`` holds a gold answer (the studio's stored form). Responses with status
``discarded`` or ``draft`` are skipped. A prompt with several turns travels as ``messages``
(a list of role/content objects) next to the flattened ``prompt`` text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select

from rlhfkit.data.records import DataError, as_conversation
from rlhfkit.feedback import tasks
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.ingest import prompt_to_json
from rlhfkit.feedback.models import Item, Label
from rlhfkit.feedback.report import load_project
from rlhfkit.feedback.service import find_project, get_or_create_annotator, record_label
from rlhfkit.utils.io import atomic_write_text

SKIP_STATUS = ("discarded", "draft")


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------

def _prompt_text(prompt: tuple) -> str:
    if len(prompt) == 1 and prompt[0].role == "user":
        return prompt[0].content
    return "\n\n".join(f"{m.role}: {m.content}" for m in prompt)


def _prompt_fields(prompt: tuple) -> dict:
    out = {"prompt": _prompt_text(prompt)}
    if not (len(prompt) == 1 and prompt[0].role == "user"):
        out["messages"] = [{"role": m.role, "content": m.content} for m in prompt]
    return out


def _read_prompt(data: dict, where: str) -> tuple:
    if "messages" in data:
        conv = as_conversation(data["messages"], where, "messages")
    else:
        conv = as_conversation(data.get("prompt"), where, "prompt")
    if conv[-1].role != "user":
        raise DataError(where, "prompt", "must end with a user turn")
    return conv


def _text(value: Any, where: str, fieldname: str) -> str:
    if not isinstance(value, str):
        raise DataError(where, fieldname, "expected a string")
    return value


def _load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(str(path), "file", "no such file") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}", "json", err.msg) from None


@dataclass
class ImportedItem:
    """One item read from an interchange file, ready to store."""

    prompt: tuple
    candidates: list
    gold: dict | None
    where: str  # file:[i], for messages
    answers: list  # [(annotator name, value, display choice or None)], at most one per annotator
    key: str | None = None  # its id in the source tool: an item with this key is stored once
    origin: int | None = None  # the studio item it was exported from (meta.rlhfkit.item_id)


class ImportCounts(NamedTuple):
    """What an import added. ``differing``: answers that differ from the label their annotator
    already has on that item; an import never changes a stored label."""

    items: int
    labels: int
    differing: int


def _stored_gold(task_type: str, gold: Any, n: int, where: str, fieldname: str) -> dict:
    """A gold answer in the studio's stored form ({"preferred"} / {"ranking"} / {"score"}), checked."""
    try:
        raw = gold.get("preferred", gold.get("ranking", gold.get("score"))) if isinstance(gold, dict) else gold
        return tasks.parse_gold(task_type, raw, n)
    except ValueError as err:
        raise DataError(where, fieldname, str(err).split(": ", 1)[-1]) from None


def _same_item(s, project, it: ImportedItem, prompt_json: str, cands_json: str) -> Item | None:
    """The item ``it`` was exported from, when it is in this project with the same content; else the
    item imported before with ``it.key`` (an error if its content differs); else None."""
    if it.origin is not None:
        origin = s.get(Item, it.origin)
        if origin is not None and (origin.project_id, origin.prompt_json, origin.candidates_json) == \
                (project.id, prompt_json, cands_json):
            return origin
    if it.key is None:
        return None
    old = s.execute(select(Item).where(Item.project_id == project.id, Item.source == it.key)
                    .order_by(Item.id)).scalars().first()
    if old is not None and (old.prompt_json, old.candidates_json) != (prompt_json, cands_json):
        raise DataError(it.where, "id", f"{it.key} was imported into this project before with another "
                                        "prompt or responses (from another Label Studio project?); "
                                        "import this file into a new studio project")
    return old


def _item_for(s, project, it: ImportedItem) -> tuple[Item, bool]:
    """(the item ``it`` already is, or a new one; whether it is new)."""
    prompt_json, cands_json = prompt_to_json(it.prompt), json.dumps(it.candidates, ensure_ascii=False)
    old = _same_item(s, project, it, prompt_json, cands_json)
    if old is not None:
        return old, False
    item = Item(project_id=project.id, prompt_json=prompt_json, candidates_json=cands_json,
                is_gold=it.gold is not None, gold_json=None if it.gold is None else json.dumps(it.gold),
                source=(it.key or it.where)[:500])
    s.add(item)
    s.flush()
    return item, True


def _store(db: Database, project_ref: Any, parsed: list[ImportedItem]) -> ImportCounts:
    """Store items and labels in one transaction. An item that exists already (exported from this
    project, or imported before with the same key) gets only the labels of annotators it has none
    from, so importing the same file twice adds nothing."""
    n_items = n_labels = differing = 0
    with db.transaction() as s:
        project = find_project(s, project_ref)
        lo, hi = tasks.candidates_needed(project.task_type)
        for it in parsed:
            if not lo <= len(it.candidates) <= hi:
                raise DataError(it.where, "candidates", f"{project.task_type} items need {lo}..{hi} "
                                                        f"candidates, got {len(it.candidates)}")
            item, created = _item_for(s, project, it)
            n_items += created
            stored = dict(s.execute(select(Label.annotator_id, Label.value_json)
                                    .where(Label.item_id == item.id)).all())
            for name, value, shown in it.answers:
                annotator = get_or_create_annotator(s, name)
                if annotator.id in stored:
                    differing += json.loads(stored[annotator.id]) != value
                    continue
                stored[annotator.id] = json.dumps(value)
                record_label(s, project, item, annotator, value, shown)
                n_labels += 1
    return ImportCounts(n_items, n_labels, differing)


def _task_type(db: Database, project_ref: Any) -> str:
    with db.read() as s:
        return find_project(s, project_ref).task_type


def read_emails(path: str | Path) -> dict[str, str]:
    """A JSON object ``{studio annotator name: Label Studio member email}``, checked."""
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise DataError(str(path), "json", "expected an object {annotator name: email}")
    for name, email in doc.items():
        if not isinstance(email, str) or "@" not in email:
            raise DataError(str(path), name, f"expected an email address, got {email!r}")
    if len(set(doc.values())) != len(doc):
        raise DataError(str(path), "json", "two annotators have the same email")
    return dict(doc)


def read_labelstudio_users(path: str | Path) -> dict[int, str]:
    """Label Studio's user list (``GET /api/users``: ``[{"id", "email", ...}]``) as {user id: email},
    to name the annotators of an export whose ``completed_by`` is a bare user id."""
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise DataError(str(path), "json", "expected Label Studio's user list [{id, email}, ...]")
    users = {}
    for i, user in enumerate(doc):
        if not (isinstance(user, dict) and isinstance(user.get("id"), int) and isinstance(user.get("email"), str)):
            raise DataError(f"{path}:[{i}]", "user", "expected an object with an integer id and an email")
        users[user["id"]] = user["email"]
    return users


# --------------------------------------------------------------------------------------------------
# Label Studio
# --------------------------------------------------------------------------------------------------

LS_PREDICTION_PREFIX = "rlhfkit:"  # model_version of a studio label exported as a prediction
LS_GROUND_TRUTH = ("vote", "gold")  # what Label Studio's ground-truth flag means on import
_LS_PAIR_FIELDS = (("answer1", "answer2"), ("pairText1", "pairText2"))
_LS_ROW_KEYS = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time",
                          "agreement", "history", "was_cancelled", "ground_truth"})  # JSON_MIN, not data
_LS_MIN_TYPES = {"selected": "pairwise", "rating": "rating", "ranker": "ranker", "choices": "choices",
                 "text": "textarea"}  # JSON_MIN value key -> result type
_LS_MIN_STRINGS = {"preference": "choices", "reason": "textarea", "critique": "textarea"}
_LS_FORMATS = ("a Label Studio JSON export (a list of tasks with 'data' and 'annotations') or a JSON_MIN "
               "export (a list of flat rows, one per annotation)")
_LS_ACCEPTED = {
    "pairwise": "data {prompt or messages, answer1, answer2} (rlhfkit's config, the 'Human Preference "
                "collection for RLHF' template) or {prompt, pairText1, pairText2} (the 'Pairwise "
                "classification' template) answered by Choices answer1|answer2|tie or Pairwise left|right",
    "ranking": "data {prompt, candidates: [{id, title, body}]} answered by a Ranker without buckets "
               "({ranker: {<Ranker name>: [ids best first]}})",
    "score": f"data {{prompt, response}} answered by a Rating 1..{tasks.SCORE_MAX}",
    "critique": "data {prompt, response} answered by a TextArea",
}


def labelstudio_config(task_type: str) -> str:
    """The Label Studio labelling config (XML) matching :func:`export_labelstudio`'s tasks."""
    head = '<View>\n  <Text name="prompt" value="$prompt"/>\n'
    if task_type == "pairwise":  # answer1 on the left, answer2 on the right, as the Pairwise tag shows them
        body = ('  <View style="display: flex; gap: 1em">\n'
                '    <View style="flex: 1"><Text name="answer1" value="$answer1"/></View>\n'
                '    <View style="flex: 1"><Text name="answer2" value="$answer2"/></View>\n  </View>\n'
                '  <Choices name="preference" toName="prompt" choice="single-radio" required="true" '
                'showInline="true">\n'
                '    <Choice value="answer1"/>\n    <Choice value="answer2"/>\n'
                '    <Choice value="tie"/>\n  </Choices>\n'
                '  <TextArea name="reason" toName="prompt" maxSubmissions="1"/>\n')
    elif task_type == "ranking":
        body = ('  <List name="candidates" value="$candidates" title="Responses"/>\n'
                '  <Ranker name="rank" toName="candidates"/>\n')
    elif task_type == "score":
        body = ('  <Text name="response" value="$response"/>\n'
                f'  <Rating name="score" toName="response" maxRating="{tasks.SCORE_MAX}" required="true"/>\n')
    elif task_type == "critique":
        body = ('  <Text name="response" value="$response"/>\n'
                '  <TextArea name="critique" toName="response" required="true"/>\n')
    else:
        raise ValueError(f"unknown task type {task_type!r}")
    return head + body + "</View>\n"


def _ls_result(task_type: str, value: dict) -> list[dict]:
    """A studio label as the result Label Studio's own UI stores for :func:`labelstudio_config`."""
    if task_type == "pairwise":
        choice = {0: "answer1", 1: "answer2", "tie": "tie"}[value["preferred"]]
        res = [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                "value": {"choices": [choice]}}]
        if value.get("reason"):
            res.append({"from_name": "reason", "to_name": "prompt", "type": "textarea",
                        "value": {"text": [value["reason"]]}})
        return res
    if task_type == "ranking":  # a Ranker without buckets keys its order by the Ranker's own name
        return [{"from_name": "rank", "to_name": "candidates", "type": "ranker",
                 "value": {"ranker": {"rank": [f"c{i}" for i in value["ranking"]]}}}]
    if task_type == "score":
        return [{"from_name": "score", "to_name": "response", "type": "rating",
                 "value": {"rating": value["score"]}}]
    return [{"from_name": "critique", "to_name": "response", "type": "textarea",
             "value": {"text": [value["critique"]]}}]


def _ls_data(task_type: str, item) -> dict:
    data = _prompt_fields(item.prompt)
    c = item.candidates
    if task_type == "pairwise":
        data.update(answer1=c[0], answer2=c[1])
    elif task_type == "ranking":
        data["candidates"] = [{"id": f"c{i}", "title": f"Response {i + 1}", "body": t}
                              for i, t in enumerate(c)]
    else:
        data["response"] = c[0]
    return data


def _ls_labels(task_type: str, labels: list, emails: dict) -> tuple[list, list]:
    """(annotations by the members ``emails`` names, predictions for every other label)."""
    annotations, predictions = [], []
    for lab in labels:
        result = _ls_result(task_type, lab.value)
        if lab.annotator in emails:
            annotations.append({"result": result, "completed_by": {"email": emails[lab.annotator]},
                                "ground_truth": False, "was_cancelled": False})
        else:
            predictions.append({"result": result, "model_version": LS_PREDICTION_PREFIX + lab.annotator})
    return annotations, predictions


def to_labelstudio(db: Database, project_ref: Any, emails: dict[str, str] | None = None) -> list[dict]:
    """The project as Label Studio tasks that a real Label Studio imports.

    Label Studio takes annotations only from members of its organisation, so a label becomes an
    annotation only when ``emails`` maps its annotator to a member's email; every other label is
    a prediction with model_version ``rlhfkit:<annotator>``. No annotator is invented: a gold
    answer travels in ``meta.rlhfkit.gold``, never as somebody's annotation.
    """
    info, items, labels = load_project(db, project_ref)
    task_type = info["task_type"]
    by_item: dict = {}
    for lab in labels:
        by_item.setdefault(lab.item_id, []).append(lab)
    out = []
    for item in items:
        annotations, predictions = _ls_labels(task_type, by_item.get(item.item_id, []), emails or {})
        meta = {"project": info["name"], "item_id": item.item_id, "source": item.source}
        if item.gold is not None:
            meta["gold"] = item.gold
        out.append({"id": item.item_id, "data": _ls_data(task_type, item), "annotations": annotations,
                    "predictions": predictions, "meta": {"rlhfkit": meta}})
    return out


# ---- reading Label Studio exports ----------------------------------------------------------------

def _ls_min_result(key: str, value: Any) -> list[dict] | None:
    """A JSON_MIN column as result entries, or None when it is a data field."""
    if isinstance(value, str) and key in _LS_MIN_STRINGS:  # one choice / one text is flattened
        kind = _LS_MIN_STRINGS[key]
        return [{"from_name": key, "type": kind, "value": {"choices" if kind == "choices" else "text": [value]}}]
    values = value if isinstance(value, list) else [value]
    kinds = [next((t for k, t in _LS_MIN_TYPES.items() if isinstance(v, dict) and k in v), None) for v in values]
    if not values or None in kinds:
        return None
    return [{"from_name": key, "type": t, "value": v} for t, v in zip(kinds, values)]


def _ls_from_json_min(rows: list, name: str) -> list[tuple[str, dict]]:
    """JSON_MIN rows (task data, one column per control, ``annotator``...) -> (where, JSON task)."""
    grouped: dict = {}
    for i, row in enumerate(rows):
        data, result = {}, []
        for key, value in row.items():
            if key not in _LS_ROW_KEYS:
                entries = _ls_min_result(key, value)
                if entries is None:
                    data[key] = value
                else:
                    result.extend(entries)
        tid = row.get("id")
        where, task = grouped.setdefault(tid if tid is not None else ("row", i),
                                         (f"{name}:[{i}]", {"id": tid, "data": data, "annotations": []}))
        if result or row.get("annotation_id") is not None:
            task["annotations"].append({"result": result, "completed_by": row.get("annotator"),
                                        "created_at": row.get("created_at"),
                                        "updated_at": row.get("updated_at")})
    return list(grouped.values())


def _ls_tasks(doc: Any, name: str) -> list[tuple[str, dict]]:
    """(where, task) for a JSON export, or a JSON_MIN export turned into JSON tasks."""
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise DataError(name, "json", f"expected {_LS_FORMATS}")
    has_data = [("data" in t) for t in doc]
    if all(has_data):
        for i, task in enumerate(doc):
            if not isinstance(task["data"], dict):
                raise DataError(f"{name}:[{i}]", "data", "expected an object")
        return [(f"{name}:[{i}]", t) for i, t in enumerate(doc)]
    if any(has_data):
        i = has_data.index(not has_data[0])
        raise DataError(f"{name}:[{i}]", "data", f"mixes JSON tasks and JSON_MIN rows; expected {_LS_FORMATS}")
    return _ls_from_json_min(doc, name)


def _ls_people(tasks_json: list) -> dict[int, str]:
    """Label Studio user id -> email, from every expanded ``completed_by`` ({id, email}) in the export."""
    people = {}
    for _where, task in tasks_json:
        for ann in task.get("annotations") or []:
            who = ann.get("completed_by") if isinstance(ann, dict) else None
            if isinstance(who, dict) and isinstance(who.get("id"), int) and who.get("email"):
                people[who["id"]] = str(who["email"])
    return people


def _ls_namer(people: dict[int, str], emails: dict[str, str] | None):
    """completed_by (an id, an email or {id, email}) -> studio annotator name: the name ``emails``
    gives the email, else the email, else ``labelstudio user <id>`` for an id the export never expands."""
    names = {email: name for name, email in (emails or {}).items()}

    def who_of(completed_by: Any) -> str:
        if isinstance(completed_by, dict):
            completed_by = completed_by.get("email") or completed_by.get("id")
        if isinstance(completed_by, int) and not isinstance(completed_by, bool):
            completed_by = people.get(completed_by, f"labelstudio user {completed_by}")
        who = str(completed_by) if completed_by not in (None, "") else "labelstudio"
        return names.get(who, who)

    return who_of


def _ls_by_type(result: Any, where: str) -> dict[str, list[dict]]:
    if not isinstance(result, list):
        raise DataError(where, "result", "expected a list")
    by_type: dict = {}
    for r in result:
        if isinstance(r, dict) and isinstance(r.get("value"), dict):
            by_type.setdefault(str(r.get("type", "")).lower(), []).append(r)
    return by_type


def _ls_named(results: list[dict], name: str) -> dict:
    """The result from the control called ``name`` (rlhfkit's config), else the first one."""
    return next((r for r in results if r.get("from_name") == name), results[0])


def _ls_text(results: list[dict], where: str, fieldname: str) -> str:
    """Every entry of every TextArea result, in order, joined by blank lines."""
    parts = []
    for r in results:
        text = r["value"].get("text")
        for t in [text] if isinstance(text, str) else text if isinstance(text, list) else [None]:
            parts.append(_text(t, where, fieldname).strip())
    return "\n\n".join(p for p in parts if p)


def _ls_pairwise(res: dict, ids: list, where: str) -> tuple[dict, str] | None:
    if "pairwise" in res:
        selected = res["pairwise"][0]["value"].get("selected")
        if selected not in ("left", "right"):
            raise DataError(where, "result.selected", f"expected left or right, got {selected!r}")
        pref, shown = (0 if selected == "left" else 1), selected
    elif "choices" in res:
        choice = (_ls_named(res["choices"], "preference")["value"].get("choices") or [None])[0]
        pref = {"answer1": 0, "answer2": 1, "tie": "tie"}.get(choice) if isinstance(choice, str) else None
        if pref is None:
            raise DataError(where, "result.choices", f"expected answer1, answer2 or tie, got {choice!r}")
        shown = {0: "left", 1: "right", "tie": "tie"}[pref]  # answer1 is shown on the left
    else:
        return None
    reason = _ls_text(res.get("textarea", []), where, "result.reason")
    return {"preferred": pref, "reason": reason[:tasks.MAX_REASON]}, shown


def _ls_ranking(res: dict, ids: list, where: str) -> tuple[dict, None] | None:
    if "ranker" not in res:
        return None
    r = res["ranker"][0]
    lists = r["value"].get("ranker")
    if not isinstance(lists, dict) or not lists:
        raise DataError(where, "result.ranker", "expected {<Ranker name>: [candidate ids]}")
    key = r.get("from_name") if r.get("from_name") in lists else next(iter(lists)) if len(lists) == 1 else None
    if key is None:
        raise DataError(where, "result.ranker", f"buckets {sorted(lists)} are not one full ranking; "
                                                "use a Ranker without Bucket tags")
    index = {cid: i for i, cid in enumerate(ids)}
    ranked = lists[key]
    if not isinstance(ranked, list) or not all(isinstance(x, str) and x in index for x in ranked):
        raise DataError(where, "result.ranker", f"unknown candidate ids {ranked!r}")
    order = [index[x] for x in ranked]
    if sorted(order) != list(range(len(ids))):
        raise DataError(where, "result.ranker", "must rank every candidate exactly once")
    return {"ranking": order}, None


def _ls_score(res: dict, ids: list, where: str) -> tuple[dict, None] | None:
    if "rating" not in res:
        return None
    r = _ls_named(res["rating"], "score")["value"].get("rating")
    if not isinstance(r, int) or isinstance(r, bool) or not tasks.SCORE_MIN <= r <= tasks.SCORE_MAX:
        raise DataError(where, "result.rating", f"expected {tasks.SCORE_MIN}..{tasks.SCORE_MAX}, got {r!r}")
    return {"score": r}, None


def _ls_critique(res: dict, ids: list, where: str) -> tuple[dict, None] | None:
    if "textarea" not in res:
        return None
    text = _ls_text(res["textarea"], where, "result.text")
    if not text:
        raise DataError(where, "result.text", "empty critique")
    return {"critique": text[:tasks.MAX_CRITIQUE]}, None


_LS_READERS = {"pairwise": _ls_pairwise, "ranking": _ls_ranking, "score": _ls_score,
               "critique": _ls_critique}


def _ls_value(task_type: str, result: Any, ids: list, where: str) -> tuple[dict, str | None] | None:
    """(studio value, display choice) of one annotation; None for an empty one."""
    res = _ls_by_type(result, where)
    if not res:
        return None
    got = _LS_READERS[task_type](res, ids, where)
    if got is None:
        raise DataError(where, "result", f"no {task_type} answer among result types {sorted(res)}; "
                                         f"expected {_LS_ACCEPTED[task_type]}")
    return got


def _ls_candidates(task_type: str, data: dict, where: str) -> tuple[list, list]:
    """(candidate texts, their Label Studio ids: the ranking List's item ids, else [])."""
    if task_type == "pairwise":
        for a, b in _LS_PAIR_FIELDS:
            if a in data or b in data:
                return [_text(data.get(a), where, f"data.{a}"), _text(data.get(b), where, f"data.{b}")], []
        raise DataError(where, "data", f"no pair of responses; expected {_LS_ACCEPTED['pairwise']}")
    if task_type == "ranking":
        cands = data.get("candidates")
        if not isinstance(cands, list) or not cands:
            raise DataError(where, "data.candidates", f"expected a list; expected {_LS_ACCEPTED['ranking']}")
        ids: list = []
        for i, c in enumerate(cands):
            if not isinstance(c, dict) or not isinstance(c.get("id"), str) or c["id"] in ids:
                raise DataError(where, f"data.candidates[{i}].id", "expected a string id, unique in the task")
            ids.append(c["id"])
        return [_text(c.get("body"), where, f"data.candidates[{i}].body") for i, c in enumerate(cands)], ids
    if "response" not in data:
        raise DataError(where, "data.response", f"missing; expected {_LS_ACCEPTED[task_type]}")
    return [_text(data["response"], where, "data.response")], []


@dataclass(frozen=True)
class _LSAnswer:
    who: str
    value: dict
    shown: str | None
    order: tuple  # (updated_at or created_at, position): a person's latest answer wins
    ground_truth: bool


def _ls_answers(task_type: str, task: dict, ids: list, who_of, where: str) -> list[_LSAnswer]:
    """Every answer on the task: submitted annotations, and predictions rlhfkit exported for its labels."""
    out = []
    for j, ann in enumerate(task.get("annotations") or []):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        got = _ls_value(task_type, ann.get("result") or [], ids, f"{where}.annotations[{j}]")
        if got is not None:
            when = str(ann.get("updated_at") or ann.get("created_at") or "")
            out.append(_LSAnswer(who_of(ann.get("completed_by")), got[0], got[1], (when, j),
                                 bool(ann.get("ground_truth"))))
    for j, pred in enumerate(task.get("predictions") or []):
        version = pred.get("model_version") if isinstance(pred, dict) else None
        if isinstance(version, str) and version.startswith(LS_PREDICTION_PREFIX):
            got = _ls_value(task_type, pred.get("result") or [], ids, f"{where}.predictions[{j}]")
            if got is not None:
                out.append(_LSAnswer(version[len(LS_PREDICTION_PREFIX):], got[0], got[1], ("", j), False))
    return out


def _ls_latest(answers: list[_LSAnswer]) -> list[_LSAnswer]:
    """One answer per person: the latest (several annotations by one user on one task are normal)."""
    best: dict = {}
    for a in answers:
        if a.who not in best or a.order >= best[a.who].order:
            best[a.who] = a
    return list(best.values())


def _rlhfkit_meta(task: dict) -> dict:
    """``meta.rlhfkit`` of a task rlhfkit exported ({project, item_id, source, gold}), else {}."""
    meta = task.get("meta")
    ours = meta.get("rlhfkit") if isinstance(meta, dict) else None
    if not isinstance(ours, dict):
        return {}
    item_id = ours.get("item_id")
    return {**ours, "item_id": item_id if isinstance(item_id, int) and not isinstance(item_id, bool) else None}


def _ls_gold(task_type: str, task: dict, answers: list[_LSAnswer], n: int, ground_truth: str,
             where: str) -> tuple[dict | None, list[_LSAnswer]]:
    """(gold answer, the answers that stay votes). ``meta.rlhfkit.gold`` is rlhfkit's own gold answer;
    Label Studio's ground-truth flag is a vote unless ``ground_truth="gold"``, which makes the
    flagged answer the item's gold answer instead of a vote."""
    gold = _rlhfkit_meta(task).get("gold")
    if gold is not None:
        gold = _stored_gold(task_type, gold, n, where, "meta.rlhfkit.gold")
    flagged = [a for a in answers if a.ground_truth]
    if ground_truth == "vote" or not flagged:
        return gold, answers
    if task_type == "critique":
        raise DataError(where, "ground_truth", "critique projects have no gold items; import with "
                                               "ground_truth=vote")
    best = max(flagged, key=lambda a: a.order)
    gold = {k: v for k, v in best.value.items() if k != "reason"}
    return gold, [a for a in answers if not a.ground_truth]


def _ls_item(task_type: str, task: dict, who_of, ground_truth: str, where: str) -> ImportedItem:
    data = task["data"]
    if "prompt" not in data and "messages" not in data:
        raise DataError(where, "data.prompt", f"missing; expected {_LS_ACCEPTED[task_type]}")
    prompt = _read_prompt(data, where)
    cands, ids = _ls_candidates(task_type, data, where)
    answers = _ls_latest(_ls_answers(task_type, task, ids, who_of, where))
    gold, votes = _ls_gold(task_type, task, answers, len(cands), ground_truth, where)
    tid = task.get("id")
    key = f"labelstudio task {tid}" if isinstance(tid, (int, str)) and not isinstance(tid, bool) else None
    return ImportedItem(prompt, cands, gold, where, [(a.who, a.value, a.shown) for a in votes], key,
                        _rlhfkit_meta(task).get("item_id"))


def parse_labelstudio(task_type: str, doc: Any, name: str = "labelstudio.json", *,
                      emails: dict[str, str] | None = None, users: dict[int, str] | None = None,
                      ground_truth: str = "vote") -> list[ImportedItem]:
    """A Label Studio JSON or JSON_MIN export -> items. Annotators are named by email where the export
    or ``users`` ({user id: email}) gives one, and ``emails`` ({studio name: email}) turns those
    emails back into studio names; ``ground_truth`` is "vote" or "gold" (see :func:`_ls_gold`)."""
    if ground_truth not in LS_GROUND_TRUTH:
        raise ValueError(f"ground_truth: expected one of {LS_GROUND_TRUTH}, got {ground_truth!r}")
    tasks_json = _ls_tasks(doc, name)
    who_of = _ls_namer({**(users or {}), **_ls_people(tasks_json)}, emails)
    return [_ls_item(task_type, task, who_of, ground_truth, where) for where, task in tasks_json]


def import_labelstudio(db: Database, project_ref: Any, path: str | Path, *, emails: dict[str, str] | None = None,
                       users: dict[int, str] | None = None, ground_truth: str = "vote") -> ImportCounts:
    """Read a Label Studio JSON / JSON_MIN export into a project; returns what it added.
    A task imported before (same Label Studio task id) adds only labels from new annotators."""
    parsed = parse_labelstudio(_task_type(db, project_ref), _load_json(path), str(path), emails=emails,
                               users=users, ground_truth=ground_truth)
    return _store(db, project_ref, parsed)


def export_labelstudio(db: Database, project_ref: Any, path: str | Path,
                       config_path: str | Path | None = None, *, emails: dict[str, str] | None = None) -> int:
    data = to_labelstudio(db, project_ref, emails)
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1))
    if config_path:
        atomic_write_text(config_path, labelstudio_config(_task_type(db, project_ref)))
    return len(data)


# --------------------------------------------------------------------------------------------------
# Argilla
# --------------------------------------------------------------------------------------------------

def argilla_settings(task_type: str, k: int, guidelines: str = "") -> dict:
    text = lambda name: {"name": name, "title": name.replace("_", " ").capitalize(), "type": "text"}  # noqa: E731
    if task_type in ("pairwise", "ranking"):
        n = 2 if task_type == "pairwise" else k
        fields = [text("prompt")] + [text(f"response_{i + 1}") for i in range(n)]
    else:
        fields = [text("prompt"), text("response")]
    if task_type == "pairwise":
        questions = [{"name": "preference", "type": "label_selection",
                      "labels": ["response_1", "response_2", "tie"], "required": True},
                     {"name": "reason", "type": "text", "required": False}]
    elif task_type == "ranking":
        questions = [{"name": "ranking", "type": "ranking",
                      "values": [f"response_{i + 1}" for i in range(k)], "required": True}]
    elif task_type == "score":
        questions = [{"name": "score", "type": "rating",
                      "values": list(range(tasks.SCORE_MIN, tasks.SCORE_MAX + 1)), "required": True}]
    else:
        questions = [{"name": "critique", "type": "text", "required": True}]
    return {"guidelines": guidelines, "fields": fields, "questions": questions}


def _ar_responses(task_type: str, value: dict, user: str) -> dict:
    r = lambda v: [{"value": v, "user_id": user, "status": "submitted"}]  # noqa: E731
    if task_type == "pairwise":
        out = {"preference": r({0: "response_1", 1: "response_2", "tie": "tie"}[value["preferred"]])}
        if value.get("reason"):
            out["reason"] = r(value["reason"])
        return out
    if task_type == "ranking":
        return {"ranking": r([f"response_{i + 1}" for i in value["ranking"]])}
    if task_type == "score":
        return {"score": r(value["score"])}
    return {"critique": r(value["critique"])}


def to_argilla(db: Database, project_ref: Any) -> dict:
    info, items, labels = load_project(db, project_ref)
    task_type = info["task_type"]
    with db.read() as s:
        guidelines = find_project(s, project_ref).instructions
    k = max((len(i.candidates) for i in items), default=2)
    records = []
    for item in items:
        fields = _prompt_fields(item.prompt)
        messages = fields.pop("messages", None)
        if task_type in ("pairwise", "ranking"):
            fields.update({f"response_{i + 1}": c for i, c in enumerate(item.candidates)})
        else:
            fields["response"] = item.candidates[0]
        responses: dict = {}
        for lab in labels:
            if lab.item_id == item.item_id:
                for q, vals in _ar_responses(task_type, lab.value, lab.annotator).items():
                    responses.setdefault(q, []).extend(vals)
        meta: dict = {"studio_item_id": item.item_id, "source": item.source}
        if messages:
            meta["messages"] = messages
        if item.gold is not None:
            meta["gold"] = item.gold
        records.append({"id": str(item.item_id), "fields": fields, "metadata": meta,
                        "responses": responses, "status": "completed" if responses else "pending"})
    return {"settings": argilla_settings(task_type, k, guidelines), "records": records}


def _ar_answers(rec: dict, where: str) -> dict:
    """{user: {question: value}} from v2 (dict) or v1 (list) responses."""
    raw = rec.get("responses") or {}
    out: dict = {}
    if isinstance(raw, dict):
        for q, vals in raw.items():
            for v in vals or []:
                if isinstance(v, dict) and v.get("status", "submitted") not in SKIP_STATUS:
                    out.setdefault(str(v.get("user_id", "argilla")), {})[q] = v.get("value")
    elif isinstance(raw, list):
        for v in raw:
            if isinstance(v, dict) and v.get("status", "submitted") not in SKIP_STATUS:
                vals = v.get("values") or {}
                out[str(v.get("user_id", "argilla"))] = {q: (x or {}).get("value") for q, x in vals.items()}
    else:
        raise DataError(where, "responses", "expected an object (Argilla 2) or a list (Argilla 1)")
    return out


def _ar_value(task_type: str, answer: dict, k: int, where: str) -> dict | None:
    if task_type == "pairwise":
        pref = {"response_1": 0, "response_2": 1, "tie": "tie"}.get(answer.get("preference"))
        if pref is None:
            if "preference" not in answer:
                return None
            raise DataError(where, "preference", f"expected response_1, response_2 or tie, got "
                                                 f"{answer.get('preference')!r}")
        reason = answer.get("reason") or ""
        return {"preferred": pref, "reason": _text(reason, where, "reason")[:tasks.MAX_REASON]}
    if task_type == "ranking":
        v = answer.get("ranking")
        if v is None:
            return None
        if v and isinstance(v[0], dict):  # Argilla 1: [{"value", "rank"}]
            v = [x.get("value") for x in sorted(v, key=lambda x: x.get("rank", 0))]
        index = {f"response_{i + 1}": i for i in range(k)}
        order = [index.get(x) for x in v] if isinstance(v, list) else None
        if order is None or None in order or sorted(order) != list(range(k)):
            raise DataError(where, "ranking", f"expected every response_1..response_{k} once, got {v!r}")
        return {"ranking": order}
    if task_type == "score":
        v = answer.get("score")
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or not tasks.SCORE_MIN <= v <= tasks.SCORE_MAX:
            raise DataError(where, "score", f"expected {tasks.SCORE_MIN}..{tasks.SCORE_MAX}, got {v!r}")
        return {"score": v}
    v = answer.get("critique")
    if v is None:
        return None
    text = _text(v, where, "critique").strip()
    return {"critique": text[:tasks.MAX_CRITIQUE]} if text else None


def parse_argilla(task_type: str, doc: Any, name: str = "argilla.json") -> list[ImportedItem]:
    records = doc.get("records") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        raise DataError(name, "records", "expected a list of Argilla records")
    parsed = []
    for i, rec in enumerate(records):
        where = f"{name}:[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("fields"), dict):
            raise DataError(where, "fields", "expected a record with a 'fields' object")
        f, meta = rec["fields"], rec.get("metadata") or {}
        prompt = _read_prompt({"messages": meta["messages"]} if meta.get("messages") else f, where)
        if task_type in ("pairwise", "ranking"):
            n = 0
            while f"response_{n + 1}" in f:
                n += 1
            cands = [_text(f[f"response_{j + 1}"], where, f"fields.response_{j + 1}") for j in range(n)]
        else:
            cands = [_text(f.get("response"), where, "fields.response")]
        gold = None
        if meta.get("gold") is not None:
            gold = _stored_gold(task_type, meta["gold"], len(cands), where, "metadata.gold")
        answers = []
        for user, ans in _ar_answers(rec, where).items():
            value = _ar_value(task_type, ans, len(cands), f"{where}.responses[{user}]")
            if value is not None:
                answers.append((user, value, None))
        parsed.append(ImportedItem(prompt, cands, gold, where, answers))
    return parsed


def import_argilla(db: Database, project_ref: Any, path: str | Path) -> ImportCounts:
    parsed = parse_argilla(_task_type(db, project_ref), _load_json(path), str(path))
    return _store(db, project_ref, parsed)


def export_argilla(db: Database, project_ref: Any, path: str | Path) -> int:
    doc = to_argilla(db, project_ref)
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=1))
    return len(doc["records"])


__all__ = ["ImportedItem", "ImportCounts", "read_emails", "read_labelstudio_users", "LS_PREDICTION_PREFIX", "LS_GROUND_TRUTH", "labelstudio_config",
           "to_labelstudio", "parse_labelstudio", "import_labelstudio", "export_labelstudio",
           "argilla_settings", "to_argilla", "parse_argilla", "import_argilla", "export_argilla"]
