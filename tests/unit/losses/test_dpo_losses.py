"""DPO family against hand-computed values from the papers' formulas, and the registry."""

import math

import pytest
import torch

from rlhfkit.losses.dpo import (
    DPO_LOSSES,
    REFERENCE_FREE,
    DPOInputs,
    DPOParams,
    dpo_loss,
    get_dpo_loss,
    ipo_loss,
    orpo_loss,
    simpo_loss,
)

T = torch.tensor
# h = (log pi_c - log ref_c) - (log pi_r - log ref_r) = (-1 + 2) - (-3 + 2) = 2
PC, PR, RC, RR = T([-1.0]), T([-3.0]), T([-2.0]), T([-2.0])


def test_dpo_by_hand_stats_and_gradient():
    pc = PC.clone().requires_grad_(True)
    loss, stats = dpo_loss(pc, PR, RC, RR, beta=0.1)
    assert loss.item() == pytest.approx(0.5981388693815918)  # -log sigmoid(0.1 * 2)
    assert stats["rewards/chosen"].item() == pytest.approx(0.1)
    assert stats["rewards/rejected"].item() == pytest.approx(-0.1)
    assert stats["rewards/margin"].item() == pytest.approx(0.2)
    assert stats["rewards/accuracy"].item() == 1.0
    assert stats["logps/chosen"].item() == -1.0 and stats["logps/rejected"].item() == -3.0
    loss.backward()
    assert pc.grad.item() == pytest.approx(-0.04501660026875222)  # -beta * sigmoid(-beta h)


def test_cdpo_label_smoothing_by_hand():
    loss, _ = dpo_loss(PC, PR, RC, RR, beta=0.1, label_smoothing=0.1)
    # 0.9 * log(1 + e^-0.2) + 0.1 * log(1 + e^0.2)
    assert loss.item() == pytest.approx(0.6181388693815918)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, label_smoothing=0.5)


def test_ipo_by_hand():
    loss, _ = ipo_loss(PC, PR, RC, RR, beta=0.1)
    assert loss.item() == pytest.approx(9.0)  # (2 - 1/(2*0.1))^2 = (2 - 5)^2
    loss, _ = ipo_loss(PC, PR, RC, RR, beta=0.5)
    assert loss.item() == pytest.approx(1.0)  # (2 - 1)^2


def test_simpo_by_hand():
    loss, stats = simpo_loss(T([-1.0]), T([-1.5]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(0.4740769841801067)  # -log sigmoid(2*(-1) - 2*(-1.5) - 0.5)
    assert stats["rewards/margin"].item() == pytest.approx(1.0)


def test_orpo_by_hand():
    chosen, rejected = T([math.log(0.5)]), T([math.log(0.25)])
    # odds: 0.5/0.5 = 1 and 0.25/0.75 = 1/3 -> log odds ratio = log 3; L_OR = log(1 + 1/3)
    loss, stats = orpo_loss(-chosen, chosen, rejected, lambda_=0.1)
    assert stats["or_loss"].item() == pytest.approx(0.28768207245178085)
    assert stats["log_odds_ratio"].item() == pytest.approx(math.log(3.0))
    assert stats["rewards/rejected"].item() == pytest.approx(-1.0986122886681098)
    assert loss.item() == pytest.approx(0.7219153878051233)  # log 2 + 0.1 * log(4/3)


def test_orpo_log_odds_stable_near_zero_logp():
    chosen = T([-1e-7, -30.0], requires_grad=True)
    loss, _ = orpo_loss(T(1.0), chosen, T([-2.0, -31.0]), lambda_=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(chosen.grad).all()


def _inputs():
    # sums over 2-token responses: averages -1, -3 (policy) and -2, -2 (reference)
    two = T([2.0])
    return DPOInputs(T([-2.0]), T([-6.0]), T([-4.0]), T([-4.0]), chosen_lengths=two, rejected_lengths=two)


def test_registry_uniform_calling_convention():
    x, p = _inputs(), DPOParams(beta=0.1, label_smoothing=0.1, simpo_gamma=0.5, orpo_lambda=0.1)
    # dpo on sums: h = (-2 + 4) - (-6 + 4) = 4
    assert DPO_LOSSES["dpo"](x, p)[0].item() == pytest.approx(math.log1p(math.exp(-0.4)))
    assert DPO_LOSSES["sigmoid"](x, p)[0].item() == pytest.approx(math.log1p(math.exp(-0.4)))
    cdpo = 0.9 * math.log1p(math.exp(-0.4)) + 0.1 * math.log1p(math.exp(0.4))
    assert DPO_LOSSES["cdpo"](x, p)[0].item() == pytest.approx(cdpo)
    assert DPO_LOSSES["ipo"](x, p)[0].item() == pytest.approx(9.0)  # averages: h = 2
    simpo = math.log1p(math.exp(-(0.1 * -1.0 - 0.1 * -3.0 - 0.5)))  # -log sigmoid(-0.3)
    assert DPO_LOSSES["simpo"](x, p)[0].item() == pytest.approx(simpo)
    assert set(DPO_LOSSES) == {"sigmoid", "dpo", "cdpo", "ipo", "simpo", "orpo"}
    keys = {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin",
            "logps/chosen", "logps/rejected"}
    for name, fn in DPO_LOSSES.items():
        _, stats = fn(x, p)
        assert keys <= set(stats), name
        assert all(not v.requires_grad for v in stats.values()), name


def test_registry_reference_free_and_errors():
    x = DPOInputs(T([-2.0]), T([-6.0]), chosen_lengths=T([2.0]), rejected_lengths=T([2.0]))
    p = DPOParams(beta=2.0, simpo_gamma=0.5, orpo_lambda=0.1)
    assert REFERENCE_FREE == {"simpo", "orpo"}
    for name in REFERENCE_FREE:
        loss, _ = DPO_LOSSES[name](x, p)
        assert torch.isfinite(loss)
    # ORPO default NLL = -average chosen log-prob = 1
    orpo, stats = DPO_LOSSES["orpo"](x, p)
    assert stats["nll"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        DPO_LOSSES["dpo"](x, p)
    with pytest.raises(ValueError, match="label_smoothing"):
        DPO_LOSSES["cdpo"](_inputs(), DPOParams())
    with pytest.raises(ValueError, match="chosen_lengths"):
        DPO_LOSSES["simpo"](DPOInputs(T([-1.0]), T([-2.0])), p)
    with pytest.raises(KeyError, match="unknown DPO loss"):
        get_dpo_loss("kto")
    assert get_dpo_loss("ipo") is DPO_LOSSES["ipo"]
