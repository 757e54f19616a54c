"""metrics.jsonl across resumes: rows up to the resume point kept, none written twice."""

from rlhfkit.monitor.metrics import MetricLogger, read_metrics


def _steps(path):
    return [(r["step"], sorted(k for k in r if k not in ("step", "time"))) for r in read_metrics(path)]


def test_rerunning_a_finished_run_does_not_repeat_its_final_eval_row(tmp_path):
    log = MetricLogger(tmp_path)
    log.start(None)
    log.log(1, {"loss": 2.0})
    log.log(2, {"loss": 1.0})
    log.log(2, {"eval/loss": 1.5})
    log.close()
    again = MetricLogger(tmp_path)  # the same command again: resumes at the final step 2
    again.start(2)
    again.log(2, {"eval/loss": 1.5})
    again.close()
    assert _steps(tmp_path / "metrics.jsonl") == [(1, ["loss"]), (2, ["loss"]), (2, ["eval/loss"])]


def test_a_resumed_run_drops_rows_after_the_checkpoint_and_logs_new_ones(tmp_path):
    log = MetricLogger(tmp_path)
    log.start(None)
    for step in (1, 2, 3):
        log.log(step, {"loss": float(step)})
    log.close()
    again = MetricLogger(tmp_path)
    again.start(1)  # killed after step 3, last checkpoint at step 1
    again.log(2, {"loss": 20.0})
    again.log(2, {"eval/loss": 5.0})
    again.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r.get("loss", r.get("eval/loss"))) for r in rows] == [(1, 1.0), (2, 20.0), (2, 5.0)]
