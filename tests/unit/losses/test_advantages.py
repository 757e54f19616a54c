"""GAE (vectorised vs loop reference), KL-shaped rewards, GRPO/RLOO advantages."""

import pytest
import torch

from rlhfkit.losses.advantages import (
    compute_gae,
    compute_gae_reference,
    group_advantages,
    last_valid_index,
    per_token_rewards,
)

T = torch.tensor


def test_gae_by_hand_full_and_right_padded():
    rewards = T([[0.0, 0.0, 1.0], [0.0, 1.0, 55.0]])
    values = T([[0.5, 0.6, 0.7], [0.5, 0.6, 9.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0: A2 = 1 - 0.7 = 0.3; A1 = 0.7 - 0.6 + 0.95 * 0.3 = 0.385; A0 = 0.1 + 0.95 * 0.385
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])
    # row 1 ends at t=1: A1 = 1 - 0.6 = 0.4; A0 = 0.6 - 0.5 + 0.95 * 0.4 = 0.48; padding -> 0
    assert adv[1].tolist() == pytest.approx([0.48, 0.4, 0.0])
    assert ret[1].tolist() == pytest.approx([0.98, 1.0, 0.0])


def test_gae_by_hand_with_discount():
    adv, ret = compute_gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), torch.ones(1, 3), gamma=0.9, lam=0.5)
    # d2 = 0.3; d1 = 0.9*0.7 - 0.6 = 0.03; A1 = 0.03 + 0.45*0.3 = 0.165; d0 = 0.04; A0 = 0.04 + 0.45*0.165
    assert adv[0].tolist() == pytest.approx([0.11425, 0.165, 0.3])
    assert ret[0].tolist() == pytest.approx([0.61425, 0.765, 1.0])


@pytest.mark.parametrize("layout", ["right", "left", "holes"])
def test_gae_vectorised_matches_loop_reference_on_ragged_masks(layout):
    g = torch.Generator().manual_seed({"right": 0, "left": 1, "holes": 2}[layout])
    B, T_ = 6, 9
    rewards, values = torch.randn(B, T_, generator=g), torch.randn(B, T_, generator=g)
    lengths = torch.randint(1, T_ + 1, (B,), generator=g)
    cols = torch.arange(T_).unsqueeze(0)
    if layout == "right":
        mask = cols < lengths.unsqueeze(1)
    elif layout == "left":
        mask = cols >= (T_ - lengths).unsqueeze(1)
    else:
        mask = torch.rand(B, T_, generator=g) > 0.3
    for gamma, lam in [(1.0, 0.95), (0.99, 0.9), (0.9, 0.0)]:
        adv, ret = compute_gae(rewards, values, mask, gamma, lam)
        adv_ref, ret_ref = compute_gae_reference(rewards, values, mask, gamma, lam)
        torch.testing.assert_close(adv, adv_ref)
        torch.testing.assert_close(ret, ret_ref)


def test_gae_padding_values_do_not_leak():
    mask = T([[1, 1, 0, 0]])
    a1, _ = compute_gae(T([[0.0, 1.0, 5.0, 7.0]]), T([[0.2, 0.3, 4.0, 1.0]]), mask)
    a2, _ = compute_gae(T([[0.0, 1.0, -5.0, 0.0]]), T([[0.2, 0.3, -4.0, 3.0]]), mask)
    torch.testing.assert_close(a1, a2)


def test_last_valid_index_right_and_left_padding():
    mask = T([[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]])
    assert last_valid_index(mask).tolist() == [1, 3, 3]
    with pytest.raises(ValueError, match="row"):
        last_valid_index(T([[1, 0], [0, 0]]))


def test_per_token_rewards_by_hand():
    score = T([1.0, 2.0])
    kl = T([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])
    rewards, stats = per_token_rewards(score, kl, mask, beta=0.5)
    assert rewards[0].tolist() == pytest.approx([-0.05, -0.1, 0.85])  # -0.15 + 1
    assert rewards[1].tolist() == pytest.approx([-0.2, 1.75, 0.0])  # score on last valid token
    assert stats["kl"].item() == pytest.approx(0.75)  # (0.6 + 0.9) / 2
    assert stats["non_score_reward"].item() == pytest.approx(-0.375)
    assert stats["total"].item() == pytest.approx(1.125)
    eos, estats = per_token_rewards(score, kl, mask, 0.5, has_eos=T([True, False]), missing_eos_penalty=-1.0)
    assert eos[1].tolist() == pytest.approx([-0.2, -1.25, 0.0])  # score replaced by -1
    assert estats["score"].item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="has_eos"):
        per_token_rewards(score, kl, mask, 0.5, missing_eos_penalty=-1.0)


def test_group_advantages_grpo_and_rloo_by_hand():
    rewards = T([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])  # two prompts, G = 3
    adv, stats = group_advantages(rewards, 3, "grpo", eps=1e-4)
    # group 1: mean 2, sample std 1 -> (r - 2) / (1 + 1e-4); group 2: all equal -> 0
    assert adv.tolist() == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0])
    assert stats["zero_std_frac"].item() == pytest.approx(0.5)
    rloo, _ = group_advantages(rewards, 3, "rloo")
    # 1 - (2+3)/2, 2 - (1+3)/2, 3 - (1+2)/2
    assert rloo.tolist() == pytest.approx([-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])
    dr, _ = group_advantages(rewards, 3, "grpo", std_normalize=False)
    assert dr.tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(rewards, 4)
    with pytest.raises(ValueError, match="method"):
        group_advantages(rewards, 3, "ppo")
