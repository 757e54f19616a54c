"""MLflow and W&B beside metrics.jsonl: what MetricLogger logs is read back through MLflow's own
client and from the W&B offline run folder; a resumed run continues the same tracker run; a missing
package or an unknown tracker is one line naming train.trackers."""

import json
import struct

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.monitor.metrics import MetricLogger
from rlhfkit.monitor.trackers import TrackerSettings


def _log_two_steps(out, settings, resumed=None):
    log = MetricLogger(out, tracking=settings)
    log.start(resumed)
    log.log(1, {"loss": 2.0, "note": "text is not a metric"})
    log.log(2, {"loss": 1.0, "eval/accuracy": 0.75})
    log.close()


def test_mlflow_run_reads_back_through_mlflow_client(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow-skinny is not installed")
    from mlflow.tracking import MlflowClient

    settings = TrackerSettings(trackers=["mlflow"], project="unit", params={"train.lr": 1e-5})
    _log_two_steps(tmp_path, settings)
    run_id = json.loads((tmp_path / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 2.0), (2, 1.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/accuracy")] == [(2, 0.75)]
    run = client.get_run(run_id)
    assert run.data.params == {"train.lr": "1e-05"} and "note" not in run.data.metrics
    assert run.info.status == "FINISHED" and run.info.run_name == tmp_path.name
    assert client.get_experiment(run.info.experiment_id).name == "unit"

    again = MetricLogger(tmp_path, tracking=settings)  # resumed from step 1: the same MLflow run
    again.start(1)
    again.log(2, {"loss": 0.5})
    again.close()
    assert json.loads((tmp_path / "trackers.json").read_text())["mlflow"] == run_id
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")][-1] == (2, 0.5)
    assert len(client.search_runs([run.info.experiment_id])) == 1


def wandb_records(path):
    """Payloads of a W&B ``.wandb`` file: a 7-byte header (":W&B", magic 0xBEE1, version), then
    LevelDB-log records in 32 KiB blocks, each [crc32 u32][length u16][type u8] + data, a payload
    split into FIRST (2) / MIDDLE (3) / LAST (4) pieces where it crosses a block; FULL = 1."""
    data, pos, pending, block = path.read_bytes(), 7, b"", 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield chunk
        elif kind in (2, 3):
            pending = (b"" if kind == 2 else pending) + chunk
        elif kind == 4:
            yield pending + chunk


def test_wandb_offline_run_folder_holds_the_rows(tmp_path):
    pytest.importorskip("wandb", reason="wandb is not installed")
    from wandb.proto import wandb_internal_pb2 as pb

    _log_two_steps(tmp_path, TrackerSettings(trackers=["wandb"], params={"train.lr": 1e-5}))
    run_id = json.loads((tmp_path / "trackers.json").read_text())["wandb"]
    (run_file,) = tmp_path.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    history, config = [], {}
    for payload in wandb_records(run_file):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            history.append({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"})
        elif record.WhichOneof("record_type") == "run":
            config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
    assert history == [{"_step": 1, "loss": 2.0}, {"_step": 2, "loss": 1.0, "eval/accuracy": 0.75}]
    assert config.get("train.lr") == 1e-5


def _key(item):
    return item.key or ".".join(item.nested_key)


def test_missing_package_is_one_line_naming_the_key(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^train\.trackers: wandb needs the wandb package"):
        MetricLogger(tmp_path, tracking=TrackerSettings(trackers=["wandb"]))


def test_trackers_are_config_keys_of_every_training_stage():
    from rlhfkit.stages.ppo import PPOConfig
    from rlhfkit.stages.sft import SFTConfig

    cfg = load_config(SFTConfig, None, ["train.trackers=[mlflow, wandb]", "train.mlflow_uri=sqlite:///x.db"])
    settings = TrackerSettings.from_train(cfg.train, cfg)
    assert settings.trackers == ["mlflow", "wandb"] and settings.mlflow_uri == "sqlite:///x.db"
    assert settings.params["train.micro_batch_size"] == 8 and settings.wandb_mode == "offline"
    assert load_config(PPOConfig, None, []).train.trackers == []
    with pytest.raises(ConfigError, match=r"train\.trackers\[0\]: expected one of 'mlflow', 'wandb'"):
        load_config(SFTConfig, None, ["train.trackers=[neptune]"])
