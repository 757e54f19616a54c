"""Reward-model losses against hand-computed values."""

import pytest
import torch

from rlhfkit.losses.reward import (
    bradley_terry_loss,
    listwise_loss,
    mixed_reward_loss,
    plackett_luce_loss,
    preference_bce_loss,
    score_regression_loss,
)

T = torch.tensor


def test_bradley_terry_single_pair_and_gradient():
    rc = T([1.0], requires_grad=True)
    loss, stats = bradley_terry_loss(rc, T([0.0]))
    assert loss.item() == pytest.approx(0.31326168751822286)  # log(1 + e^-1)
    loss.backward()
    assert rc.grad.item() == pytest.approx(-0.2689414213699951)  # -(1 - sigmoid(1))


def test_bradley_terry_batch_stats_count_ties_apart():
    loss, stats = bradley_terry_loss(T([1.0, 0.0, 2.0]), T([0.0, 0.0, 3.0]))
    # (log(1+e^-1) + log 2 + log(1+e)) / 3
    assert loss.item() == pytest.approx(0.7732235185321303)
    assert stats["accuracy"].item() == pytest.approx(1 / 3)
    assert stats["tie_rate"].item() == pytest.approx(1 / 3)
    assert stats["margin"].item() == pytest.approx(0.0)  # (1 + 0 - 1) / 3
    assert stats["rewards/chosen"].item() == pytest.approx(1.0)
    assert stats["rewards/rejected"].item() == pytest.approx(1.0)


def test_bradley_terry_margin_inside_sigmoid():
    loss, _ = bradley_terry_loss(T([1.0]), T([0.0]), margin=T([0.5]))
    assert loss.item() == pytest.approx(0.4740769841801067)  # log(1 + e^-0.5)
    loss_f, _ = bradley_terry_loss(T([1.0]), T([0.0]), margin=0.5)
    assert loss_f.item() == pytest.approx(loss.item())


def test_preference_bce_soft_and_tie_labels():
    loss, stats = preference_bce_loss(T([1.0, 1.0, 0.0]), T([0.0, 0.0, 0.0]), T([1.0, 0.5, 0.0]))
    # y=1,d=1: log(1+e^-1); y=.5,d=1: (log(1+e^-1) + log(1+e))/2; y=0,d=0: log 2
    assert loss.item() == pytest.approx(0.6065568518654637)
    assert stats["accuracy"].item() == pytest.approx(0.5)  # decisive rows 0 (right) and 2 (tie)
    assert stats["tie_rate"].item() == pytest.approx(0.5)
    assert stats["label_tie_rate"].item() == pytest.approx(1 / 3)


def test_preference_bce_with_hard_label_equals_bradley_terry():
    r1, r2 = T([0.3, -1.2, 2.0]), T([0.1, 0.4, -0.5])
    bce, _ = preference_bce_loss(r1, r2, T([1.0, 1.0, 1.0]))
    bt, _ = bradley_terry_loss(r1, r2)
    assert bce.item() == pytest.approx(bt.item())


def test_preference_bce_rejects_labels_outside_unit_interval():
    with pytest.raises(ValueError, match="label"):
        preference_bce_loss(T([1.0]), T([0.0]), T([1.5]))


def test_listwise_k3_by_hand_with_mask():
    scores = T([[2.0, 1.0, 0.0], [0.0, 1.0, 99.0]], requires_grad=True)
    target = T([0, 1])
    valid = T([[True, True, True], [True, True, False]])
    loss, stats = listwise_loss(scores, target, valid)
    # row 0: log(e^2 + e + 1) - 2 = 0.407606; row 1 (third masked): log(1 + e) - 1 = 0.313262
    assert loss.item() == pytest.approx(0.36043382598130147)
    assert stats["accuracy"].item() == 1.0
    assert stats["margin"].item() == pytest.approx(1.0)
    loss.backward()
    assert scores.grad[1, 2].item() == 0.0  # an invalid candidate gets no gradient
    assert torch.isfinite(scores.grad).all()


def test_listwise_default_target_is_first_and_bad_target_fails():
    loss, _ = listwise_loss(T([[2.0, 1.0, 0.0]]))
    assert loss.item() == pytest.approx(0.40760596444438013)
    with pytest.raises(ValueError, match="target_index"):
        listwise_loss(T([[0.0, 1.0, 2.0]]), T([2]), T([[True, True, False]]))


def test_plackett_luce_k3_by_hand():
    scores = T([[3.0, 1.0, 2.0], [2.0, 0.0, 5.0]], requires_grad=True)
    valid = T([[True, True, True], [True, True, False]])
    loss, stats = plackett_luce_loss(scores, valid)
    # row 0: [log(e^3+e+e^2) - 3] + [log(e+e^2) - 1] = 0.407606 + 1.313262 = 1.7208677
    # row 1 (2 valid): log(1 + e^-2) = 0.126928
    assert loss.item() == pytest.approx((1.7208676519626027 + 0.1269280110429725) / 2)
    # pairs: row 0 (0,1) ok, (0,2) ok, (1,2) wrong; row 1 (0,1) ok -> 3/4
    assert stats["accuracy"].item() == pytest.approx(0.75)
    assert stats["tie_rate"].item() == 0.0
    assert stats["top1_accuracy"].item() == 1.0
    loss.backward()
    assert scores.grad[1, 2].item() == 0.0
    assert torch.isfinite(scores.grad).all()


def test_plackett_luce_two_candidates_equals_bradley_terry():
    pl, _ = plackett_luce_loss(T([[0.7, -0.2], [1.0, 3.0]]))
    bt, _ = bradley_terry_loss(T([0.7, 1.0]), T([-0.2, 3.0]))
    assert pl.item() == pytest.approx(bt.item())


def test_score_regression_by_hand():
    loss, stats = score_regression_loss(T([1.0, 2.0]), T([0.0, 4.0]))
    assert loss.item() == pytest.approx(2.5)  # (1 + 4) / 2
    assert stats["mae"].item() == pytest.approx(1.5)


def test_mixed_reward_loss_weighted_sum_and_missing_parts():
    parts = {"score": T(2.0), "compare": T(1.0), "language": T(4.0)}
    loss, stats = mixed_reward_loss(parts, {"score": 1.0, "compare": 0.5, "language": 0.25})
    assert loss.item() == pytest.approx(3.5)  # 2 + 0.5 + 1
    assert stats["language/weighted"].item() == pytest.approx(1.0)
    assert stats["compare/loss"].item() == pytest.approx(1.0)
    only, _ = mixed_reward_loss({"compare": T(1.0)}, {"score": 1.0, "compare": 0.5, "language": 0.25})
    assert only.item() == pytest.approx(0.5)
    with pytest.raises(KeyError, match="weight"):
        mixed_reward_loss({"score": T(1.0)}, {"compare": 1.0})
    with pytest.raises(KeyError, match="unknown component"):
        mixed_reward_loss({"style": T(1.0)}, {"style": 1.0})
