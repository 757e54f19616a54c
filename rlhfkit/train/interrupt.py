"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step, save a checkpoint, then stop.

:class:`SignalGuard` replaces the two handlers while the training loop runs (and puts the previous
ones back afterwards). The first signal only sets :attr:`SignalGuard.received`; the loop checks it at
each step boundary, saves, and raises :class:`TrainingInterrupted`, whose message says where the
checkpoint is (or that none could be saved). A second signal while that happens interrupts at once
(``KeyboardInterrupt``): the atomic writers leave the previous checkpoint as it was.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

SIGNALS = ("SIGINT", "SIGTERM")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the training loop after a signal, once the step is finished and saved."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None, problem: str = ""):
        self.signum, self.step, self.checkpoint, self.problem = signum, step, checkpoint, problem
        super().__init__(self.message())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def message(self) -> str:
        if self.checkpoint is not None:
            return (f"interrupted at step {self.step}; checkpoint saved to {self.checkpoint}; "
                    "rerun the same command to resume")
        why = f" ({self.problem})" if self.problem else ""
        return (f"interrupted at step {self.step}; no checkpoint could be saved{why}; rerunning the "
                "same command resumes from the newest earlier checkpoint, if there is one")


class SignalGuard:
    """``with SignalGuard() as guard: ... if guard.received: save and raise guard.interrupted(...)``.

    Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                signum = getattr(signal, name, None)
                if signum is not None:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def interrupted(self, step: int, checkpoint: Path | None, problem: str = "") -> TrainingInterrupted:
        return TrainingInterrupted(self.received or signal.SIGINT, step, checkpoint, problem)
