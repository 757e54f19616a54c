"""The one checkpointed loop: every training stage calls :func:`run_loop` with its own step function.

    clean stale temporary folders; resume from the newest valid checkpoint (same data, or refuse)
    while step < total and the run has not stopped:
        stats = step_fn(step)                  (SFT/RM/DPO: one optimizer step over micro-batches;
        step += 1                               PPO/GRPO/RLOO: one rollout + update iteration)
        log every log_every; evaluate every eval_every (early stopping); checkpoint every save_every
        SIGINT/SIGTERM received -> checkpoint, raise TrainingInterrupted
    final evaluation (unless one was just made); final checkpoint; restore the best weights

A checkpoint holds the model (``save_model``), the state of every object in ``stateful`` (optimizer,
scheduler, KL controller, ...), the RNG states, the step, the evaluation history and early-stopping
state, whether and why the run stopped early, and the fingerprints of the data read. So a resumed
run continues exactly, a run that stopped early stays stopped, and changed data is refused.

Under torchrun (several data-parallel processes, :mod:`rlhfkit.distributed`) every rank runs the
loop and its collective steps; rank 0 alone logs, shows progress and writes checkpoints while the
others wait at a barrier; a signal that reaches any rank stops all of them at the same step. A
checkpoint holds the global batch (micro_batch_size x grad_accum x processes), so it resumes on
any number of processes that keeps that global batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("rlhfkit")


@dataclass
class StepResult:
    """What a step function returns for one step."""

    window: list[dict] = field(default_factory=list)  # stats averaged over the logging window
    current: dict = field(default_factory=dict)  # stats as of this step (lr, an RL iteration's stats)
    tokens: int | None = None  # processed in this step, for tokens/s (None: not reported)
    examples: int | None = None


class StopRun(Exception):
    """Raised by a step function to end the run before its last step; the message says why."""


@dataclass
class EvalSpec:
    """Periodic evaluation: ``run()`` -> metrics; early stopping watches ``metric``."""

    run: Callable[[], dict]
    metric: str = "loss"
    higher_is_better: bool = False


@dataclass
class LoopOutcome:
    steps: int
    last_stats: dict
    eval_history: list
    best_eval: dict | None
    resumed_from: Path | None
    stopped: str | None  # why the run ended before its last step (None: it ran to the end)
    seconds: float


class _NullLogger:
    """The metric sink of ranks other than 0: they log nothing."""

    def start(self, resumed_step: int | None) -> None:
        pass

    def log(self, step: int, metrics: dict) -> None:
        pass


def global_batch(train: Any) -> int:
    """Examples (or pairs, groups) per optimizer step over all data-parallel processes."""
    from rlhfkit.distributed.group import world_size

    return train.micro_batch_size * train.grad_accum * world_size()


def check_global_batch(saved: dict, train: Any, path: Path) -> None:
    """A checkpoint resumes on another number of processes only at the same global batch."""
    from rlhfkit.distributed.group import world_size

    was, now = saved.get("global_batch"), global_batch(train)
    if was is not None and was != now:
        from rlhfkit.config import ConfigError

        raise ConfigError(
            f"train.grad_accum: {path} was written at global batch {was} ({saved.get('processes', 1)} "
            f"processes), this run has {now} (micro_batch_size={train.micro_batch_size} x grad_accum="
            f"{train.grad_accum} x processes={world_size()}): set train.grad_accum so that the global "
            "batch stays the same")


class _Window:
    """Means of scalar stats over the steps since the last log line, and tokens/examples per second."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.tokens: int | None = None
        self.examples: int | None = None
        self.t0 = time.time()

    def add(self, result: StepResult) -> None:
        for stats in result.window:
            self.count += 1
            for key, value in stats.items():
                value = float(value.item() if hasattr(value, "item") else value)
                self.sums[key] = self.sums.get(key, 0.0) + value
        if result.tokens is not None:
            self.tokens = (self.tokens or 0) + result.tokens
            self.examples = (self.examples or 0) + (result.examples or 0)

    def stats(self, current: dict) -> dict:
        out = {**{k: v / max(1, self.count) for k, v in self.sums.items()}, **current}
        if self.tokens is not None:
            elapsed = max(1e-9, time.time() - self.t0)
            out.update(tokens_per_s=self.tokens / elapsed, examples_per_s=(self.examples or 0) / elapsed)
        return out


class _Loop:
    def __init__(self, *, train: Any, total: int, step_fn: Callable[[int], StepResult],
                 save_model: Callable[[Path], None], load_model: Callable[[Path], None],
                 stateful: dict, logger: Any, evaluate: EvalSpec | None, params: list | None,
                 desc: str, postfix: Callable[[dict], dict] | None, initial_eval: dict | None,
                 on_resume: Callable[[int | None], None] | None):
        from rlhfkit.distributed.group import is_main, world_size
        from rlhfkit.train.early_stopping import EarlyStopping

        self.main, self.world = is_main(), world_size()
        if not self.main:
            logger = _NullLogger()
        self.train, self.total, self.step_fn, self.logger = train, total, step_fn, logger
        self.save_model, self.load_model, self.stateful = save_model, load_model, stateful
        self.evaluate, self.params, self.desc, self.postfix = evaluate, params, desc, postfix
        self.initial_eval, self.on_resume = initial_eval, on_resume
        self.early = EarlyStopping(evaluate.metric if evaluate else "loss",
                                   evaluate.higher_is_better if evaluate else False,
                                   getattr(train, "early_stopping_patience", 0))
        self.step, self.stopped, self.best_params = 0, None, None
        self.resumed: Path | None = None
        self.saved: tuple[int, Path] | None = None  # (changes counter, folder) of the last checkpoint
        self.changes = 0  # steps, evaluations and stop decisions since the run began
        self.last_stats: dict = {}

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self) -> dict:
        from rlhfkit.data.fingerprint import snapshot
        from rlhfkit.train.checkpoint import rng_state

        return {"step": self.step, "rng": rng_state(), "stopped": self.stopped,
                "global_batch": global_batch(self.train), "processes": self.world,
                "objects": {name: obj.state_dict() for name, obj in self.stateful.items()},
                "early_stopping": self.early.state_dict(), "best_params": self.best_params,
                "data": snapshot()}

    def checkpoint(self) -> Path:
        """Save unless nothing changed since the last checkpoint; returns its folder. Rank 0 writes,
        the other ranks wait for it."""
        from rlhfkit.distributed.group import barrier
        from rlhfkit.train.checkpoint import checkpoint_dir, save_checkpoint, step_dir_name

        if self.saved is not None and self.saved[0] == self.changes:
            return self.saved[1]
        path = checkpoint_dir(self.train.output_dir) / step_dir_name(self.step)
        try:
            if self.main:
                path = save_checkpoint(self.train.output_dir, self.step, self.save_model, self.state(),
                                       self.train.keep_checkpoints)
        finally:
            barrier()
        self.saved = (self.changes, path)
        return path

    def resume(self) -> None:
        from rlhfkit.data.fingerprint import check_unchanged
        from rlhfkit.train.checkpoint import set_rng_state

        found = self.find_checkpoint()
        if found is not None:
            path, saved = found
            check_unchanged(saved.get("data"), path)
            check_global_batch(saved, self.train, path)
            self.load_model(path)
            objects = {**{k: saved[k] for k in ("optimizer", "scheduler") if k in saved},
                       **saved.get("objects", {})}  # (older checkpoints kept these two at the top)
            for name, obj in self.stateful.items():
                obj.load_state_dict(objects[name])
            set_rng_state(saved["rng"])
            self.early.load_state_dict(saved.get("early_stopping") or {
                "best": saved.get("best"), "bad_evals": saved.get("bad_evals", 0),
                "history": saved.get("eval_history", [])})
            self.step, self.stopped = saved["step"], saved.get("stopped")
            self.best_params = saved.get("best_params")
            self.resumed, self.saved = path, (0, path)
            log.info("resumed from %s at step %d", path, self.step)
            if self.stopped:
                log.info("that run stopped at step %d (%s): not training further", self.step, self.stopped)
        self.logger.start(self.step if self.resumed else None)
        if self.resumed is None and self.initial_eval:  # the numbers before training, as step 0
            self.early.history.append({"step": 0, **self.initial_eval})
            self.logger.log(0, {f"eval/{k}": v for k, v in self.initial_eval.items()})
        if self.on_resume is not None:
            self.on_resume(self.step if self.resumed else None)

    def find_checkpoint(self) -> tuple[Path, dict] | None:
        """Clean stale temporaries and find the checkpoint to resume from: rank 0 first (it moves
        damaged ones aside), then the others, once no rank is writing any more."""
        from rlhfkit.distributed.group import barrier
        from rlhfkit.train.checkpoint import checkpoint_dir, load_resumable
        from rlhfkit.utils.io import clean_stale

        barrier()  # every rank has finished the stage's own writes (config.yaml, caches)
        found = None
        if self.main:
            for folder in (Path(self.train.output_dir), checkpoint_dir(self.train.output_dir)):
                for name in clean_stale(folder):
                    log.info("removed a temporary folder left by an interrupted write: %s", folder / name)
            found = load_resumable(self.train, log.warning)
        barrier()
        if not self.main:
            found = load_resumable(self.train, log.warning)
        return found

    # -- evaluation and logging ------------------------------------------------------------------

    def run_eval(self) -> None:
        metrics = self.evaluate.run()
        self.changes += 1
        self.logger.log(self.step, {f"eval/{k}": v for k, v in metrics.items()})
        if self.early.update(self.step, metrics) and self.early.patience and self.params is not None:
            self.best_params = [p.detach().clone() for p in self.params]
        if self.early.should_stop:
            self.stopped = (f"early stopping: {self.evaluate.metric} has not improved for "
                            f"{self.early.bad_evals} evaluations (best at step {self.early.best['step']})")
            log.info("early stopping at step %d (best step %d)", self.step, self.early.best["step"])

    def after_step(self, result: StepResult, window: _Window, bar: Any) -> _Window:
        window.add(result)
        if self.step % self.train.log_every == 0 or self.step == self.total:
            self.last_stats = window.stats(result.current)
            self.logger.log(self.step, self.last_stats)
            if bar is not None and self.postfix is not None:
                bar.set_postfix(**self.postfix(self.last_stats))
            window = _Window()
        if bar is not None:
            bar.update(1)
        every = self.train.eval_every
        if self.evaluate is not None and every and self.step % every == 0 and self.step < self.total:
            self.run_eval()
        every = self.train.save_every
        if every and self.step % every == 0 and self.step < self.total and not self.stopped:
            self.checkpoint()
        return window

    # -- the loop ----------------------------------------------------------------------------------

    def interrupt(self, guard: Any) -> None:
        """Save after a signal and raise TrainingInterrupted (its message says what was saved)."""
        problem = "" if self.step or self.resumed else "no training step had finished"
        path = None
        if not problem:
            try:
                path = self.checkpoint()
            except Exception as err:  # disk full, read-only folder: say so rather than lose the message
                problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise guard.interrupted(self.step, path, problem)

    def signalled(self, guard: Any) -> bool:
        """A signal received by this process, or (data-parallel) by any of them."""
        if self.world == 1:
            return guard.received is not None
        from rlhfkit.distributed.data_parallel import Replicas

        return Replicas().any(guard.received is not None)

    def run(self) -> LoopOutcome:
        from rlhfkit.train.interrupt import SignalGuard

        start = time.time()
        with SignalGuard() as guard:
            self.resume()
            bar = None
            if self.train.progress and self.main:
                from tqdm.auto import tqdm

                bar = tqdm(total=self.total, initial=self.step, desc=self.desc, dynamic_ncols=True)
            window = _Window()
            while self.step < self.total and not self.stopped:
                if self.signalled(guard):
                    self.interrupt(guard)
                try:
                    result = self.step_fn(self.step)
                except StopRun as stop:
                    self.stopped, self.changes = str(stop), self.changes + 1
                    break
                self.step, self.changes = self.step + 1, self.changes + 1
                window = self.after_step(result, window, bar)
            if bar is not None:
                bar.close()
            history = self.early.history
            if self.evaluate is not None and (not history or history[-1]["step"] != self.step):
                self.run_eval()  # the end point, unless the last step was just evaluated
            if self.saved is None or self.saved[0] != self.changes:
                self.checkpoint()  # the finished state too, so a longer max_steps can continue from here
            if self.signalled(guard):
                self.interrupt(guard)
        self.restore_best()
        return LoopOutcome(steps=self.step, last_stats=self.last_stats, eval_history=self.early.history,
                           best_eval=self.early.best, resumed_from=self.resumed, stopped=self.stopped,
                           seconds=time.time() - start)

    def restore_best(self) -> None:
        import torch

        best = self.early.best
        if self.best_params is None or self.params is None or best is None or best["step"] == self.step:
            return
        with torch.no_grad():
            for p, kept in zip(self.params, self.best_params):
                p.copy_(kept)
        log.info("restored the best weights (step %d, %s=%s)", best["step"], self.early.metric,
                 best[self.early.metric])


def run_loop(*, train: Any, total: int, step_fn: Callable[[int], StepResult],
             save_model: Callable[[Path], None], load_model: Callable[[Path], None], stateful: dict,
             logger: Any, evaluate: EvalSpec | None = None, params: list | None = None,
             desc: str = "train", postfix: Callable[[dict], dict] | None = None,
             initial_eval: dict | None = None,
             on_resume: Callable[[int | None], None] | None = None,
             data_parallel: bool = False) -> LoopOutcome:
    """Run ``step_fn(step)`` for the steps left of ``total`` (module docstring). ``train`` is the
    stage's TrainConfig; ``stateful`` maps names to objects with ``state_dict``/``load_state_dict``
    that checkpoints keep; ``params`` are the weights restored to the best evaluation under early
    stopping; ``initial_eval`` (a fresh run's numbers before training) is logged as step 0;
    ``on_resume(step or None)`` runs once the resume point is known (e.g. to trim other logs);
    ``data_parallel``: the step function runs under several processes (the supervised step does),
    else a torchrun launch with several processes is refused."""
    if not data_parallel:
        from rlhfkit.distributed.group import refuse

        refuse(f"the {desc} loop")
    loop = _Loop(train=train, total=total, step_fn=step_fn, save_model=save_model, load_model=load_model,
                 stateful=stateful, logger=logger, evaluate=evaluate, params=params, desc=desc,
                 postfix=postfix, initial_eval=initial_eval, on_resume=on_resume)
    return loop.run()
