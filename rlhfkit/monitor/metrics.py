"""Metric sinks: JSONL always (one object per line: ``{"step": n, "time": t, ...}``), TensorBoard on
request. A resumed run keeps the rows up to its resume point and appends, so its log reads as if it
never stopped (see :meth:`MetricLogger.start`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _row_kind(step: int, metrics: Mapping[str, Any]) -> tuple:
    return step, frozenset(k for k in metrics if k not in ("step", "time"))


class MetricLogger:
    def __init__(self, out_dir: str | Path, tensorboard: bool = False, filename: str = "metrics.jsonl"):
        self.path = Path(out_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._logged_at_resume: set = set()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def start(self, resumed_step: int | None) -> None:
        """A fresh run empties the file; a resumed one keeps rows up to ``resumed_step`` only."""
        from rlhfkit.utils.io import atomic_write_text

        self._fh.close()
        keep = []
        self._logged_at_resume = set()
        if resumed_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash
                if row.get("step", 0) <= resumed_step:
                    keep.append(line)
                if row.get("step", 0) == resumed_step:
                    self._logged_at_resume.add(_row_kind(resumed_step, row))
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        self._fh = self.path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one row; a row the resumed run already holds (same step, same metric names, e.g.
        the final evaluation of a finished run that is run again) is not written twice."""
        if _row_kind(step, metrics) in self._logged_at_resume:
            return
        row = {"step": step, "time": round(time.time(), 3)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows
