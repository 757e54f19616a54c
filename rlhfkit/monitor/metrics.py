"""Metric sinks: JSONL always (one object per line: ``{"step": n, "time": t, ...}``), TensorBoard,
MLflow and W&B on request (``train.tensorboard``, ``train.trackers``; rlhfkit/monitor/trackers.py).
This is the one place every stage's metrics pass through. A resumed run keeps the rows up to its resume point and appends, so its log reads as if it
never stopped (see :meth:`MetricLogger.start`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from rlhfkit.monitor.trackers import Tracker, TrackerSettings


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _row_kind(step: int, metrics: Mapping[str, Any]) -> tuple:
    return step, frozenset(k for k in metrics if k not in ("step", "time"))


class MetricLogger:
    def __init__(self, out_dir: str | Path, tensorboard: bool = False, filename: str = "metrics.jsonl",
                 tracking: "TrackerSettings | None" = None):
        """``tracking``: the experiment trackers to feed as well (opened by :meth:`start`, which
        knows whether the run resumes, or by the first :meth:`log`)."""
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._logged_at_resume: set = set()
        self._tb = None
        self._tracking = tracking if tracking is not None and tracking.trackers else None
        self._trackers: list[Tracker] | None = None
        if self._tracking is not None:
            from rlhfkit.monitor.trackers import require

            for name in self._tracking.trackers:
                require(name)  # a missing package fails before any work, naming the key
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    @classmethod
    def for_run(cls, out_dir: str | Path, train: Any, config: Any = None) -> "MetricLogger":
        """The logger a stage uses: sinks from its ``train`` group (TrainConfig); ``config`` (the
        whole stage config) is logged as the trackers' run parameters."""
        from rlhfkit.monitor.trackers import TrackerSettings

        return cls(out_dir, tensorboard=train.tensorboard, tracking=TrackerSettings.from_train(train, config))

    def _open_trackers(self, resume: bool) -> None:
        if self._tracking is not None and self._trackers is None:
            from rlhfkit.monitor.trackers import open_trackers

            self._trackers = open_trackers(self._tracking, self.out_dir, resume)

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
        self._open_trackers(resume=resumed_step is not None)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one row; a row the resumed run already holds (same step, same metric names, e.g.
        the final evaluation of a finished run that is run again) is not written twice."""
        if _row_kind(step, metrics) in self._logged_at_resume:
            return
        row = {"step": step, "time": round(time.time(), 3)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        scalars = {k: v for k, v in row.items() if k not in ("step", "time") and isinstance(v, (int, float))}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self._tracking is not None and scalars:
            self._open_trackers(resume=False)
            for tracker in self._trackers or ():
                tracker.log(step, scalars)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        for tracker in self._trackers or ():
            tracker.close()
        self._trackers, self._tracking = None, None


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows
