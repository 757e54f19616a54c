"""rlhfkit/stages/phases.py: the state file of a command made of phases."""

from dataclasses import dataclass, field

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.stages.phases import PhaseState, changed_keys, pick_keys
from rlhfkit.train.config import TrainConfig


@dataclass
class Stage:
    lr: float = 1e-5
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Cfg:
    seed: int = 0
    sizes: tuple = (1, 2)
    stage: Stage = field(default_factory=Stage)


def test_pick_keys_takes_leaves_and_whole_groups_as_json():
    picked = pick_keys(Cfg(), ["seed", "sizes", "stage.train"])
    assert picked["seed"] == 0 and picked["sizes"] == [1, 2]
    assert picked["stage.train"]["max_steps"] == 0 and picked["stage.train"]["seed"] == 0


def test_changed_keys_frees_logging_and_run_length_of_a_stage_group():
    keys = ["seed", "stage"]
    old = pick_keys(Cfg(), keys)
    longer = Cfg(stage=Stage(train=TrainConfig(max_steps=5, progress=False)))
    assert changed_keys(old, pick_keys(longer, keys)) == []
    other = Cfg(seed=1, stage=Stage(lr=1e-4, train=TrainConfig(seed=3)))
    assert changed_keys(old, pick_keys(other, keys)) == [
        "seed: 0 -> 1", "stage.lr: 1e-05 -> 0.0001", "stage.train.seed: 0 -> 3"]


def test_finish_writes_state_a_reload_sees_and_check_refuses_changes(tmp_path):
    state = PhaseState.load(tmp_path)
    assert not state.done("a")
    state.finish("a", {"seed": 0}, {"file": "a.jsonl"}, 1.23)
    again = PhaseState.load(tmp_path)
    assert again.done("a") and again.output("a", "file") == "a.jsonl"
    assert again.phases["a"]["seconds"] == 1.2
    again.check({"a": {"seed": 0}, "b": {"seed": 5}})  # b never finished: anything goes
    with pytest.raises(ConfigError, match=r"phase a finished with other settings \(seed: 0 -> 1\)"):
        again.check({"a": {"seed": 1}})


def test_an_unreadable_state_file_is_one_line(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="state.json: unreadable run state"):
        PhaseState.load(tmp_path)
