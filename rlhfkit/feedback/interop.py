"""Import and export Label Studio and Argilla JSON, for the four studio task types.

Label Studio (a JSON list of tasks, ``{"id", "data", "annotations": [{"result": [...],
"completed_by", "ground_truth"}]}``); :func:`labelstudio_config` gives the matching labelling
config. Supported shapes:

=========  ============================================  =========================================
task       ``data``                                      ``result`` entries (type: value)
=========  ============================================  =========================================
pairwise   prompt, answer1, answer2                      choices: {"choices": ["answer1"|"answer2"|
                                                         "tie"]} (from_name "preference"), textarea
                                                         "reason"; also the Pairwise tag's
                                                         pairwise: {"selected": "left"|"right"}
ranking    prompt, candidates = [{"id", "title",         ranker: {"ranker": {<list name>: [ids
           "body"}]                                      best first]}} (List + Ranker tags)
score      prompt, response                              rating: {"rating": 1..7}
critique   prompt, response                              textarea: {"text": ["..."]}
=========  ============================================  =========================================

An annotation with ``ground_truth: true`` is the item's gold answer. ``completed_by`` may be a
number, a string or an object with ``email`` / ``username`` / ``id``; it names the annotator.

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
from pathlib import Path
from typing import Any

from rlhfkit.data.records import DataError, as_conversation
from rlhfkit.feedback import tasks
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.export import write_json_atomic
from rlhfkit.feedback.ingest import prompt_to_json
from rlhfkit.feedback.models import Item
from rlhfkit.feedback.report import load_project
from rlhfkit.feedback.service import find_project, get_or_create_annotator, record_label

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


def _store(db: Database, project_ref: Any, parsed: list) -> tuple[int, int]:
    """parsed = [(prompt, candidates, gold, source, [(annotator, value, display_choice)])]."""
    n_items = n_labels = 0
    with db.transaction() as s:
        project = find_project(s, project_ref)
        lo, hi = tasks.candidates_needed(project.task_type)
        for prompt, cands, gold, source, answers in parsed:
            if not lo <= len(cands) <= hi:
                raise DataError(source, "candidates", f"{project.task_type} items need {lo}..{hi} "
                                                      f"candidates, got {len(cands)}")
            item = Item(project_id=project.id, prompt_json=prompt_to_json(prompt),
                        candidates_json=json.dumps(cands, ensure_ascii=False), is_gold=gold is not None,
                        gold_json=None if gold is None else json.dumps(gold), source=source[:500])
            s.add(item)
            s.flush()
            n_items += 1
            seen = set()
            for name, value, shown in answers:
                if name in seen:
                    raise DataError(source, "annotations", f"two answers from {name!r}")
                seen.add(name)
                record_label(s, project, item, get_or_create_annotator(s, name), value, shown)
                n_labels += 1
    return n_items, n_labels


def _task_type(db: Database, project_ref: Any) -> str:
    with db.read() as s:
        return find_project(s, project_ref).task_type


# --------------------------------------------------------------------------------------------------
# Label Studio
# --------------------------------------------------------------------------------------------------

def labelstudio_config(task_type: str) -> str:
    """The Label Studio labelling config (XML) matching :func:`export_labelstudio`'s tasks."""
    head = '<View>\n  <Text name="prompt" value="$prompt"/>\n'
    if task_type == "pairwise":
        body = ('  <Text name="answer1" value="$answer1"/>\n  <Text name="answer2" value="$answer2"/>\n'
                '  <Choices name="preference" toName="prompt" choice="single-radio" required="true">\n'
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
    if task_type == "pairwise":
        choice = {0: "answer1", 1: "answer2", "tie": "tie"}[value["preferred"]]
        res = [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                "value": {"choices": [choice]}}]
        if value.get("reason"):
            res.append({"from_name": "reason", "to_name": "prompt", "type": "textarea",
                        "value": {"text": [value["reason"]]}})
        return res
    if task_type == "ranking":
        return [{"from_name": "rank", "to_name": "candidates", "type": "ranker",
                 "value": {"ranker": {"candidates": [f"c{i}" for i in value["ranking"]]}}}]
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


def to_labelstudio(db: Database, project_ref: Any) -> list[dict]:
    """The project's items and labels as Label Studio tasks."""
    info, items, labels = load_project(db, project_ref)
    task_type = info["task_type"]
    by_item: dict = {}
    for lab in labels:
        by_item.setdefault(lab.item_id, []).append(lab)
    out = []
    for item in items:
        anns = [{"result": _ls_result(task_type, lab.value), "completed_by": {"email": lab.annotator},
                 "ground_truth": False, "was_cancelled": False}
                for lab in by_item.get(item.item_id, [])]
        if item.gold is not None:
            anns.append({"result": _ls_result(task_type, item.gold), "completed_by": {"email": "gold"},
                         "ground_truth": True, "was_cancelled": False})
        out.append({"id": item.item_id, "data": _ls_data(task_type, item), "annotations": anns,
                    "meta": {"project": info["name"], "source": item.source}})
    return out


def _ls_who(ann: dict) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return str(who) if who not in (None, "") else "labelstudio"


def _ls_value(task_type: str, result: list, cands: list, where: str) -> tuple[dict, str | None] | None:
    by_type: dict = {}
    for r in result:
        if isinstance(r, dict):
            by_type.setdefault(r.get("type"), r.get("value") or {})
    if task_type == "pairwise":
        if "choices" in by_type:
            choice = (by_type["choices"].get("choices") or [None])[0]
        elif "pairwise" in by_type:
            choice = {"left": "answer1", "right": "answer2"}.get(by_type["pairwise"].get("selected"))
        else:
            return None
        pref = {"answer1": 0, "answer2": 1, "tie": "tie"}.get(choice)
        if pref is None:
            raise DataError(where, "result.choices", f"expected answer1, answer2 or tie, got {choice!r}")
        reason = (by_type.get("textarea", {}).get("text") or [""])[0]
        return {"preferred": pref, "reason": _text(reason, where, "result.reason")[:tasks.MAX_REASON]}, None
    if task_type == "ranking":
        if "ranker" not in by_type:
            return None
        ranked = list((by_type["ranker"].get("ranker") or {}).values())
        ids = ranked[0] if ranked else []
        index = {f"c{i}": i for i in range(len(cands))}
        try:
            order = [index[x] for x in ids]
        except (KeyError, TypeError):
            raise DataError(where, "result.ranker", f"unknown candidate ids {ids!r}") from None
        if sorted(order) != list(range(len(cands))):
            raise DataError(where, "result.ranker", "must rank every candidate exactly once")
        return {"ranking": order}, None
    if task_type == "score":
        if "rating" not in by_type:
            return None
        r = by_type["rating"].get("rating")
        if not isinstance(r, int) or isinstance(r, bool) or not tasks.SCORE_MIN <= r <= tasks.SCORE_MAX:
            raise DataError(where, "result.rating", f"expected {tasks.SCORE_MIN}..{tasks.SCORE_MAX}, got {r!r}")
        return {"score": r}, None
    if "textarea" not in by_type:
        return None
    text = _text((by_type["textarea"].get("text") or [""])[0], where, "result.text").strip()
    if not text:
        raise DataError(where, "result.text", "empty critique")
    return {"critique": text[:tasks.MAX_CRITIQUE]}, None


def _ls_candidates(task_type: str, data: dict, where: str) -> list:
    if task_type == "pairwise":
        return [_text(data.get("answer1"), where, "data.answer1"), _text(data.get("answer2"), where, "data.answer2")]
    if task_type == "ranking":
        cands = data.get("candidates")
        if not isinstance(cands, list) or not cands:
            raise DataError(where, "data.candidates", "expected a list of {id, title, body}")
        for i, c in enumerate(cands):
            if not isinstance(c, dict) or c.get("id") != f"c{i}":
                raise DataError(where, f"data.candidates[{i}].id", f"expected 'c{i}'")
        return [_text(c.get("body"), where, f"data.candidates[{i}].body") for i, c in enumerate(cands)]
    return [_text(data.get("response"), where, "data.response")]


def parse_labelstudio(task_type: str, tasks_json: Any, name: str = "labelstudio.json") -> list:
    if not isinstance(tasks_json, list):
        raise DataError(name, "json", "expected a list of Label Studio tasks")
    parsed = []
    for i, task in enumerate(tasks_json):
        where = f"{name}:[{i}]"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(where, "data", "expected a task object with a 'data' object")
        data = task["data"]
        prompt = _read_prompt(data, where)
        cands = _ls_candidates(task_type, data, where)
        gold, answers = None, []
        for j, ann in enumerate(task.get("annotations") or []):
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            got = _ls_value(task_type, ann.get("result") or [], cands, f"{where}.annotations[{j}]")
            if got is None:
                continue
            if ann.get("ground_truth"):
                gold = {k: v for k, v in got[0].items() if k != "reason"} if task_type != "critique" else None
            else:
                answers.append((_ls_who(ann), got[0], got[1]))
        parsed.append((prompt, cands, gold, where, answers))
    return parsed


def import_labelstudio(db: Database, project_ref: Any, path: str | Path) -> tuple[int, int]:
    """Read a Label Studio JSON export into a project; returns (items, labels) added."""
    parsed = parse_labelstudio(_task_type(db, project_ref), _load_json(path), str(path))
    return _store(db, project_ref, parsed)


def export_labelstudio(db: Database, project_ref: Any, path: str | Path,
                       config_path: str | Path | None = None) -> int:
    data = to_labelstudio(db, project_ref)
    write_json_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))
    if config_path:
        write_json_atomic(config_path, labelstudio_config(_task_type(db, project_ref)))
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


def parse_argilla(task_type: str, doc: Any, name: str = "argilla.json") -> list:
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
            g = meta["gold"]
            try:
                raw = g.get("preferred", g.get("ranking", g.get("score"))) if isinstance(g, dict) else g
                gold = tasks.parse_gold(task_type, raw, len(cands))
            except ValueError as err:
                raise DataError(where, "metadata.gold", str(err).split(": ", 1)[-1]) from None
        answers = []
        for user, ans in _ar_answers(rec, where).items():
            value = _ar_value(task_type, ans, len(cands), f"{where}.responses[{user}]")
            if value is not None:
                answers.append((user, value, None))
        parsed.append((prompt, cands, gold, where, answers))
    return parsed


def import_argilla(db: Database, project_ref: Any, path: str | Path) -> tuple[int, int]:
    parsed = parse_argilla(_task_type(db, project_ref), _load_json(path), str(path))
    return _store(db, project_ref, parsed)


def export_argilla(db: Database, project_ref: Any, path: str | Path) -> int:
    doc = to_argilla(db, project_ref)
    write_json_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1))
    return len(doc["records"])


__all__ = ["labelstudio_config", "to_labelstudio", "parse_labelstudio", "import_labelstudio",
           "export_labelstudio", "argilla_settings", "to_argilla", "parse_argilla", "import_argilla",
           "export_argilla"]
