"""Reading prompt / candidate files for the studio and turning them into items.

Accepted records (JSONL, JSONL.gz, or a JSON list; one object per line):

* ``{"prompt": ...}`` -- prompt only; candidates must be generated (``rlhfkit studio generate``);
* ``{"prompt": ..., "responses": [...]}`` -- candidates that already exist (also a Ranking record);
* ``{"prompt": ..., "chosen": ..., "rejected": ...}`` -- a preference pair (2 candidates);
* ``{"prompt": ..., "response": ...}`` -- one candidate (SFT / score / language-feedback records);
* ``{"messages": [...]}`` -- a chat; the prompt is every turn up to the last user turn, a final
  assistant turn becomes the candidate.

``prompt`` is a string or a list of ``{"role", "content"}`` messages. An optional ``gold`` key marks
a gold item (see :func:`rlhfkit.feedback.tasks.parse_gold` for its form per task type). Other
formats (Parquet, HF datasets, ...) go through ``rlhfkit.data.readers.read_records`` when that
module is available. Every problem is reported as ``file:line: field: problem``.
"""

from __future__ import annotations

import gzip
import importlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rlhfkit.data.records import DataError, Message, as_conversation

MAX_PROMPT_CHARS = 50_000
MAX_RESPONSE_CHARS = 50_000


@dataclass
class PromptRecord:
    """A prompt with zero or more candidate responses, as read from a file."""

    prompt: tuple
    responses: list = field(default_factory=list)
    gold: Any = None
    source: str = ""


@dataclass
class ItemSpec:
    """One studio item to create: prompt, its candidates (per task type) and an optional gold answer."""

    prompt: tuple
    candidates: list
    gold: Any = None
    source: str = ""


def _iter_json_objects(path: Path) -> Iterator[tuple[str, Any]]:
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if name.endswith((".json", ".json.gz")):
            try:
                data = json.load(fh)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{err.lineno}", "json", err.msg) from None
            if not isinstance(data, list):
                raise DataError(f"{path}:1", "json", "expected a list of records")
            for i, obj in enumerate(data):
                yield f"{path}:[{i}]", obj
            return
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}", "json", err.msg) from None


def _response_text(value: Any, where: str, fieldname: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(where, fieldname, "expected a non-empty string")
    if len(value) > MAX_RESPONSE_CHARS:
        raise DataError(where, fieldname, f"longer than {MAX_RESPONSE_CHARS} characters")
    return value


def _from_messages(obj: dict, where: str) -> tuple[tuple, list]:
    conv = as_conversation(obj["messages"], where, "messages")
    responses = []
    if conv[-1].role == "assistant":
        responses = [conv[-1].content]
        conv = conv[:-1]
    if not conv or conv[-1].role != "user":
        raise DataError(where, "messages", "the prompt must end with a user turn")
    return conv, responses


def parse_record(obj: Any, where: str) -> PromptRecord:
    """One JSON object -> PromptRecord (see the module docstring for the accepted shapes)."""
    if not isinstance(obj, dict):
        raise DataError(where, "record", "expected a JSON object")
    if "prompt" in obj:
        prompt = as_conversation(obj["prompt"], where, "prompt")
        if prompt[-1].role != "user":
            raise DataError(where, "prompt", "must end with a user turn")
        responses: list = []
    elif "messages" in obj:
        prompt, responses = _from_messages(obj, where)
    else:
        raise DataError(where, "prompt", "missing (expected 'prompt' or 'messages')")
    if sum(len(m.content) for m in prompt) > MAX_PROMPT_CHARS:
        raise DataError(where, "prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    if "responses" in obj:
        if not isinstance(obj["responses"], list) or not obj["responses"]:
            raise DataError(where, "responses", "expected a non-empty list of strings")
        responses = [_response_text(r, where, f"responses[{i}]") for i, r in enumerate(obj["responses"])]
    elif "chosen" in obj or "rejected" in obj:
        responses = [_response_text(obj.get("chosen"), where, "chosen"),
                     _response_text(obj.get("rejected"), where, "rejected")]
    elif "response" in obj:
        responses = [_response_text(obj["response"], where, "response")]
    return PromptRecord(prompt, responses, obj.get("gold"), where)


def _from_typed(record: Any) -> PromptRecord:
    """A record from rlhfkit.data.readers -> PromptRecord."""
    responses: list
    if hasattr(record, "responses"):
        responses = list(record.responses)
    elif hasattr(record, "chosen"):
        responses = [record.chosen, record.rejected]
    elif hasattr(record, "response"):
        responses = [record.response]
    else:
        responses = []
    return PromptRecord(tuple(record.prompt), responses, None, getattr(record, "source", ""))


def read_prompt_file(path: str | Path) -> list[PromptRecord]:
    """Read a prompt / candidate file; raises DataError (``file:line: field: problem``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file", "no such file")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return [parse_record(obj, where) for where, obj in _iter_json_objects(path)]
    try:
        readers = importlib.import_module("rlhfkit.data.readers")
    except ImportError:
        readers = None
    if readers is None or not hasattr(readers, "read_records"):
        raise DataError(str(path), "file", "unsupported format (use .jsonl, .jsonl.gz or .json)")
    return [_from_typed(r) for r in readers.read_records(path)]


def read_prompt_bytes(data: bytes, name: str = "upload.jsonl") -> list[PromptRecord]:
    """Parse an uploaded JSONL body (the admin page's import form)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(name, "file", "not UTF-8 text") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{name}:{lineno}", "json", err.msg) from None
        out.append(parse_record(obj, f"{name}:{lineno}"))
    if not out:
        raise DataError(name, "file", "no records")
    return out


def items_for_task(task_type: str, records: list[PromptRecord]) -> list[ItemSpec]:
    """Split prompt records into items: pairwise -> one item per pair of candidates, ranking -> one
    item with every candidate, score / critique -> one item per candidate."""
    from rlhfkit.feedback.tasks import MAX_CANDIDATES, parse_gold

    items = []
    for rec in records:
        n = len(rec.responses)
        if n == 0:
            raise DataError(rec.source, "responses",
                            "missing: import candidates or sample them with `rlhfkit studio generate`")
        if task_type == "pairwise":
            if n < 2:
                raise DataError(rec.source, "responses", "a pairwise item needs at least 2 responses")
            if rec.gold is not None and n != 2:
                raise DataError(rec.source, "gold", "gold pairwise items need exactly 2 responses")
            groups = [[rec.responses[i], rec.responses[j]]
                      for i, j in itertools.combinations(range(n), 2)]
        elif task_type == "ranking":
            if not 2 <= n <= MAX_CANDIDATES:
                raise DataError(rec.source, "responses", f"a ranking needs 2..{MAX_CANDIDATES} responses")
            groups = [list(rec.responses)]
        else:
            if rec.gold is not None and n != 1:
                raise DataError(rec.source, "gold", f"gold {task_type} items need exactly 1 response")
            groups = [[r] for r in rec.responses]
        gold = None
        if rec.gold is not None:
            try:
                gold = parse_gold(task_type, rec.gold, len(groups[0]))
            except ValueError as err:
                raise DataError(rec.source, "gold", str(err).split(": ", 1)[-1]) from None
        items.extend(ItemSpec(rec.prompt, g, gold, rec.source) for g in groups)
    return items


def prompt_to_json(prompt: tuple) -> str:
    return json.dumps([{"role": m.role, "content": m.content} for m in prompt], ensure_ascii=False)


def prompt_from_json(text: str) -> tuple:
    return tuple(Message(m["role"], m["content"]) for m in json.loads(text))
