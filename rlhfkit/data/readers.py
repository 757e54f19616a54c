"""Read feedback records from files: JSONL (optionally gzipped), JSON lists, Parquet, dataset folders.

    result = read_records("train.jsonl.gz", "pairs")
    print(result.report())   # train.jsonl.gz: 1512 records read, 1505 kept, 7 dropped (...)
    pairs = result.records

``kind`` is one of :data:`~rlhfkit.data.formats.KINDS`; the record shapes and validation rules are in
:mod:`rlhfkit.data.formats`. A malformed record raises :class:`DataError` naming ``file:line: field``
(``on_error="raise"``, the default) or, with ``on_error="skip"``, is counted in ``dropped`` under a
reason. Records that are valid but unusable (a pair with identical responses, HH dialogues that differ
before the last turn) are always dropped and counted, never raised. ``kind="prompts"`` returns
Conversations (tuples of Message) taken from any record kind; repeated prompts are dropped and counted
("duplicate prompt").

Locations: ``name:N`` where ``name`` is the file (or folder) name and ``N`` the 1-based line of a JSONL
file, or the 1-based position of the record in a JSON list, Parquet file or dataset split.
pyarrow and datasets are imported only for the formats that need them.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rlhfkit.data.formats import KINDS, parse_record, text_field
from rlhfkit.data.records import DataError, Message, SFTExample, conversation_to_json, record_to_json
from rlhfkit.errors import MissingFileError
from rlhfkit.utils.io import atomic_path

DUPLICATE_PROMPT = "duplicate prompt"
INVALID_JSON = "invalid JSON"
FILE_TYPES = ".jsonl, .jsonl.gz, .json, .json.gz, .parquet or a Hugging Face dataset folder"


@dataclass
class ReadResult:
    """Records kept from one or more files, and what was dropped (reason -> count)."""

    records: list
    dropped: Counter = field(default_factory=Counter)
    source: str = ""
    read: int = 0  # records looked at (blank JSONL lines are not records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator:
        return iter(self.records)

    def report(self) -> str:
        """One line: ``name: R records read, K kept, D dropped (reason: n, ...)``."""
        n_dropped = sum(self.dropped.values())
        line = f"{self.source}: {self.read} records read, {len(self.records)} kept, {n_dropped} dropped"
        if n_dropped:
            reasons = sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
            line += " (" + ", ".join(f"{reason}: {n}" for reason, n in reasons) + ")"
        return line


def read_records(path: str | os.PathLike, kind: str, *, split: str | None = None,
                 limit: int | None = None, on_error: str = "raise") -> ReadResult:
    """Read and validate every record of ``path`` as ``kind``; stop once ``limit`` records are kept.

    ``split`` picks the split of a saved ``DatasetDict`` folder (default ``"train"``); it is an error
    for any other source. ``on_error`` is ``"raise"`` (first malformed record raises DataError) or
    ``"skip"`` (malformed records are counted in ``dropped`` as ``"field: problem"``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    path = Path(path)
    result = ReadResult(records=[], source=path.name)
    seen: set = set()
    for where, obj in _rows(path, split):
        if limit is not None and len(result.records) >= limit:
            break
        result.read += 1
        try:
            if isinstance(obj, DataError):
                raise obj
            record = parse_record(obj, kind, where)
        except DataError as err:
            if on_error == "raise":
                raise
            result.dropped[INVALID_JSON if err.field == "json" else f"{err.field}: {err.problem}"] += 1
            continue
        if isinstance(record, str):
            result.dropped[record] += 1
        elif kind == "prompts" and record in seen:
            result.dropped[DUPLICATE_PROMPT] += 1
        else:
            if kind == "prompts":
                seen.add(record)
            result.records.append(record)
    return result


def read_many(paths: Iterable[str | os.PathLike], kind: str, *, split: str | None = None,
              limit: int | None = None, on_error: str = "raise") -> ReadResult:
    """:func:`read_records` over several files, concatenated; counts and ``limit`` are totals.

    With ``kind="prompts"`` a prompt repeated across files is dropped as a duplicate too.
    """
    total = ReadResult(records=[])
    names, seen = [], set()
    for path in paths:
        left = None if limit is None else limit - len(total.records)
        if left is not None and left <= 0:
            break
        part = read_records(path, kind, split=split, limit=None if kind == "prompts" else left,
                            on_error=on_error)
        names.append(part.source)
        total.read += part.read
        total.dropped.update(part.dropped)
        for record in part.records:
            if kind == "prompts":
                if record in seen:
                    total.dropped[DUPLICATE_PROMPT] += 1
                    continue
                seen.add(record)
            if limit is not None and len(total.records) >= limit:
                break
            total.records.append(record)
    total.source = ", ".join(names)
    return total


# --------------------------------------------------------------------------------------------------
# raw rows per file type: (where, dict | DataError)


def _rows(path: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    name = path.name
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_dir():
        yield from _dataset_rows(path, split)
        return
    if split is not None:
        raise DataError(name, "split", "only a dataset folder has splits")
    lower = name.lower()
    if lower.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl_rows(path)
    elif lower.endswith((".json", ".json.gz")):
        yield from _json_list_rows(path)
    elif lower.endswith(".parquet"):
        yield from _parquet_rows(path)
    else:
        raise DataError(name, "file", f"unsupported file type (expected {FILE_TYPES})")


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _utf8(data: bytes, name: str, first_line: int = 1) -> str:
    """Decode UTF-8 (a leading BOM dropped when ``first_line`` is 1); an error names the line."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(f"{name}:{line}", "file", f"not UTF-8 text (byte {column} of the line: "
                        f"{err.reason}); save the file as UTF-8") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _json_problem(err: Exception) -> str:
    """``invalid JSON (Expecting value at column 5)``; json's "... starting at" reads on into it.
    Other parse failures (an integer over Python's digit limit, nesting too deep) in one line."""
    if not isinstance(err, json.JSONDecodeError):
        return f"invalid JSON ({_first_line(err)})"
    at = "" if err.msg.endswith(" at") else " at"
    return f"invalid JSON ({err.msg}{at} column {err.colno})"


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with _open_bytes(path) as f:
            for lineno, raw in enumerate(f, 1):
                line = _utf8(raw, path.name, lineno)
                if not line.strip():
                    continue
                where = f"{path.name}:{lineno}"
                try:
                    yield where, json.loads(line)
                except (ValueError, RecursionError) as err:  # also: over-long integers, deep nesting
                    yield where, DataError(where, "json", _json_problem(err))
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(path.name, "file", f"damaged gzip file ({err})") from None


def _json_list_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with _open_bytes(path) as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(path.name, "file", f"damaged gzip file ({err})") from None
    text = _utf8(raw, path.name)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:  # also: over-long integers, deep nesting
        where = f"{path.name}:{err.lineno}" if isinstance(err, json.JSONDecodeError) else path.name
        raise DataError(where, "json", _json_problem(err)) from None
    if not isinstance(data, list):
        raise DataError(path.name, "json", "expected a list of records (use .jsonl for one per line)")
    for i, obj in enumerate(data, 1):
        yield f"{path.name}:{i}", obj


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:  # truncated, damaged, or not Parquet at all
        raise DataError(path.name, "file", f"not a readable Parquet file ({_first_line(err)})") from None
    for i, obj in enumerate(table.to_pylist(), 1):
        yield f"{path.name}:{i}", obj


def _dataset_rows(path: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:  # a folder that is not a saved dataset (or a damaged one)
        raise DataError(path.name, "folder", f"not a readable Hugging Face dataset folder "
                        f"({_first_line(err)})") from None
    label = path.name
    if isinstance(ds, datasets.DatasetDict):
        split = split or "train"
        if split not in ds:
            raise DataError(path.name, "split", f"no split {split!r} (has: {', '.join(ds)})")
        ds, label = ds[split], f"{path.name}[{split}]"
    elif split is not None:
        raise DataError(path.name, "split", "this dataset folder holds a single dataset, not splits")
    for i, obj in enumerate(ds, 1):
        yield f"{label}:{i}", obj


# --------------------------------------------------------------------------------------------------
# Alpaca seed tasks and writing


def alpaca_seed_sft(path: str | os.PathLike) -> list[SFTExample]:
    """Stanford Alpaca ``seed_tasks.jsonl`` -> one SFTExample per instance.

    The prompt is the instruction, followed by a blank line and the instance input when that is not
    empty; the response is the instance output. The task's other keys (id, name, ...) go to ``meta``.
    """
    path = Path(path)
    examples = []
    for where, obj in _jsonl_rows(path):
        if isinstance(obj, DataError):
            raise obj
        if not isinstance(obj, dict):
            raise DataError(where, "record", "expected a JSON object")
        instruction = text_field(obj.get("instruction"), where, "instruction").strip()
        instances = obj.get("instances")
        if not isinstance(instances, list) or not instances:
            raise DataError(where, "instances", "expected a non-empty list")
        meta = {k: v for k, v in obj.items() if k not in ("instruction", "instances")}
        for j, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise DataError(where, f"instances[{j}]", "expected an object with input and output")
            extra = inst.get("input", "")
            if not isinstance(extra, str):
                raise DataError(where, f"instances[{j}].input", "expected a string")
            output = text_field(inst.get("output"), where, f"instances[{j}].output").strip()
            prompt = instruction + ("\n\n" + extra.strip() if extra.strip() else "")
            examples.append(SFTExample((Message("user", prompt),), output, source=where, meta=dict(meta)))
    return examples


def to_json(item: Any) -> dict:
    """A record, a prompt Conversation, or an already-JSON dict -> the JSON object the readers take."""
    if isinstance(item, dict):
        return item
    if isinstance(item, tuple) and all(isinstance(m, Message) for m in item):
        return {"prompt": conversation_to_json(item)}
    return record_to_json(item)


def write_records(path: str | os.PathLike, items: Iterable[Any]) -> Path:
    """Write records (or prompts, or dicts) to ``path`` atomically, in the format its suffix names:
    .jsonl, .jsonl.gz, .json or .parquet. Returns the path.
    """
    path = Path(path)
    rows = [to_json(item) for item in items]
    lower = path.name.lower()
    if lower.endswith(".parquet"):  # Arrow takes its columns from the first row: give rows all keys
        keys = list(dict.fromkeys(k for row in rows for k in row))
        rows = [{k: row.get(k) for k in keys} for row in rows]
    if not lower.endswith((".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        raise ValueError(f"{path.name}: cannot write this file type (use .jsonl, .jsonl.gz, .json "
                         f"or .parquet)")
    with atomic_path(path) as tmp:
        if lower.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            opener = gzip.open if lower.endswith(".gz") else open
            with opener(tmp, "wt", encoding="utf-8") as f:
                if ".jsonl" in lower:
                    f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                else:
                    json.dump(rows, f, ensure_ascii=False, indent=1)
    return path
