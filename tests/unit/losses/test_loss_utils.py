"""Masked reductions, whitening and log-prob helpers against hand-computed values."""

import math

import pytest
import torch

from rlhfkit.losses.utils import (
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    sequence_logprobs,
)

INF, NAN = float("inf"), float("nan")
X = torch.tensor([[1.0, 2.0, INF], [4.0, NAN, -INF]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)  # valid values: 1, 2, 4


def test_masked_sum_and_mean_ignore_padding_even_inf_nan():
    assert masked_sum(X, MASK).item() == pytest.approx(7.0)
    assert masked_mean(X, MASK).item() == pytest.approx(7.0 / 3.0)
    assert masked_mean(X, MASK, dim=-1).tolist() == pytest.approx([1.5, 4.0])
    assert masked_mean(X, MASK.float(), dim=0).tolist() == pytest.approx([2.5, 2.0, 0.0])  # 0/1 float mask


def test_masked_mean_of_empty_row_is_zero_not_nan():
    mask = torch.tensor([[1, 0], [0, 0]])
    out = masked_mean(torch.tensor([[3.0, 9.0], [5.0, 6.0]]), mask, dim=-1)
    assert out.tolist() == [3.0, 0.0]


def test_masked_var_by_hand():
    # mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9
    assert masked_var(X, MASK).item() == pytest.approx(42 / 9 / 2)  # 7/3
    assert masked_var(X, MASK, unbiased=False).item() == pytest.approx(42 / 9 / 3)  # 14/9
    rows = torch.tensor([[1.0, 3.0, 100.0], [2.0, 2.0, 4.0]])
    m = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert masked_var(rows, m, dim=-1).tolist() == pytest.approx([2.0, 4.0 / 3.0])


def test_masked_var_needs_enough_tokens():
    with pytest.raises(ValueError, match="mask"):
        masked_var(torch.tensor([1.0, 2.0]), torch.tensor([1, 0]))


def test_masked_whiten_by_hand_and_padding_does_not_matter():
    expected = [-0.8728715590735305, -0.21821788976838272, 1.091089448841913]  # (v - 7/3) / sqrt(7/3)
    out = masked_whiten(X, MASK)
    assert [out[0, 0].item(), out[0, 1].item(), out[1, 0].item()] == pytest.approx(expected, abs=1e-6)
    assert out[~MASK].tolist() == [0.0, 0.0, 0.0]
    other_padding = torch.tensor([[1.0, 2.0, 1e6], [4.0, -3.0, 0.0]])
    assert torch.equal(masked_whiten(other_padding, MASK), out)
    keep = masked_whiten(X, MASK, shift_mean=False)  # scale only: mean stays 7/3
    kept = [keep[0, 0].item(), keep[0, 1].item(), keep[1, 0].item()]
    assert kept == pytest.approx([1.460461774259803, 2.115115443564951, 3.424422782175246], abs=1e-6)


def test_masked_whiten_gradient_is_finite_with_inf_padding():
    x = X.clone().requires_grad_(True)
    (masked_whiten(x, MASK) * torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[~MASK].tolist() == [0.0, 0.0, 0.0]


def test_logprobs_from_logits_by_hand_with_temperature():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    # 3 - log(e + e^2 + e^3)
    assert logprobs_from_logits(logits, torch.tensor([2])).item() == pytest.approx(-0.40760596444438013)
    # T = 2: z = [0.5, 1, 1.5]; z_label - log(e^0.5 + e + e^1.5)
    out = logprobs_from_logits(logits.repeat(2, 1), torch.tensor([2, 0]), temperature=2.0)
    assert out.tolist() == pytest.approx([-0.6802696706417346, -1.6802696706417346])


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_logprobs_from_logits_matches_naive_log_softmax(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 4
    labels = torch.randint(0, 11, (3, 5), generator=g)
    naive = torch.log_softmax(logits / temperature, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, labels, temperature), naive)
    half = logprobs_from_logits(logits.bfloat16(), labels, temperature)  # row-wise float32 path
    assert half.dtype == torch.bfloat16
    naive_bf = torch.log_softmax(logits.bfloat16().float() / temperature, -1).gather(-1, labels.unsqueeze(-1))
    torch.testing.assert_close(half.float(), naive_bf.squeeze(-1), atol=0.05, rtol=0.02)


def test_logprobs_from_logits_gradient_matches_naive():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = torch.randint(0, 7, (2, 4), generator=torch.Generator().manual_seed(2))
    (g1,) = torch.autograd.grad(logprobs_from_logits(logits, labels, 0.8).sum(), logits)
    naive = torch.log_softmax(logits / 0.8, -1).gather(-1, labels.unsqueeze(-1)).sum()
    (g2,) = torch.autograd.grad(naive, logits)
    torch.testing.assert_close(g1, g2)


def test_logprobs_from_logits_rejects_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        logprobs_from_logits(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), temperature=0.0)


def test_entropy_from_logits_by_hand():
    uniform = torch.zeros(4)
    assert entropy_from_logits(uniform).item() == pytest.approx(1.3862943611198906)  # log 4
    skew = torch.tensor([0.0, math.log(3.0)])  # p = [1/4, 3/4]
    assert entropy_from_logits(skew).item() == pytest.approx(0.5623351446188083)
    # temperature -> infinity flattens to uniform; very large T gives ~log 2
    assert entropy_from_logits(skew, temperature=1e6).item() == pytest.approx(math.log(2), abs=1e-6)


def test_sequence_logprobs_sum_and_average():
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert sequence_logprobs(logps, mask).tolist() == pytest.approx([-3.0, -1.5])
    assert sequence_logprobs(logps, mask, average=True).tolist() == pytest.approx([-1.5, -0.5])
