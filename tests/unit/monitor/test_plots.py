"""RL curves: a PNG from metrics.jsonl, the smoothing helper, and no file without data."""

import json

import pytest

from rlhfkit.monitor.plots import plot_rl_curves, smooth


def test_smooth_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([2.0, 4.0, 6.0], 1) == [2.0, 4.0, 6.0]
    assert smooth([3.0, 6.0, 9.0], 5) == pytest.approx([3.0, 4.5, 6.0])


def test_plot_writes_png(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "score": 0.1 * i, "kl": 0.5 * i, "reward": 0.1 * i - 0.02} for i in range(1, 11)]
    rows.append({"step": 10, "eval/score": 0.9})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_rl_curves(metrics, tmp_path / "sub" / "curves.png", target_kl=3.0, title="PPO")
    assert out == tmp_path / "sub" / "curves.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list((tmp_path / "sub").glob(".*"))  # no temp file left behind


def test_plot_without_scores_writes_nothing(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    assert plot_rl_curves(metrics, tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()
    assert plot_rl_curves(tmp_path / "missing.jsonl", tmp_path / "c.png") is None
