"""Helpers every benchmark script shares: the fp32 matmul peak measured in the same run, timing
(the machine's load, a per-step timer for transformers/TRL trainers), and the final
machine-readable RESULT line."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
from rlhfkit.eval.cost import matmul_peak_gflops  # noqa: E402,F401  (the one peak measurement, shared)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def result_line(name: str, **fields) -> str:
    parts = [f"name={name}"]
    for key, value in fields.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return "RESULT " + " ".join(parts)


def load_avg() -> str:
    """The 1/5/15-minute load averages, printed around each timed run (is the machine shared?)."""
    try:
        return "load average %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        return "load average n/a"


def trainer_step_timer():
    """A transformers ``TrainerCallback`` whose ``.seconds`` collects each optimizer step's wall time."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.starts: list[float] = []
            self.seconds: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            self.starts.append(time.perf_counter())

        def on_step_end(self, *args, **kwargs):
            self.seconds.append(time.perf_counter() - self.starts[-1])

    return StepTimer()


def hh_file(split: str = "train", required: bool = True) -> "Path | None":
    """The shared HH-RLHF harmless ``split`` file; without it: exit with the reason (``required``)
    or None (the caller falls back to demo data and says so)."""
    from rlhfkit.paths import shared_data_dir

    path = shared_data_dir() / "hh-rlhf-harmless" / f"{split}.jsonl.gz"
    if path.exists():
        return path
    if required:
        sys.exit(f"benchmark needs the shared data: {path} not found (set RLHFKIT_DATA)")
    return None


def hh_records(kind: str, split: str = "train", limit: int | None = None) -> list:
    """HH records read by rlhfkit's own reader (``kind`` = pairs or prompts), as every stage sees them."""
    from rlhfkit.data.sources import load

    return list(load(str(hh_file(split)), kind, limit=limit).records)
