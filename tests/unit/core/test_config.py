from dataclasses import dataclass
from typing import Literal

import pytest

from rlhfkit.config import ConfigError, describe, load_config, opt


@dataclass
class Inner:
    lr: float = opt(1e-5, "learning rate")
    steps: int = opt(10, "steps")


@dataclass
class Outer:
    model: str = opt("default", "model")
    inner: Inner = opt(factory=lambda: Inner(steps=99), help="")
    mode: Literal["a", "b"] = opt("a", "mode")
    flag: bool = opt(False, "flag")


def test_overrides_are_typed_and_keep_group_defaults():
    cfg = load_config(Outer, None, ["inner.lr=3e-5", "mode=b", "flag=true"])
    assert cfg.inner.lr == pytest.approx(3e-5)
    assert cfg.inner.steps == 99  # the stage-specific default of the group survives a partial override
    assert cfg.mode == "b" and cfg.flag is True


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\ninner:\n  steps: 5\n")
    cfg = load_config(Outer, path, ["inner.steps=7"])
    assert (cfg.model, cfg.inner.steps) == ("tiny", 7)


@pytest.mark.parametrize("override, message", [
    (["inner.lrr=1"], "inner.lrr: unknown config key"),
    (["inner.steps=abc"], "inner.steps: expected an integer"),
    (["mode=c"], "mode: expected one of"),
    (["flag=yes please"], "flag: expected true or false"),
    (["nokey"], "must look like key=value"),
])
def test_bad_keys_and_types_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, override)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: inner.stepz: unknown config key"):
        load_config(Outer, path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: tiny\ninner: [1,\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(Outer, path)


def test_a_duplicated_yaml_key_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model: tiny\ninner:\n  steps: 3\n  lr: 0.1\n  steps: 4\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:5: invalid YAML: duplicate key 'steps' "
                                          r"\(first given on line 3\)"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match=r"duplicate key 'steps'"):
        load_config(Outer, None, ["inner={steps: 1, steps: 2}"])


def test_describe_lists_every_key_with_help():
    text = "\n".join(describe(Outer))
    assert "inner.lr = 1e-05   learning rate" in text
    assert "mode = 'a'   mode" in text


def test_describe_shows_the_stage_defaults_of_a_group():
    text = "\n".join(describe(Outer))
    assert "inner.steps = 99" in text  # Outer's factory default, not Inner's 10
