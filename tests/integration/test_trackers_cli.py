"""A stage run through the CLI feeds MLflow when asked (train.trackers), read back through MlflowClient."""

import json

import pytest

from tests.conftest import run_cli


def test_sft_on_tiny_logs_its_metrics_to_mlflow(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow-skinny is not installed")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "sft"
    assert run_cli("sft", "model=tiny", "samples.prompts=0", "train.progress=false", f"train.output_dir={out}",
                   "train.max_steps=2", "train.micro_batch_size=4", "train.trackers=[mlflow]") == 0
    run_id = json.loads((out / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    jsonl = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in jsonl] and len(history) == 2
    run = client.get_run(run_id)
    assert run.data.params["model"] == "tiny" and run.data.params["train.max_steps"] == "2"
    assert run.info.status == "FINISHED"
