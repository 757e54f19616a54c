"""DPO on soft labels p = P(chosen better): -p log sigmoid(beta h) - (1-p) log sigmoid(-beta h),
checked by hand; p = 1 is DPO and a constant p = 1 - eps is cDPO."""

import math

import pytest
import torch

from rlhfkit.losses.dpo import DPOInputs, DPOParams, dpo_loss, get_dpo_loss

ZERO = torch.zeros(2)


def test_soft_label_loss_by_hand():
    # h = (-1 - 0) - (-2 - 0) = 1 for both pairs; beta = 1
    chosen, rejected = torch.tensor([-1.0, -1.0]), torch.tensor([-2.0, -2.0])
    loss, _ = dpo_loss(chosen, rejected, ZERO, ZERO, beta=1.0, labels=torch.tensor([0.75, 1.0]))
    ls_pos, ls_neg = math.log(1 / (1 + math.exp(-1))), math.log(1 / (1 + math.exp(1)))
    by_hand = ((-0.75 * ls_pos - 0.25 * ls_neg) + (-ls_pos)) / 2  # (0.563262 + 0.313262) / 2
    assert float(loss) == pytest.approx(by_hand, abs=1e-6) and by_hand == pytest.approx(0.438262, abs=1e-6)


def test_hard_and_constant_labels_are_dpo_and_cdpo():
    gen = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(4, generator=gen) for _ in range(4))
    plain, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta=0.1, labels=torch.ones(4))[0], plain)
    cdpo, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta=0.1, labels=torch.full((4,), 0.8))[0], cdpo)


def test_the_registry_passes_labels_and_rejects_bad_ones():
    x = DPOInputs(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.zeros(1), torch.zeros(1),
                  labels=torch.tensor([0.5]))
    loss, _ = get_dpo_loss("sigmoid")(x, DPOParams(beta=1.0))
    assert float(loss) == pytest.approx(-0.5 * math.log(1 / (1 + math.exp(-1))) - 0.5 * math.log(1 / (1 + math.exp(1))))
    with pytest.raises(ValueError, match="soft labels"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=1.0, labels=torch.tensor([1.5]))
