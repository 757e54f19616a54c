"""Data locations: a file path, or ``demo:<name>`` for the small demo set shipped in the package
(``demo:sft``, ``demo:pairs``, ``demo:prompts``, ``demo:rankings``, ``demo:scores``,
``demo:language``, ``demo:steps``: synthetic arithmetic chains with step labels, made by
:mod:`rlhfkit.data.synthetic`)."""

from __future__ import annotations

from pathlib import Path


def resolve_data_path(spec: str) -> Path:
    if spec.startswith("demo:"):
        from rlhfkit.resources import demo_path

        name = spec.split(":", 1)[1]
        return Path(demo_path(name if "." in name else f"{name}.jsonl"))
    path = Path(spec).expanduser()
    if not path.exists():
        from rlhfkit.errors import MissingFileError

        raise MissingFileError(f"{spec}: no such data file or folder")
    return path


def load(spec: str, kind: str, limit: int | None = None):
    """Read records of ``kind`` from ``spec``; prints nothing, returns the ReadResult. The records
    read are fingerprinted for the resume check (:mod:`rlhfkit.data.fingerprint`)."""
    from rlhfkit.data.fingerprint import note_read
    from rlhfkit.data.readers import read_records

    path = resolve_data_path(spec)
    result = read_records(path, kind, limit=limit)
    note_read(path, result.records)
    return result


def split_dev(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic hold-out split (``fraction`` of records, at least 1 when fraction > 0)."""
    import random

    if fraction <= 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(fraction * len(records))))
    dev = set(order[:n_dev])
    return ([r for i, r in enumerate(records) if i not in dev],
            [r for i, r in enumerate(records) if i in dev])


def load_prompts(spec: str, limit: int | None, key: str = "prompts") -> list:
    """The prompts of ``spec`` (any record kind; its report said), at least one, else a DataError
    naming the config ``key``."""
    from rlhfkit.run import say

    result = load(spec, "prompts", limit=limit)
    say(result.report())
    if not result.records:
        from rlhfkit.data.records import no_usable

        raise no_usable(key, spec, "prompts")
    return result.records
