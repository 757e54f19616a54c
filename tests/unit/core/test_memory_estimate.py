"""The pre-run peak-memory estimate, against hand-computed byte counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlhfkit.train.report import estimate_training_memory


class Fake(torch.nn.Module):
    def __init__(self, attn: str):
        super().__init__()
        self.trained = torch.nn.Parameter(torch.zeros(100))  # fp32
        self.frozen = torch.nn.Parameter(torch.zeros(50), requires_grad=False)
        self.config = SimpleNamespace(hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                      vocab_size=10, _attn_implementation=attn)


@pytest.mark.parametrize("attn, attention_term", [("eager", 5 * 2 * 4 * 12), ("sdpa", 0)])
def test_estimate_counts_weights_grads_adam_and_activations(attn, attention_term):
    est = estimate_training_memory(Fake(attn), micro_batch_size=3, seq_len=4)
    tokens = 12
    assert est.weights == 150 * 4
    assert est.grads == 100 * 4
    assert est.optimizer == 2 * 100 * 4
    # per layer (34*tokens*h + 5*a*s*tokens) * bytes/2, two layers, + 3 * tokens * vocab * bytes of logits
    per_layer = (34 * tokens * 8 + attention_term) * 4 / 2
    assert est.activations == 2 * per_layer + 3 * tokens * 10 * 4
    assert est.total == est.weights + est.grads + est.optimizer + est.activations
