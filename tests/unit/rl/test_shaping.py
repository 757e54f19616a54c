"""Rewards -> advantages for PPO (KL-shaped per-token rewards, EOS trick, GAE) and GRPO/RLOO
(group baselines, KL as a reward penalty), against hand-computed numbers."""

from dataclasses import replace

import pytest
import torch

from rlhfkit.rl.experience import Experience
from rlhfkit.stages.grpo import GRPOConfig, group_relative
from rlhfkit.stages.ppo import PPOConfig, shape_rewards


def _exp(logp, ref, mask, scores, finished, values=None):
    logp, ref, mask = torch.tensor(logp), torch.tensor(ref), torch.tensor(mask)
    b = logp.shape[0]
    return Experience(prompt_ids=torch.ones(b, 1, dtype=torch.long), prompt_mask=torch.ones(b, 1, dtype=torch.long),
                      response_ids=torch.ones_like(mask, dtype=torch.long), real_mask=mask, mask=mask.clone(),
                      logprobs=logp, finished=torch.tensor(finished), raw_scores=torch.tensor(scores),
                      scores=torch.tensor(scores), ref_logprobs=ref,
                      values=torch.tensor(values) if values is not None else None)


def test_ppo_rewards_eos_trick_and_gae_by_hand():
    cfg = PPOConfig()
    cfg = replace(cfg, ppo=replace(cfg.ppo, gamma=1.0, lam=1.0, whiten_advantages=False),
                  rollout=replace(cfg.rollout, missing_eos="penalty", missing_eos_penalty=-1.0))
    exp = _exp(logp=[[-1.0, -2.0, -1.0], [-0.5, -1.0, 0.0]],
               ref=[[-1.5, -2.0, -0.5], [-1.0, -1.0, 0.0]],
               mask=[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]],
               scores=[1.0, 2.0], finished=[True, False],
               values=[[0.2, 0.4, 0.6], [0.1, 0.3, 0.0]])
    seq_kl, stats = shape_rewards(exp, cfg, beta=0.1)
    # k1 = logp - ref = [[.5, 0, -.5], [.5, 0, -]]; rewards -0.1*k1, + score on the last token;
    # row 2 has no EOS -> its score becomes -1:
    #   row 1: [-0.05, 0, 0.05 + 1.0]     row 2: [-0.05, -1.0]
    # gamma = lambda = 1: A_t = (sum of rewards from t) - V_t
    assert torch.allclose(exp.advantages, torch.tensor([[0.8, 0.65, 0.45], [-1.15, -1.3, 0.0]]))
    assert torch.allclose(exp.returns, torch.tensor([[1.0, 1.05, 1.05], [-1.05, -1.0, 0.0]]))
    assert seq_kl.tolist() == pytest.approx([0.0, 0.5])
    assert stats["kl"] == pytest.approx(0.25)
    assert stats["reward"] == pytest.approx((1.0 + -1.05) / 2)
    assert stats["score_used"] == pytest.approx(0.0)  # (1 + -1) / 2 after the EOS trick


def test_ppo_whitened_advantages_ignore_dropped_rows():
    cfg = PPOConfig()
    cfg = replace(cfg, rollout=replace(cfg.rollout, missing_eos="drop"))
    exp = _exp(logp=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], ref=[[0.0, 0.0]] * 3,
               mask=[[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]], scores=[1.0, 3.0, 50.0],
               finished=[True, True, False], values=[[0.0, 0.0]] * 3)
    exp.mask = exp.mask * exp.finished.float().unsqueeze(1)  # what collect() does for drop
    shape_rewards(exp, cfg, beta=0.0)
    valid = exp.mask.bool()
    assert exp.advantages[2].tolist() == [0.0, 0.0]  # dropped row: no advantage, no loss
    assert float(exp.advantages[valid].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(exp.advantages[valid].std()) == pytest.approx(1.0, abs=1e-4)


def test_ppo_group_score_baseline_by_hand():
    cfg = PPOConfig()
    cfg = replace(cfg, ppo=replace(cfg.ppo, samples_per_prompt=2, score_baseline="group", gamma=1.0, lam=1.0,
                                   whiten_advantages=False),
                  rollout=replace(cfg.rollout, missing_eos="penalty", missing_eos_penalty=-1.0))
    zeros = [[0.0, 0.0]] * 4
    exp = _exp(logp=zeros, ref=zeros, mask=[[1.0, 1.0]] * 4, scores=[1.0, 3.0, 0.0, 2.0],
               finished=[True, True, True, False], values=zeros)
    _, stats = shape_rewards(exp, cfg, beta=0.1)
    # EOS trick first: [1, 3, 0, -1]; then minus the other sample of the same prompt:
    #   prompt 1: [1 - 3, 3 - 1] = [-2, 2]      prompt 2: [0 - (-1), -1 - 0] = [1, -1]
    # KL 0, V 0, gamma = lambda = 1: every token's advantage is the row's baselined score
    assert exp.advantages.tolist() == [[-2.0, -2.0], [2.0, 2.0], [1.0, 1.0], [-1.0, -1.0]]
    assert stats["score_used"] == pytest.approx(0.75)  # reported before the baseline: mean of [1, 3, 0, -1]
    assert stats["reward"] == pytest.approx(0.75)  # and the KL penalty is 0
    # baselines subtracted: [3, 1, -1, 0] (the other sample's score), mean 0.75
    assert stats["score_baseline"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        replace(cfg.ppo, samples_per_prompt=1).validate()


def test_grpo_group_advantages_by_hand():
    cfg = GRPOConfig()
    cfg = replace(cfg, grpo=replace(cfg.grpo, group_size=2), kl=replace(cfg.kl, coef=0.0),
                  rollout=replace(cfg.rollout, missing_eos="keep"))
    exp = _exp(logp=[[0.0]] * 4, ref=[[0.0]] * 4, mask=[[1.0]] * 4, scores=[1.0, 0.0, 2.0, 2.0],
               finished=[True] * 4)
    exp.ref_logprobs = None
    seq_kl, stats = group_relative(exp, cfg)
    # group 1: mean 0.5, unbiased std sqrt(0.5); group 2: equal rewards -> 0
    a = 0.5 / (0.5 ** 0.5 + 1e-4)
    assert seq_kl is None
    assert exp.advantages[:, 0].tolist() == pytest.approx([a, -a, 0.0, 0.0])
    assert stats["zero_std_frac"] == pytest.approx(0.5)


def test_rloo_with_kl_reward_penalty_and_eos_trick():
    cfg = GRPOConfig()
    cfg = replace(cfg, grpo=replace(cfg.grpo, method="rloo", group_size=3),
                  kl=replace(cfg.kl, coef=0.5, mode="reward", estimator="k1"),
                  rollout=replace(cfg.rollout, missing_eos="penalty", missing_eos_penalty=-2.0))
    exp = _exp(logp=[[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]],
               ref=[[-2.0, -1.0], [-1.0, -1.0], [-1.0, -3.0]],
               mask=[[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]], scores=[3.0, 1.0, 5.0],
               finished=[True, True, False])
    seq_kl, stats = group_relative(exp, cfg)
    # per-response k1 sums: [1, 0, 0] (row 3's second token is padding); row 3 lost EOS -> -2
    # shaped: [3 - 0.5, 1 - 0, -2 - 0] = [2.5, 1, -2]; leave-one-out: r_i - mean(others)
    assert seq_kl.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert exp.advantages[:, 0].tolist() == pytest.approx([2.5 - (-0.5), 1 - 0.25, -2 - 1.75])
    assert exp.advantages[2, 1] == 0.0  # padding keeps no advantage
    assert stats["kl"] == pytest.approx(1 / 3)


def test_dynamic_sampling_and_dr_grpo_advantages():
    """Scores [1, 0 | 2, 2]: the second group has one score for all and leaves the update
    (grpo.dynamic_sampling); loss=dr_grpo keeps A = r - mean_g without the std division."""
    cfg = GRPOConfig()
    cfg = replace(cfg, grpo=replace(cfg.grpo, group_size=2, loss="dr_grpo", dynamic_sampling=True),
                  kl=replace(cfg.kl, coef=0.0), rollout=replace(cfg.rollout, missing_eos="keep"))
    exp = _exp(logp=[[0.0]] * 4, ref=[[0.0]] * 4, mask=[[1.0]] * 4, scores=[1.0, 0.0, 2.0, 2.0],
               finished=[True] * 4)
    exp.ref_logprobs = None
    _, stats = group_relative(exp, cfg)
    assert exp.advantages[:, 0].tolist() == [0.5, -0.5, 0.0, 0.0]
    assert exp.mask[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert stats["dynamic_kept_frac"] == 0.5


def test_reinforce_pp_token_advantages_with_kl_in_the_reward():
    """k1 KL [[0.5, 0, -0.5], [0.5, 0, -]] x beta 0.1 in the reward, scores [1, 0]: returns-to-go
    [1, 1.05, 1.05 | -0.05, 0], normalised over the 5 tokens (mean 0.61, var 0.33675)."""
    cfg = GRPOConfig()
    cfg = replace(cfg, grpo=replace(cfg.grpo, method="reinforce_pp", group_size=1),
                  kl=replace(cfg.kl, coef=0.1, mode="reward", estimator="k1"),
                  rollout=replace(cfg.rollout, missing_eos="keep"))
    cfg.validate()
    exp = _exp(logp=[[-1.0, -2.0, -1.0], [-0.5, -1.0, 0.0]], ref=[[-1.5, -2.0, -0.5], [-1.0, -1.0, 0.0]],
               mask=[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], scores=[1.0, 0.0], finished=[True, True])
    _, stats = group_relative(exp, cfg)
    std = 0.33675 ** 0.5
    expected = [(g - 0.61) / std for g in (1.0, 1.05, 1.05)]
    assert exp.advantages[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert exp.advantages[1].tolist() == pytest.approx([-0.66 / std, -0.61 / std, 0.0], abs=1e-5)
    assert stats["reward"] == pytest.approx(0.5 - 0.1 * 0.25)  # mean score - beta * mean KL
    with pytest.raises(ValueError, match="kl.mode=reward"):
        replace(cfg, kl=replace(cfg.kl, mode="loss")).validate()
