"""GRPO and RLOO through the CLI on the tiny prior model: both raise a rule-based reward, and
GRPO with beta 0 runs without loading a reference model."""

import json

import pytest

from tests.conftest import run_cli
from tests.integration.rl_models import make_prior_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior_model(tmp_path_factory):
    return make_prior_model(tmp_path_factory.mktemp("models") / "prior")


def args(command, model, out, *extra):
    return [command, f"model={model}", f"train.output_dir={out}", "train.progress=false",
            "reward=contains:the", "grpo.prompts_per_batch=8", "grpo.group_size=4", "grpo.epochs=2",
            "train.micro_batch_size=8", "train.grad_accum=2", "rollout.max_new_tokens=8",
            "rollout.missing_eos=keep", "optim.lr=3e-3", "samples.prompts=0", *extra]


def scores(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "score" in r]


@pytest.mark.parametrize("command", ["grpo", "rloo"])
def test_group_methods_raise_a_rule_based_reward(command, prior_model, tmp_path, capsys):
    out = tmp_path / command
    assert run_cli(*args(command, prior_model, out, "train.max_steps=6", "data.eval_prompts=8")) == 0
    rows = scores(out)
    first = sum(r["score"] for r in rows[:2]) / 2
    last = sum(r["score"] for r in rows[-2:]) / 2
    assert last > first + 0.3, [round(r["score"], 3) for r in rows]
    assert all("kl" in r and "group_reward_std" in r and "zero_std_frac" in r for r in rows)
    if command == "grpo":
        assert all("kl_term" in r for r in rows)  # KL as a loss term
    else:
        assert not any("kl_term" in r for r in rows)  # KL as a reward penalty
    printed = capsys.readouterr().out
    assert f"{command.upper()} finished: 6 iterations" in printed and "held-out prompts" in printed
    assert (out / "final" / "model.safetensors").exists()
    assert not (out / "final" / "value").exists()  # no value model


def test_grpo_with_beta_zero_loads_no_reference(prior_model, tmp_path, caplog):
    import logging

    out = tmp_path / "nokl"
    with caplog.at_level(logging.INFO, logger="rlhfkit"):
        assert run_cli(*args("grpo", prior_model, out, "kl.coef=0", "train.max_steps=1",
                             "data.eval_prompts=2", "grpo.prompts_per_batch=4",
                             "train.grad_accum=1")) == 0
    assert "reference none (no KL term)" in caplog.text
    (row,) = scores(out)
    assert "kl" not in row and "kl_term" not in row


def test_group_size_must_be_at_least_two(tmp_path, capsys):
    assert run_cli("grpo", "model=tiny", "reward=length", "grpo.group_size=1",
                   f"train.output_dir={tmp_path / 'g'}") == 2
    assert "group_size must be >= 2" in capsys.readouterr().err
