"""Early stopping on a dev metric: the evaluations so far, the best one, and how many since have not
beaten it.

Its state (best, bad evaluations) is part of every checkpoint, and so is the loop's decision to stop
(``stopped`` in the run state), so a resumed or rerun run makes the same decision and never trains
past the step where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EarlyStopping:
    metric: str = "loss"
    higher_is_better: bool = False
    patience: int = 0  # evaluations without improvement before stopping (0 = never stop)
    best: dict | None = None  # {"step": s, **metrics} of the best evaluation
    bad_evals: int = 0
    history: list = field(default_factory=list)

    def update(self, step: int, metrics: dict) -> bool:
        """Record an evaluation; return True when it is the best so far."""
        self.history.append({"step": step, **metrics})
        value = metrics[self.metric]
        if self.best is None or (value > self.best[self.metric] if self.higher_is_better
                                 else value < self.best[self.metric]):
            self.best, self.bad_evals = {"step": step, **metrics}, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals, "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals, self.history = state["best"], state["bad_evals"], list(state["history"])
