"""KTO (Ethayarajh et al. 2024): the loss with desirable/undesirable weights and its reference point,
against hand-computed values."""

import math

import pytest
import torch

from rlhfkit.losses.kto import kto_loss, kto_reference_point, mismatched_pairs

T = torch.tensor


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_reference_point_is_the_clamped_detached_mismatched_kl():
    policy = T([-4.0, -5.0], requires_grad=True)
    z0 = kto_reference_point(policy, T([-4.2, -5.4]))
    assert z0.item() == pytest.approx(0.3)  # mean(0.2, 0.4)
    assert not z0.requires_grad
    assert kto_reference_point(T([-4.0]), T([-3.0])).item() == 0.0  # mean -1 clamped at 0
    assert mismatched_pairs(3) == [(0, 1), (1, 2), (2, 0)]
    with pytest.raises(ValueError, match="at least 2"):
        mismatched_pairs(1)


def test_kto_loss_by_hand():
    """r = [0.5, -0.5, -0.5], z0 0.3, beta 0.5: desirable 1 - sig(0.5 (0.5 - 0.3)) = 1 - sig(0.1);
    undesirable 1 - sig(0.5 (0.3 + 0.5)) = 1 - sig(0.4); L = mean."""
    policy = T([-1.0, -2.0, -3.0], requires_grad=True)
    ref = T([-1.5, -1.5, -2.5])
    good = T([True, False, False])
    loss, stats = kto_loss(policy, ref, good, z0=T(0.3), beta=0.5)
    assert loss.item() == pytest.approx((1 - sig(0.1) + 2 * (1 - sig(0.4))) / 3)  # 0.425882
    assert stats["kl"].item() == pytest.approx(0.3)
    assert stats["rewards/desirable"].item() == pytest.approx(0.25)  # beta * r
    assert stats["rewards/undesirable"].item() == pytest.approx(-0.25)
    assert stats["rewards/accuracy"].item() == 1.0
    loss.backward()
    # d/dr: desirable -beta s (1 - s) at 0.1, undesirable +beta s (1 - s) at 0.4, over 3 examples
    assert policy.grad.tolist() == pytest.approx(
        [-0.5 * sig(0.1) * (1 - sig(0.1)) / 3] + [0.5 * sig(0.4) * (1 - sig(0.4)) / 3] * 2)


def test_kto_weights_and_an_unbalanced_batch():
    policy, ref, good = T([-1.0, -2.0, -3.0]), T([-1.5, -1.5, -2.5]), T([True, False, False])
    loss, _ = kto_loss(policy, ref, good, z0=0.3, beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    assert loss.item() == pytest.approx((2 * (1 - sig(0.1)) + 2 * 0.5 * (1 - sig(0.4))) / 3)  # 0.450451
    only_bad, stats = kto_loss(policy[1:], ref[1:], good[1:], z0=0.0, beta=0.5)
    assert only_bad.item() == pytest.approx(1 - sig(0.25))  # z0 0: sig(0.5 * 0.5)
    assert stats["rewards/desirable"].item() == 0.0  # none in the batch
    with pytest.raises(ValueError, match="beta"):
        kto_loss(policy, ref, good, z0=0.0, beta=0.0)
