"""FLOP counts of rlhfkit plan on a toy model, computed by hand from the formulas in rlhfkit/eval/cost.py.

Toy model: 2 layers, d_attn 4, N_body 100, N_head 50. Row: prompt 2 + response 3 tokens:
tokens 5, pairs 5*6/2 = 15, logits 3. Forward = 2*100*5 + 4*2*4*15 + 2*50*3 = 1000 + 480 + 300 = 1780.
"""

import math

import pytest

from rlhfkit.config import load_config
from rlhfkit.eval.cost import (ModelShape, Work, causal_pairs, decode_pairs, pass_flops, row, seconds,
                          shared_prompt, steps_for)
from rlhfkit.eval.plan import Lengths, plan_dpo, plan_rl, plan_rm, plan_sft, rm_trainable_layers

TOY = ModelShape("toy", layers=2, d_attn=4, body=100, head=50)
LEN = Lengths(prompt=2, response=3)


def test_attention_pairs():
    assert causal_pairs(3) == 6 and causal_pairs(5) == 15
    assert decode_pairs(2, 3) == 3 * 2 + 6  # tokens 3, 4, 5 attend to 3, 4, 5 positions
    assert row(2, 3) == Work(5, 15, 3)
    assert shared_prompt(2, [3, 3], logits=False) == Work(8, 3 + 2 * 12, 0)


def test_forward_full_lora_and_frozen_passes():
    w = row(2, 3)
    assert pass_flops(TOY, w) == 1780
    assert pass_flops(TOY, w, "full") == 3 * 1780  # 6 N tokens for weights and head, 3x attention
    lora = ModelShape("toy", 2, 4, 100, 50, lora=10)
    # weights 4*100*5 = 2000, head 4*50*3 = 600, attention 3*480 = 1440, adapters 6*10*5 = 300
    assert pass_flops(lora, w, "lora") == 2000 + 600 + 1440 + 300
    # only the top layer trains: forward 1780 + its backward 2*(500 + 240) + the head's 2*300
    assert pass_flops(TOY, w, "full", trainable_layers=1) == 1780 + 1480 + 600


def test_sft_step_and_run_length():
    from rlhfkit.stages.sft import SFTConfig

    cfg = load_config(SFTConfig, None, ["train.micro_batch_size=2", "train.grad_accum=2", "train.epochs=1"])
    plan = plan_sft(cfg, TOY, LEN, examples=10)
    assert [p.flops for p in plan.phases] == [4 * 1780, 4 * 2 * 1780]
    assert plan.units == 3 and plan.total_flops == 3 * 4 * 3 * 1780  # ceil(10 / 4) steps
    assert steps_for(None, 4, 1.0, 0) is None and steps_for(10, 4, 1.0, 7) == 7


def test_reward_model_step_with_frozen_cached_layers():
    from rlhfkit.stages.reward import RewardConfig

    assert rm_trainable_layers(-4, 30) == 4 and rm_trainable_layers(24, 30) == 6 and rm_trainable_layers(0, 30) == 30
    cfg = load_config(RewardConfig, None, ["train.micro_batch_size=2", "train.epochs=2", "freeze_layers=-1",
                                           "train.eval_every=0", "train.early_stopping_patience=0"])
    plan = plan_rm(cfg, TOY, LEN, examples=4)
    # per pair: tokens 2 + 3 + 3 = 8, pairs 3 + 2*12 = 27; x2 pairs: Work(16, 54, 0)
    # forward 2*100*16 + 4*2*4*54 = 4928, 2464 per layer: the frozen one cached, charged 2464 / 2 epochs;
    # the trained one 3 x 2464
    assert [p.flops for p in plan.phases] == [1232, 3 * 2464]
    assert plan.units == 4


def test_dpo_step_reference_cached():
    from rlhfkit.stages.dpo import DPOConfig

    cfg = load_config(DPOConfig, None, ["train.micro_batch_size=1", "train.grad_accum=1", "train.epochs=2"])
    plan = plan_dpo(cfg, TOY, LEN)
    # Work(8, 27, 6): forward 1600 + 864 + 600 = 3064
    assert [p.flops for p in plan.phases] == [3064 / 2, 3064, 2 * 3064]
    simpo = load_config(DPOConfig, None, ["loss=simpo", "beta=2.0", "train.micro_batch_size=1", "train.grad_accum=1"])
    assert [p.role for p in plan_dpo(simpo, TOY, LEN).phases] == ["policy", "policy"]


def _ppo(*overrides):
    from rlhfkit.stages.ppo import PPOConfig

    return load_config(PPOConfig, None, ["ppo.prompts_per_batch=2", "ppo.samples_per_prompt=2",
                                         "ppo.score_baseline=group", "ppo.epochs=2", "train.micro_batch_size=2",
                                         "train.grad_accum=1", *overrides])


def test_ppo_iteration_by_phase():
    plan = plan_rl(_ppo(), "ppo", TOY, reward=TOY, value=TOY, lengths=LEN)
    got = {(p.name, p.role): p.flops for p in plan.phases}
    assert got == {
        ("generation prefill", "policy"): 800 + 192 + 200,      # 2 unique prompts: Work(4, 6, 2)
        ("generation decode", "policy"): 2400 + 1536 + 1200,    # 4 rows x 3 tokens: Work(12, 48, 12)
        ("reference forward", "reference"): 4000 + 1920 + 1200,  # 4 rows: Work(20, 60, 12)
        ("reward forward", "reward"): 4000 + 1920,               # no LM head
        ("value forward", "value"): 5920,
        ("update x2 epochs forward", "policy"): 2 * 7120,
        ("update x2 epochs backward", "policy"): 4 * 7120,
        ("update x2 epochs forward", "value"): 2 * 5920,
        ("update x2 epochs backward", "value"): 4 * 5920,
    }
    assert plan.flops == 103528 and plan.units == 20  # train.max_steps of the PPO config
    head = plan_rl(_ppo(), "ppo", TOY, reward=None, value=None, lengths=LEN)
    assert [p.role for p in head.phases].count("value") == 0
    assert head.flops == 103528 - 5920 - 5920 + 7120 - 3 * 2 * 5920  # values from a policy forward


def test_grpo_without_reference_and_hf_engine_prefills_every_row():
    from rlhfkit.stages.grpo import GRPOConfig

    cfg = load_config(GRPOConfig, None, ["grpo.prompts_per_batch=1", "grpo.group_size=2", "kl.coef=0",
                                         "rollout.engine=hf", "train.micro_batch_size=2", "train.grad_accum=1"])
    plan = plan_rl(cfg, "grpo", TOY, reward=None, value=None, lengths=LEN)
    assert [p.name for p in plan.phases] == ["generation prefill", "generation decode",
                                             "update x1 epochs forward", "update x1 epochs backward"]
    assert plan.phases[0].flops == 2 * (2 * 100 * 2 + 4 * 2 * 4 * 3 + 2 * 50)  # both rows prefilled


def test_time_at_a_utilisation():
    assert seconds(1e12, 1e12, 0.5) == 2.0
    assert math.isclose(seconds(4.2e12, 989e12, 0.4), 4.2 / (989 * 0.4))


@pytest.mark.parametrize("bad", ["--utilisation=2", "--peak-gflops=-1"])
def test_bad_flags_are_one_line(bad, capsys):
    from tests.conftest import run_cli

    assert run_cli("plan", "sft", "model=tiny", bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rlhfkit plan: error: --" in err
