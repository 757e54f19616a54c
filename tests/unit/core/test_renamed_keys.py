"""One spelling for ensemble reduction (``ensemble_reduce``; ``--ensemble-reduce`` in ``rm eval``):
the old spellings (bon ``reward_reduce``, eval ``judge_reduce``/``reduce``, ``rm eval --reduce``) still work for one release, each
with a one-line deprecation warning."""

import dataclasses
import importlib
import logging

import pytest

from rlhfkit.config import ConfigError, _renamed, load_config
from rlhfkit.stages.best_of_n import BoNConfig, RejectionSamplingConfig


def test_old_key_is_read_as_the_new_one_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        cfg = load_config(BoNConfig, None, ["reward=length", "reward_reduce=min"])
    assert cfg.ensemble_reduce == "min"
    assert "reward_reduce is deprecated" in caplog.text and "use ensemble_reduce" in caplog.text
    path = tmp_path / "rs.yaml"
    path.write_text("reward: length\nreward_reduce: mean_minus_std\n")
    assert load_config(RejectionSamplingConfig, path).ensemble_reduce == "mean_minus_std"  # inherited


def test_new_key_gives_no_warning_and_both_keys_are_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        assert load_config(BoNConfig, None, ["reward=length", "ensemble_reduce=min"]).ensemble_reduce == "min"
    assert "deprecated" not in caplog.text
    with pytest.raises(ConfigError, match="reward_reduce: renamed to ensemble_reduce"):
        load_config(BoNConfig, None, ["reward=length", "reward_reduce=min", "ensemble_reduce=mean"])
    with pytest.raises(ConfigError, match="ensemble_reduce: expected one of"):  # after the warning
        load_config(BoNConfig, None, ["reward=length", "reward_reduce=median"])


@pytest.mark.parametrize("flags, expected, warned", [
    (["--ensemble-reduce", "min"], "min", False),
    (["--reduce", "mean_minus_std"], "mean_minus_std", True),
    ([], "mean", False),
])
def test_rm_eval_flag_and_its_old_spelling(monkeypatch, caplog, flags, expected, warned):
    from rlhfkit.cli import build_parser
    from rlhfkit.stages import reward_eval

    seen = {}
    monkeypatch.setattr(reward_eval, "evaluate_file", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(reward_eval, "print_eval", lambda result: None)
    args = build_parser().parse_args(["rm", "eval", "--model", "m", "--data", "d", *flags])
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        assert args.func(args) == 0
    assert seen["reduce"] == expected
    assert ("--reduce is deprecated" in caplog.text) == warned


@pytest.mark.parametrize("module, cls, old", [
    ("rlhfkit.eval.compare", "EvalConfig", "judge_reduce"),
    ("rlhfkit.eval.bon_overopt", "OverOptConfig", "reduce"),
    ("rlhfkit.eval.frontier", "FrontierConfig", "reduce"),
])
def test_eval_configs_take_the_one_spelling_and_their_old_keys(module, cls, old, caplog):
    config_cls = getattr(importlib.import_module(module), cls)
    assert "ensemble_reduce" in {f.name for f in dataclasses.fields(config_cls)}
    assert config_cls.RENAMED_KEYS == {old: "ensemble_reduce"}
    with caplog.at_level(logging.WARNING, logger="rlhfkit"):
        data = _renamed(config_cls, {old: "min"}, "")
    assert data == {"ensemble_reduce": "min"} and f"{old} is deprecated" in caplog.text
