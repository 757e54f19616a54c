"""Experiment trackers beside metrics.jsonl: MLflow (a local SQLite store by default) and Weights &
Biases (offline by default), opt-in with ``train.trackers=[mlflow, wandb]``.

Each tracker is a small object with ``log(step, scalars)`` and ``close()``; :class:`MetricLogger`
(rlhfkit/monitor/metrics.py) owns them, so every stage that logs metrics feeds them. The packages
are imported only when a tracker is asked for; a missing one is a one-line error naming the key.

A resumed run continues the same tracker run: the run ids are kept in ``<output_dir>/trackers.json``.
Rows a resumed run logs again (the steps after its checkpoint) are logged again: MLflow and W&B keep
the newer value beside the old one at that step, while metrics.jsonl keeps only the newer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from rlhfkit.config import ConfigError, flatten_keys

IDS_FILE = "trackers.json"
TRACKERS = ("mlflow", "wandb")
_PACKAGES = {"mlflow": ("mlflow", "mlflow-skinny"), "wandb": ("wandb", "wandb")}


class Tracker(Protocol):
    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


@dataclass
class TrackerSettings:
    """Which trackers, and where they write (the ``train.*`` keys of that name)."""

    trackers: list[str] = field(default_factory=list)
    project: str = "rlhfkit"           # MLflow experiment / W&B project
    mlflow_uri: str = ""               # "" = sqlite:///<output_dir>/mlflow.db
    wandb_mode: str = "offline"        # offline (files under <output_dir>/wandb) or online
    run_name: str = ""                 # "" = the output folder's name
    params: dict = field(default_factory=dict)  # the stage config, flattened (logged once)

    @classmethod
    def from_train(cls, train: Any, config: Any = None) -> "TrackerSettings":
        """From a TrainConfig (rlhfkit/train/config.py); ``config`` = the whole stage config."""
        import dataclasses

        params = flatten_keys(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else {}
        return cls(trackers=list(train.trackers), project=train.tracker_project,
                   mlflow_uri=train.mlflow_uri, wandb_mode=train.wandb_mode, params=params)


def require(name: str) -> None:
    """Fail in one line, naming the config key, when tracker ``name``'s package is missing."""
    import importlib.util

    module, package = _PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"train.trackers: {name} needs the {package} package, which is not installed "
                          f"(pip install {package}, or remove {name} from train.trackers)")


def open_trackers(settings: TrackerSettings, out_dir: Path, resume: bool) -> list[Tracker]:
    """Start (or, when ``resume``, continue) one run per tracker named in ``settings``."""
    from rlhfkit.utils.io import write_json

    ids_path = out_dir / IDS_FILE
    ids = json.loads(ids_path.read_text()) if resume and ids_path.exists() else {}
    name = settings.run_name or out_dir.resolve().name
    opened: list[Tracker] = []
    for kind in settings.trackers:
        require(kind)
        if kind == "mlflow":
            tracker = MlflowTracker(settings, out_dir, name, ids.get("mlflow"))
            ids["mlflow"] = tracker.run_id
        else:
            tracker = WandbTracker(settings, out_dir, name, ids.get("wandb"))
            ids["wandb"] = tracker.run_id
        opened.append(tracker)
    if opened:
        write_json(ids_path, ids)
    return opened


class MlflowTracker:
    """One MLflow run through ``MlflowClient`` (no global active run, so two stages in one process,
    as in ``rlhfkit pipeline``, keep separate runs)."""

    def __init__(self, settings: TrackerSettings, out_dir: Path, name: str, run_id: str | None):
        import logging

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # table-creation chatter
        uri = settings.mlflow_uri or f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            exp = self.client.get_experiment_by_name(settings.project)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(settings.project)
            run_id = self.client.create_run(exp_id, run_name=name).info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in sorted(settings.params.items())]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per call
                self.client.log_batch(run_id, params=params[i:i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in scalars.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    """One W&B run; offline by default (``wandb sync <output_dir>/wandb/offline-run-*`` uploads it)."""

    def __init__(self, settings: TrackerSettings, out_dir: Path, name: str, run_id: str | None):
        import wandb

        self.run = wandb.init(
            mode=settings.wandb_mode, dir=str(out_dir), project=settings.project, name=name,
            id=run_id, resume="allow" if run_id else None, config=settings.params, reinit="create_new",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
        self.run_id = self.run.id

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self) -> None:
        import wandb

        self.run.finish()
        wandb.teardown()  # finish() returns before the service has written the run file; this waits
