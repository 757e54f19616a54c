"""Fingerprints of the data a run read, so that a resumed run can refuse changed data.

Every file a stage reads through :func:`rlhfkit.data.sources.load` is noted here: its size, its
modification time and a SHA-256 of the records actually read (after validation, up to the limit),
so appending lines past ``max_examples`` or touching a file changes nothing, while editing a record
that was trained on does. The training loop stores :func:`snapshot` in every checkpoint and calls
:func:`check_unchanged` before resuming. The notes are per process and start empty with each run
(:func:`begin_run`, called when a stage prepares its output folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

_READ: dict[str, "DataFingerprint"] = {}


@dataclass(frozen=True)
class DataFingerprint:
    path: str  # absolute
    size: int  # bytes (a dataset folder: all its files)
    mtime_ns: int  # newest modification time
    records: int  # records read
    sha256: str  # of the records read, in order

    def describe(self) -> str:
        return f"{self.records} records, {self.size} bytes, sha256 {self.sha256[:12]}"


def _size_mtime(path: Path) -> tuple[int, int]:
    if not path.is_dir():
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    size, mtime = 0, path.stat().st_mtime_ns
    for root, _, files in os.walk(path):
        for name in files:
            st = (Path(root) / name).stat()
            size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
    return size, mtime


def fingerprint(path: str | os.PathLike, records: Iterable) -> DataFingerprint:
    """Size, mtime and a hash of ``records`` in their JSON form (without ``source``, so moving a
    record to another line, or adding blank lines, is no change)."""
    from rlhfkit.data.readers import to_json

    path = Path(path).resolve()
    digest, count = hashlib.sha256(), 0
    for record in records:
        text = json.dumps(to_json(record), sort_keys=True, ensure_ascii=True, default=str)
        digest.update(text.encode("ascii"))
        digest.update(b"\n")
        count += 1
    size, mtime = _size_mtime(path)
    return DataFingerprint(str(path), size, mtime, count, digest.hexdigest())


def begin_run() -> None:
    _READ.clear()


def note_read(path: str | os.PathLike, records: Iterable) -> DataFingerprint:
    fp = fingerprint(path, records)
    _READ[fp.path] = fp
    return fp


def snapshot() -> list[dict]:
    """What a checkpoint stores: one dict per file read so far in this run."""
    return [asdict(fp) for fp in _READ.values()]


def check_unchanged(saved: list[dict] | None, checkpoint: str | Path) -> None:
    """Raise ConfigError naming the first file whose records differ from those the checkpoint was
    trained on. Files the checkpoint does not list, or this run has not read yet, are not compared."""
    from rlhfkit.config import ConfigError

    for row in saved or []:
        old = DataFingerprint(**row)
        now = _READ.get(old.path)
        if now is None or now.sha256 == old.sha256:
            continue
        raise ConfigError(
            f"{old.path}: this data file changed since checkpoint {checkpoint} was written "
            f"({old.describe()} -> {now.describe()}); resuming would continue that run on different "
            "data: restore the file, use a new train.output_dir, or set train.resume=never to start over")
