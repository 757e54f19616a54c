"""PPO's KL-penalty variant, REINFORCE++, Dr. GRPO, DAPO (clip-higher, dynamic sampling) and GSPO
against hand-computed values."""

import math

import pytest
import torch

from rlhfkit.losses.advantages import reinforce_pp_advantages
from rlhfkit.losses.policy_variants import (
    GROUP_LOSSES,
    GroupLossParams,
    dapo_keep_groups,
    dapo_policy_loss,
    dr_grpo_policy_loss,
    gspo_policy_loss,
)
from rlhfkit.losses.ppo import PolicyKLController, grpo_policy_loss, ppo_kl_penalty_loss

T = torch.tensor
LOG = math.log


def test_ppo_kl_penalty_loss_by_hand():
    """r = [1.5, 0.5], A = 1, beta 0.5; KL_t = r - 1 - log r = [0.094535, 0.193147]:
    L = mean(-r A + beta KL) = (-1.452733 - 0.403426) / 2. Nothing is clipped: at r = 1.5 with
    A > 0 PPO-clip gives no gradient, the penalty variant does."""
    logp = T([[LOG(1.5), LOG(0.5)]], requires_grad=True)
    loss, stats = ppo_kl_penalty_loss(logp, torch.zeros(1, 2), T([[1.0, 1.0]]), T([[1, 1]]), beta=0.5)
    assert loss.item() == pytest.approx(-0.9280794818870548)
    assert stats["policy_kl"].item() == pytest.approx(0.14384103622589045)
    assert stats["ratio"].item() == pytest.approx(1.0)
    loss.backward()
    # d/dlogp (-A r + beta (r - 1 - log r)) = -A r + beta (r - 1), over 2 tokens
    assert logp.grad.tolist()[0] == pytest.approx([(-1.5 + 0.25) / 2, (-0.5 - 0.25) / 2])


def test_policy_kl_controller_halves_and_doubles():
    ctl = PolicyKLController(init_beta=1.0, target=0.01)
    assert ctl.update(0.001) == 0.5  # below 0.01 / 1.5
    assert ctl.update(0.01) == 0.5  # inside [target / 1.5, target * 1.5]: unchanged
    assert ctl.update(T(0.02)) == 1.0  # above 0.015
    restored = PolicyKLController(3.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert (restored.value, restored.target) == (1.0, 0.01)
    assert PolicyKLController(0.3, 0.0).update(100.0) == 0.3  # target 0: fixed beta
    with pytest.raises(ValueError, match="init_beta"):
        PolicyKLController(0.0, 0.01)


def test_reinforce_pp_advantages_by_hand():
    """beta 0.1: rewards row 0 [-0.05, 0, 0.05 + 1], row 1 [-0.05, 0 + 0]; returns-to-go
    G = [1, 1.05, 1.05 | -0.05, 0]; batch mean 0.61, unbiased var 1.347 / 4 = 0.33675."""
    kl = T([[0.5, 0.0, -0.5], [0.5, 0.0, 0.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, stats = reinforce_pp_advantages(T([1.0, 0.0]), kl, mask, beta=0.1)
    std = math.sqrt(0.33675)
    expected = [[(g - 0.61) / std for g in (1.0, 1.05, 1.05)], [(-0.05 - 0.61) / std, (0 - 0.61) / std, 0.0]]
    assert adv.tolist()[0] == pytest.approx(expected[0], abs=1e-5)
    assert adv.tolist()[1] == pytest.approx(expected[1], abs=1e-5)
    assert stats["kl"].item() == pytest.approx(0.25)
    # only row 0 kept (row 1 dropped): normalised over its 3 tokens, mean 1.0333, std 0.0288675
    kept, _ = reinforce_pp_advantages(T([1.0, 0.0]), kl, mask, beta=0.1, keep=T([True, False]))
    assert kept.tolist()[0] == pytest.approx([-1.1547005, 0.5773503, 0.5773503], abs=1e-4)
    assert kept.tolist()[1] == [0.0, 0.0, 0.0]


def test_dr_grpo_removes_the_length_normalisation():
    """A = [2, -1], rows of 2 and 3 tokens, max_len 4: L = mean_i (sum_t -A_i) / 4 = (-4/4 + 3/4) / 2;
    every token's gradient is -A_i / (4 * 2), whatever its response's length (GRPO: -A_i / (|o_i| 2))."""
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = T([[1, 1, 0], [1, 1, 1]])
    loss, _ = dr_grpo_policy_loss(logp, None, None, T([2.0, -1.0]), mask, max_len=4)
    assert loss.item() == pytest.approx(-0.125)
    loss.backward()
    torch.testing.assert_close(logp.grad, T([[-0.25, -0.25, 0.0], [0.125, 0.125, 0.125]]))
    with pytest.raises(ValueError, match="max_len"):
        dr_grpo_policy_loss(logp, None, None, T([2.0, -1.0]), mask, max_len=0)


def test_dapo_clip_higher_by_hand():
    """Ratios [1.5, 0.7, 1.25, 0.9], A [1, -1, 1, -1], eps_low 0.2, eps_high 0.28:
    per token -min(rA, clip(r) A) = [-1.28 (held at 1.28), 0.8 (held at 0.8), -1.25, 0.9];
    the symmetric clip would also hold token 2 at 1.2."""
    logp = T([[LOG(1.5), LOG(0.7), LOG(1.25), LOG(0.9)]], requires_grad=True)
    adv, mask, old = T([[1.0, -1.0, 1.0, -1.0]]), T([[1, 1, 1, 1]]), torch.zeros(1, 4)
    loss, stats = dapo_policy_loss(logp, old, None, adv, mask)
    assert loss.item() == pytest.approx((-1.28 + 0.8 - 1.25 + 0.9) / 4)
    assert (stats["clipfrac"].item(), stats["clipfrac_high"].item(), stats["clipfrac_low"].item()) == (
        0.5, 0.25, 0.25)
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.0, -1.25 / 4, 0.9 / 4])  # -A r / 4 where unclipped
    sym, sym_stats = grpo_policy_loss(logp, old, None, adv, mask, beta=0.0, reduction="token")
    assert sym.item() == pytest.approx((-1.2 + 0.8 - 1.2 + 0.9) / 4)
    assert sym_stats["clipfrac_high"].item() == 0.5


def test_dapo_token_mean_weighs_every_token_alike():
    mask = T([[1, 0, 0], [1, 1, 1]])
    loss, _ = dapo_policy_loss(torch.zeros(2, 3), None, None, T([1.0, -1.0]), mask)
    assert loss.item() == pytest.approx(0.5)  # -(1 * 1 + (-1) * 3) / 4 tokens (sequence mean: 0)


def test_dapo_keeps_groups_whose_rewards_differ():
    rewards = T([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.25])
    assert dapo_keep_groups(rewards, 2).tolist() == [False, True, False, True]
    assert dapo_keep_groups(rewards, 4).tolist() == [True, True]
    with pytest.raises(ValueError, match="group_size"):
        dapo_keep_groups(rewards, 3)


def test_gspo_sequence_ratio_by_hand():
    """Token log-ratios row 0 [0.2, 0] (mean 0.1), row 1 [-0.3, 0, 0] (mean -0.1); A = [1, -1]:
    s = [e^0.1, e^-0.1]; inside eps 0.2 the loss is mean_i -s_i A_i, and d/dlogp_t = -A_i s_i / |y_i| / 2."""
    logp = T([[0.2, 0.0, 0.0], [-0.3, 0.0, 0.0], [5.0, 5.0, 5.0]], requires_grad=True)
    mask = T([[1, 1, 0], [1, 1, 1], [0, 0, 0]])  # row 2 dropped: not in the mean
    adv, old = T([1.0, -1.0, 9.0]), torch.zeros(3, 3)
    loss, stats = gspo_policy_loss(logp, old, None, adv, mask, clip_low=0.2, clip_high=0.2)
    assert loss.item() == pytest.approx(-0.1001667500198441)  # (-e^0.1 + e^-0.1) / 2
    assert stats["clipfrac"].item() == 0.0
    assert stats["ratio"].item() == pytest.approx((math.exp(0.1) + math.exp(-0.1)) / 2)
    loss.backward()
    g = logp.grad.tolist()
    assert g[0] == pytest.approx([-math.exp(0.1) / 4, -math.exp(0.1) / 4, 0.0])
    assert g[1] == pytest.approx([math.exp(-0.1) / 6] * 3)
    assert g[2] == [0.0, 0.0, 0.0]
    # the paper's clip (3e-4, 4e-4): both responses are held at the bounds, no gradient
    tight, tight_stats = gspo_policy_loss(logp, old, None, adv, mask)
    assert tight.item() == pytest.approx((-1.0004 + 0.9997) / 2, abs=1e-7)  # float32 bounds
    assert tight_stats["clipfrac"].item() == 1.0


def test_registry_dispatches_each_variant_with_its_weighting():
    logp, mask, adv = torch.zeros(2, 3), T([[1, 1, 0], [1, 1, 1]]), T([2.0, -1.0])
    p = GroupLossParams(max_len=4)
    assert GROUP_LOSSES["grpo"].fn(logp, None, None, adv, mask, p)[0].item() == pytest.approx(-0.5)
    assert GROUP_LOSSES["dr_grpo"].fn(logp, None, None, adv, mask, p)[0].item() == pytest.approx(-0.125)
    assert GROUP_LOSSES["dapo"].fn(logp, None, None, adv, mask, p)[0].item() == pytest.approx(-0.2)
    assert GROUP_LOSSES["gspo"].fn(logp, None, None, adv, mask, p)[0].item() == pytest.approx(-0.5)
    assert {k: v.reduction for k, v in GROUP_LOSSES.items()} == {
        "grpo": None, "dr_grpo": "sequence", "dapo": "token", "gspo": "sequence"}
