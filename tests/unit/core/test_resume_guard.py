"""A run folder with checkpoints only resumes under the config that wrote them."""

from __future__ import annotations

import pytest
import yaml

from rlhfkit.config import ConfigError, load_config
from rlhfkit.run import config_changes, prepare_output
from rlhfkit.stages.sft import SFTConfig


def make(tmp_path, *overrides):
    return load_config(SFTConfig, None, [f"train.output_dir={tmp_path}", *overrides])


def saved(tmp_path):
    return yaml.safe_load((tmp_path / "config.yaml").read_text())


def fake_checkpoint(tmp_path):
    (tmp_path / "checkpoints" / "step-000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-000004" / "training_state.pt").write_bytes(b"x")


def test_config_changes_lists_keys_except_run_length():
    old = {"model": "tiny", "optim": {"lr": 1e-5}, "train": {"max_steps": 4, "resume": "auto"}}
    new = {"model": "tiny", "optim": {"lr": 2e-5}, "train": {"max_steps": 8, "resume": "auto"}, "extra": 1}
    assert config_changes(old, new) == ["extra: '(absent)' -> 1", "optim.lr: 1e-05 -> 2e-05"]


def test_changed_config_with_checkpoints_fails_before_work(tmp_path):
    prepare_output(make(tmp_path, "optim.lr=1e-5"), str(tmp_path))
    fake_checkpoint(tmp_path)
    prepare_output(make(tmp_path, "optim.lr=1e-5", "train.max_steps=99"), str(tmp_path))  # longer run: fine
    assert saved(tmp_path)["train"]["max_steps"] == 99
    with pytest.raises(ConfigError, match=r"optim\.lr: 1e-05 -> 2e-05.*train\.resume=never"):
        prepare_output(make(tmp_path, "optim.lr=2e-5"), str(tmp_path))
    assert saved(tmp_path)["optim"]["lr"] == 1e-5  # not overwritten
    prepare_output(make(tmp_path, "optim.lr=2e-5", "train.resume=never"), str(tmp_path))  # explicit restart
    assert saved(tmp_path)["optim"]["lr"] == 2e-5


def test_changed_config_without_checkpoints_is_a_new_run(tmp_path):
    prepare_output(make(tmp_path, "optim.lr=1e-5"), str(tmp_path))
    prepare_output(make(tmp_path, "optim.lr=2e-5"), str(tmp_path))  # no error: nothing to resume
    assert saved(tmp_path)["optim"]["lr"] == 2e-5
