"""PPO / GRPO losses, KL estimators and controllers against hand-computed values."""

import math

import pytest
import torch

from rlhfkit.losses.ppo import (
    AdaptiveKLController,
    FixedKLController,
    grpo_policy_loss,
    kl_penalty,
    policy_loss,
    value_loss,
)

T = torch.tensor
LOG = math.log


def test_kl_estimators_by_hand():
    logp, ref = T([LOG(0.5)]), T([LOG(0.25)])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(0.6931471805599453)  # log 2
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.2402265069591007)  # (log 2)^2 / 2
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.1931471805599453)  # 1/2 - 1 + log 2
    with pytest.raises(KeyError, match="kl_estimator"):
        kl_penalty(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_in_exact_expectation():
    p = T([0.5, 0.3, 0.2])
    q = T([0.2, 0.3, 0.5])
    true_kl = (p * (p / q).log()).sum().item()  # 0.5 log 2.5 + 0.2 log 0.4 = 0.274913
    assert true_kl == pytest.approx(0.5 * LOG(2.5) + 0.2 * LOG(0.4))
    for est in ("k1", "k3"):
        expected = (p * kl_penalty(p.log(), q.log(), est)).sum().item()
        assert expected == pytest.approx(true_kl), est
    assert (kl_penalty(p.log(), q.log(), "k3") >= 0).all()


def test_policy_loss_ratio_one_is_minus_mean_advantage():
    adv = T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = T([[1, 1, 0], [1, 1, 1]])
    logp = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    loss, stats = policy_loss(logp, logp.detach(), adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-3.6)  # -(1 + 2 + 4 + 5 + 6) / 5
    assert stats["clipfrac"].item() == 0.0
    assert stats["ratio"].item() == pytest.approx(1.0)
    assert stats["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv * mask / 5)  # d(-r A)/d logp = -A at r = 1
    seq, _ = policy_loss(logp, logp.detach(), adv, mask, reduction="sequence")
    assert seq.item() == pytest.approx(-3.25)  # -(1.5 + 5) / 2


def test_policy_loss_clipping_by_hand():
    old = torch.zeros(1, 5)
    ratios = [1.5, 0.5, 0.5, 1.5, 7.0]  # last token is padding
    logp = T([[LOG(r) for r in ratios]], requires_grad=True)
    adv = T([[1.0, -1.0, 1.0, -1.0, 100.0]])
    mask = T([[1, 1, 1, 1, 0]])
    loss, stats = policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # tokens: -min(1.5, 1.2) = -1.2 (clipped); -min(-0.5, -0.8) = 0.8 (clipped);
    #         -min(0.5, 0.8) = -0.5; -min(-1.5, -1.2) = 1.5  -> mean 0.6 / 4
    assert loss.item() == pytest.approx(0.15)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    assert stats["ratio"].item() == pytest.approx(1.0)
    # k3 of old vs new: (r - 1) - log r -> (2 (0.5 - log 1.5) + 2 (log 2 - 0.5)) / 4
    assert stats["approx_kl"].item() == pytest.approx(0.14384103622589045)
    loss.backward()
    # clipped tokens get no gradient; unclipped: d(-r A)/d logp / 4 = -r A / 4
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.0, -0.125, 0.375, 0.0])


def test_value_loss_clipping_by_hand():
    values = T([[1.0, 2.0, 50.0]], requires_grad=True)
    old = T([[0.5, 2.0, 0.0]])
    returns = T([[3.0, 2.5, -9.0]])
    mask = T([[1, 1, 0]])
    loss, stats = value_loss(values, old, returns, mask, clip_eps=0.2)
    # token 0: max((1-3)^2, (0.7-3)^2) = 5.29 (clipped wins); token 1: 0.25 either way
    assert loss.item() == pytest.approx(0.5 * (5.29 + 0.25) / 2)
    assert stats["vf_clipfrac"].item() == pytest.approx(0.5)
    # Var(R) = 0.0625, Var(R - V) over [2, 0.5] = 0.5625 -> 1 - 9
    assert stats["explained_variance"].item() == pytest.approx(-8.0)
    loss.backward()
    assert values.grad.tolist()[0] == pytest.approx([0.0, -0.25, 0.0])  # clipped token: no grad
    plain, pstats = value_loss(values, old, returns, mask)
    assert plain.item() == pytest.approx(0.5 * (4.0 + 0.25) / 2)
    assert pstats["vf_clipfrac"].item() == 0.0


def test_explained_variance_perfect_fit_is_one():
    v = T([[1.0, 2.0, 4.0]])
    _, stats = value_loss(v, v, v.clone(), torch.ones(1, 3))
    assert stats["explained_variance"].item() == pytest.approx(1.0)


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.100512)  # error 0.5 -> 0.2; *(1 + 0.2*256/1e4)
    assert ctl.update(T(3.0), 256) == pytest.approx(0.09999737856)  # error -0.5 -> -0.2
    assert ctl.update(6.6, 100) == pytest.approx(0.10009737593856)  # error 0.1 unclipped
    restored = AdaptiveKLController(1.0, 1.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value and restored.target == 6.0
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 10000)


def test_grpo_policy_loss_by_hand():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = T([[1, 1, 0], [1, 1, 1]])
    adv = T([2.0, -1.0])  # one advantage per response
    loss, stats = grpo_policy_loss(logp, None, None, adv, mask, clip_eps=0.2, beta=0.0)
    assert loss.item() == pytest.approx(-0.5)  # -(2 + (-1)) / 2, sequence mean
    tok, _ = grpo_policy_loss(logp, None, None, adv, mask, beta=0.0, reduction="token")
    assert tok.item() == pytest.approx(-0.2)  # -(2*2 - 1*3) / 5
    ref = torch.full((2, 3), -LOG(2.0))  # ref - logp = -log 2 -> k3 = 0.193147 on every token
    loss, stats = grpo_policy_loss(logp, None, ref, adv, mask, clip_eps=0.2, beta=0.1)
    assert loss.item() == pytest.approx(-0.48068528194400545)  # -0.5 + 0.1 * 0.193147
    assert stats["kl"].item() == pytest.approx(0.1931471805599453)
    assert stats["policy_loss"].item() == pytest.approx(-0.5)
    loss.backward()
    # d/dlogp per token: -A + beta * (1 - e^{ref-logp}) = -A + 0.05, divided by the row's token
    # count and by the 2 rows: row 0 (-2 + 0.05) / 2 / 2, row 1 (1 + 0.05) / 3 / 2
    assert logp.grad[0].tolist() == pytest.approx([-0.4875, -0.4875, 0.0])
    assert logp.grad[1].tolist() == pytest.approx([0.175] * 3)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_policy_loss(logp, None, None, adv, mask, beta=0.1)


def test_shape_mismatch_names_the_argument():
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))


def test_value_inside_the_clip_range_is_not_counted_as_clipped():
    """V 0.11, V_old 0.24, eps 0.2: |V - V_old| = 0.13 < 0.2, so the clipped value is V itself.
    In float64, 0.24 + (0.11 - 0.24) = 0.10999999999999999, not 0.11, and with R 0.2 its squared
    error is larger by one rounding step; that must not count as a clip."""
    f64 = torch.float64
    values = T([[0.11]], dtype=f64, requires_grad=True)
    loss, stats = value_loss(values, T([[0.24]], dtype=f64), T([[0.2]], dtype=f64), T([[1]]), clip_eps=0.2)
    assert stats["vf_clipfrac"].item() == 0.0
    assert loss.item() == pytest.approx(0.5 * 0.09**2)  # 0.00405
    loss.backward()
    assert values.grad.item() == pytest.approx(-0.09)  # d/dV 0.5 (V - R)^2 = V - R
    # outside the range: V 0.5, V_old 0.24 -> V_clip 0.44, (0.44 - 1)^2 = 0.3136 > (0.5 - 1)^2 = 0.25
    _, outside = value_loss(T([[0.5]]), T([[0.24]]), T([[1.0]]), T([[1]]), clip_eps=0.2)
    assert outside["vf_clipfrac"].item() == 1.0
