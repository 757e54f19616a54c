"""The state of an iterated-rounds run: which steps of which rounds are finished.

A round is the steps :data:`STEPS` in order. ``state.json`` in the run folder records each finished
step with the time it finished and what it produced (paths, counts, metrics); it is rewritten
atomically after every step, so a run killed at any point resumes at the first step that is not
recorded, mid-round included, and never redoes a recorded one. A step's own files are written
before its record: a step killed half-way simply runs again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhfkit.errors import RlhfkitError

STEPS = ("sample", "select", "label", "rm", "policy", "eval")
STATE_FILE = "state.json"


def next_step(done: dict, n_rounds: int) -> tuple[int, str] | None:
    """The first (round, step) not in ``done`` (``{round: {step: info}}``), rounds 1..n_rounds in
    order and steps in :data:`STEPS` order; None when every step of every round is finished."""
    for r in range(1, n_rounds + 1):
        for step in STEPS:
            if step not in done.get(r, {}):
                return r, step
    return None


class StateError(RlhfkitError):
    """A state file that cannot be read (the message names it)."""


@dataclass
class RoundsState:
    done: dict = field(default_factory=dict)  # {round (int): {step: info dict with "finished_at"}}

    def next_step(self, n_rounds: int) -> tuple[int, str] | None:
        return next_step(self.done, n_rounds)

    def info(self, r: int, step: str) -> dict:
        return self.done.get(r, {}).get(step, {})

    def mark(self, r: int, step: str, info: dict | None = None) -> None:
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}")
        self.done.setdefault(r, {})[step] = {**(info or {}), "finished_at": time.time()}

    def rounds_finished(self) -> list[int]:
        return sorted(r for r, steps in self.done.items() if all(s in steps for s in STEPS))

    def to_json(self) -> dict:
        return {"steps": list(STEPS), "rounds": {str(r): steps for r, steps in sorted(self.done.items())}}

    @classmethod
    def from_json(cls, data: dict) -> "RoundsState":
        return cls({int(r): dict(steps) for r, steps in (data.get("rounds") or {}).items()})

    def save(self, folder: str | Path) -> None:
        from rlhfkit.utils.io import write_json

        write_json(Path(folder) / STATE_FILE, self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> "RoundsState":
        """The state in ``folder`` (an empty one when there is none yet)."""
        path = Path(folder) / STATE_FILE
        if not path.exists():
            return cls()
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, AttributeError, TypeError) as err:
            raise StateError(f"{path}: not a rounds state file ({err}); remove it to start over") from None
