"""Rounds config checks (one line naming the key) and the eval judge's verdict rule."""

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.rounds.config import RoundsConfig
from rlhfkit.rounds.evaluate import judge_verdict


def load(*overrides):
    return load_config(RoundsConfig, None, ["eval_judge=length", *overrides])


def test_defaults_and_passed_through_groups():
    cfg = load("rm.train.max_steps=3", "dpo.beta=0.2")
    assert cfg.rm.ensemble.members == 3 and cfg.rm.objective.pairwise == "bce" and cfg.dpo.soft_labels
    assert cfg.rm.train.max_steps == 3 and cfg.dpo.beta == 0.2 and cfg.selection == "disagreement"


@pytest.mark.parametrize("overrides, words", [
    ((), None),
    (("rm.ensemble.members=1",), "rm.ensemble.members >= 2"),
    (("eval_judge=ai:tiny", "judge.model=tiny"), "made the training labels"),
    (("sampling.n=1",), "sampling.n"),
    (("heldout_fraction=1",), "heldout_fraction"),
    (("selection=best",), "selection"),
])
def test_bad_configs_name_the_key(overrides, words):
    if words is None:
        load(*overrides)
        return
    with pytest.raises(ConfigError, match=words):
        load(*overrides)


def test_eval_judge_is_required():
    with pytest.raises(ConfigError, match="eval_judge: required"):
        load_config(RoundsConfig, None, [])


def test_judge_verdict_from_probability():
    assert [judge_verdict(p) for p in (0.9, 0.5, 0.1)] == [1.0, 0.5, 0.0]
    assert judge_verdict(0.55, tie_eps=0.1) == 0.5 and judge_verdict(0.61, tie_eps=0.1) == 1.0
