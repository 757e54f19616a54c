"""final_hidden_at runs the last decoder layer only where a reward is read: it must equal the full
Hugging Face forward at those positions, values and gradients, for every batch layout."""

import pytest
import torch

from rlhfkit.data.collate import pad
from rlhfkit.models import forward
from rlhfkit.models.forward import final_hidden_at, layer_range, supports_partial_last_layer
from rlhfkit.data.collate import collate_shared_prefix
from rlhfkit.models.reward import backbone_of, position_ids_from_mask, reward_model_from_causal_lm

GROUPS = [
    ([5, 6, 7, 8], [[10, 11, 2], [12, 2]]),
    ([9, 3], [[4, 4, 4, 4, 2], [7, 2], [8, 8, 2]]),
    ([20, 21, 22, 23, 24, 25, 26], [[30, 2], [31, 32, 33, 2]]),
]


@pytest.fixture()
def backbone():
    from rlhfkit.models import load_causal_lm

    model = reward_model_from_causal_lm(load_causal_lm("tiny")[0], seed=0)
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial norms so a skipped norm or residual would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return backbone_of(model)


def full_at(backbone, index, **inputs):
    rows = torch.arange(index.shape[0]).unsqueeze(1)
    return backbone(use_cache=False, **inputs).last_hidden_state[rows, index]


def grads_of(backbone, out):
    backbone.zero_grad()
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}


def test_the_tiny_llama_takes_the_partial_path(backbone):
    assert supports_partial_last_layer(backbone)


def test_shared_prefix_batch_values_and_gradients(backbone):
    batch = collate_shared_prefix(GROUPS, 0)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "position_ids": batch["position_ids"]}
    want = full_at(backbone, batch["ends"], **inputs)
    got = final_hidden_at(backbone, batch["ends"], batch["attention_mask"], batch["position_ids"],
                          input_ids=batch["input_ids"])
    assert got.shape == want.shape == (3, 3, 64)
    assert torch.allclose(got, want, atol=1e-5)
    g_want, g_got = grads_of(backbone, want), grads_of(backbone, got)
    assert g_want.keys() == g_got.keys() and len(g_got) > 0
    for name in g_want:  # float32 sums in another order: tolerance relative to the tensor's scale
        scale = float(g_want[name].abs().max())
        assert torch.allclose(g_got[name], g_want[name], rtol=1e-5, atol=1e-6 * max(1.0, scale)), name


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_read_at_the_last_real_token(backbone, side):
    seqs = [[5, 6, 7, 8, 2], [9, 2], [1, 3, 3, 2]]
    ids, mask = pad(seqs, 0, side=side), pad([[1] * len(s) for s in seqs], 0, side=side)
    positions = position_ids_from_mask(mask)
    index = torch.tensor([[len(s) - 1] for s in seqs]) if side == "right" else torch.full((3, 1), 4)
    want = full_at(backbone, index, input_ids=ids, attention_mask=mask, position_ids=positions)
    got = final_hidden_at(backbone, index, mask, positions, input_ids=ids)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("start_layer", [0, 1, 2])
def test_from_cached_lower_layers(backbone, start_layer):
    """inputs_embeds = the output of the lowest start_layer layers (2 = all: only the final norm)."""
    batch = collate_shared_prefix(GROUPS, 0)
    kwargs = {"attention_mask": batch["attention_mask"], "position_ids": batch["position_ids"],
              "use_cache": False}
    with torch.no_grad(), layer_range(backbone, 0, start_layer, final_norm=False):
        hidden_in = backbone(input_ids=batch["input_ids"], **kwargs).last_hidden_state
    want = full_at(backbone, batch["ends"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"])
    got = final_hidden_at(backbone, batch["ends"], batch["attention_mask"], batch["position_ids"],
                          inputs_embeds=hidden_in, start_layer=start_layer)
    assert torch.allclose(got, want, atol=1e-5)


def test_other_decoders_fall_back_to_the_full_forward(backbone, monkeypatch):
    monkeypatch.setattr(forward, "_PLAIN_LAYERS", ())
    assert not supports_partial_last_layer(backbone)
    batch = collate_shared_prefix(GROUPS, 0)
    got = final_hidden_at(backbone, batch["ends"], batch["attention_mask"], batch["position_ids"],
                          input_ids=batch["input_ids"])
    want = full_at(backbone, batch["ends"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"])
    assert torch.equal(got, want)
