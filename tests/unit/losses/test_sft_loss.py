"""SFT cross-entropy as the stage computes it (next_token_targets -> selected_token_loss): causal
shift, prompt masking, token-mean, by hand."""

import math

import pytest
import torch

from rlhfkit.losses.sft import selected_token_loss
from rlhfkit.models.forward import next_token_targets


def _case():
    # B=1, T=3, V=2. labels [-100 (prompt), 1, 0]: logits at t predict the label at t+1.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [100.0, -100.0]]], requires_grad=True)
    labels = torch.tensor([[-100, 1, 0]])
    return logits, labels


def _loss(logits, labels, **kw):
    select, targets = next_token_targets(labels)
    return selected_token_loss(logits[select], targets, **kw)  # logits_at applies the head at select


def test_sft_loss_by_hand():
    logits, labels = _case()
    select, targets = next_token_targets(labels)
    assert select.tolist() == [[True, True, False]] and targets.tolist() == [1, 0]
    loss, stats = selected_token_loss(logits[select], targets)
    # t=0 predicts 1 with p=1/2, t=1 predicts 0 with p=3/4; last position unused
    assert loss.item() == pytest.approx(0.4904146265058631)  # (log 2 + log 4/3) / 2
    assert stats["tokens"].item() == 2
    assert stats["ppl"].item() == pytest.approx(1.632993161855452)  # sqrt(8/3)
    loss.backward()
    assert logits.grad[0, 2].abs().sum().item() == 0.0  # last position has no target
    # d/dz of -log softmax(z)[y] = softmax(z) - onehot(y), / 2 tokens: t=0 -> [1/2, -1/2] / 2
    assert logits.grad[0, 0].tolist() == pytest.approx([0.25, -0.25])


def test_sft_loss_masks_prompt_and_uses_normalizer():
    logits, labels = _case()
    masked = labels.clone()
    masked[0, 1] = -100  # now only t=1 -> label 0 counts
    loss, stats = _loss(logits, masked)
    assert loss.item() == pytest.approx(-math.log(0.75))
    assert stats["tokens"].item() == 1
    loss_n, _ = _loss(logits, labels, normalizer=4.0)  # sum / 4 for gradient accumulation
    assert loss_n.item() == pytest.approx(0.24520731325293155)


def test_sft_loss_all_ignored_is_zero_with_graph():
    logits, labels = _case()
    loss, stats = _loss(logits, torch.full_like(labels, -100))
    assert loss.item() == 0.0 and stats["tokens"].item() == 0
    loss.backward()
    assert logits.grad.abs().sum().item() == 0.0


def test_sft_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        selected_token_loss(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="normalizer"):
        selected_token_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), normalizer=0.0)
