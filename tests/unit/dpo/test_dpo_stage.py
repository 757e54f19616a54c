"""DPO stage pieces: the packed pair forward equals plain forwards, pair encoding, the reference
cache, the LoRA reference (base with the adapter off), and per-pair evaluation metrics."""

import copy

import pytest
import torch

from rlhfkit.data.records import Message, PreferencePair
from rlhfkit.losses.dpo import DPOInputs
from rlhfkit.losses.utils import logprobs_from_logits
from rlhfkit.stages.dpo import (
    DPOConfig,
    EncodedPair,
    PairBatches,
    collate_pairs,
    encode_pair,
    orient,
    pair_logps,
    per_pair_margins,
    reference_logps,
)


def rand_ids(gen, n):
    return torch.randint(3, 5000, (n,), generator=gen).tolist()


@pytest.fixture(scope="module")
def pairs():
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5, 9), (12, 3, 1), (4, 11, 6), (1, 2, 2)]  # (prompt, chosen, rejected) lengths
    return [EncodedPair(rand_ids(gen, p), rand_ids(gen, c), rand_ids(gen, r)) for p, c, r in shapes]


def plain_logp(model, prompt, response):
    """log pi(response | prompt) from an ordinary separate forward pass over prompt + response."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0, :-1]
    return logprobs_from_logits(logits, ids[0, 1:])[len(prompt) - 1:].sum()


def test_collate_layout_by_hand():
    batch = collate_pairs([EncodedPair([10, 11], [20, 21], [30])], pad_id=0)
    assert batch["input_ids"].tolist() == [[10, 11, 20, 21, 30]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2]]  # rejected restarts after the prompt
    allowed = batch["allowed"][0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0],
                       [1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 0],
                       [1, 1, 0, 0, 1]]  # rejected sees the prompt and itself, never chosen
    # chosen 20 <- col 1, 21 <- col 2; rejected 30 <- col 1 (the last prompt token)
    assert batch["hidden_index"].tolist() == [1, 2, 1]
    assert batch["targets"].tolist() == [20, 21, 30]
    assert batch["segment"].tolist() == [0, 0, 1]
    assert batch["chosen_lengths"].tolist() == [2] and batch["rejected_lengths"].tolist() == [1]


def test_padding_rows_see_only_themselves():
    batch = collate_pairs([EncodedPair([1], [2], [3]), EncodedPair([1, 2], [3, 4], [5, 6])], pad_id=0)
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0]
    assert batch["allowed"][0, 0, 3:, :].int().tolist() == [[0, 0, 0, 1, 0, 0],
                                                            [0, 0, 0, 0, 1, 0],
                                                            [0, 0, 0, 0, 0, 1]]
    assert batch["hidden_index"].tolist()[:2] == [0, 0]  # row 0: both responses predicted from col 0
    assert batch["hidden_index"].tolist()[2:] == [6 + 1, 6 + 2, 6 + 1, 6 + 4]


def test_packed_logps_equal_separate_forwards(tiny, pairs):
    model, _ = tiny
    model.eval()
    with torch.no_grad():
        chosen, rejected = pair_logps(model, collate_pairs(pairs, pad_id=0))
        for i, p in enumerate(pairs):
            assert abs(float(chosen[i]) - float(plain_logp(model, p.prompt_ids, p.chosen_ids))) < 1e-4
            assert abs(float(rejected[i]) - float(plain_logp(model, p.prompt_ids, p.rejected_ids))) < 1e-4


def test_packed_gradients_equal_separate_forwards(tiny, pairs):
    model, _ = tiny
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    chosen, rejected = pair_logps(a, collate_pairs(pairs, pad_id=0))
    (chosen - 0.5 * rejected).sum().backward()
    total = sum(plain_logp(b, p.prompt_ids, p.chosen_ids) - 0.5 * plain_logp(b, p.prompt_ids, p.rejected_ids)
                for p in pairs)
    total.backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4, rtol=1e-3), name


def test_encode_pair_cuts_the_prompt_once_for_both_responses(tiny):
    _, tok = tiny
    pair = PreferencePair(prompt=(Message("user", "word " * 60),), chosen="yes " * 40, rejected="no")
    full = encode_pair(tok, pair, 10_000)
    enc = encode_pair(tok, pair, 64)
    assert enc.prompt_truncated and enc.chosen_truncated and not enc.rejected_truncated
    assert enc.prompt_ids == full.prompt_ids[-len(enc.prompt_ids):]  # the end of the prompt is kept
    assert len(enc.prompt_ids) + len(enc.chosen_ids) == 64
    assert enc.rejected_ids == full.rejected_ids and enc.rejected_ids[-1] == tok.eos_token_id
    assert not full.truncated


def test_orient_drops_ties_and_swaps_reversed_labels():
    prompt = (Message("user", "q"),)
    pairs = [PreferencePair(prompt, "a", "b"), PreferencePair(prompt, "c", "d", label=0.5),
             PreferencePair(prompt, "e", "f", label=0.2), PreferencePair(prompt, "g", "h", label=0.9)]
    out, counts = orient(pairs)
    assert [(p.chosen, p.rejected) for p in out] == [("a", "b"), ("f", "e"), ("g", "h")]
    assert out[1].label == pytest.approx(0.8)
    assert counts == {"tie": 1, "swapped": 1, "soft label used as hard": 2}


def test_batches_are_deterministic_and_cover_every_pair(pairs):
    many = pairs * 5
    a, b = PairBatches(many, 3, 0, seed=1, epoch=2), PairBatches(many, 3, 0, seed=1, epoch=2)
    assert a.order == b.order
    assert sorted(i for batch in a.order for i in batch) == list(range(len(many)))
    assert PairBatches(many, 3, 0, seed=1, epoch=3).order != a.order
    assert a[0]["index"].tolist() == a.order[0]


def test_lora_reference_is_the_base_with_the_adapter_off(tiny, pairs):
    from rlhfkit.models.lora import apply_lora
    from rlhfkit.train.config import LoraConfig

    model, _ = tiny
    base = copy.deepcopy(model)
    peft_model = apply_lora(copy.deepcopy(model), LoraConfig(enabled=True, r=4, alpha=8))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter: the policy now differs from the base
    ref = reference_logps(peft_model, pairs, pad_id=0, batch_size=2)
    expected = reference_logps(base, pairs, pad_id=0, batch_size=3)
    assert torch.allclose(ref, expected, atol=1e-5)
    with torch.no_grad():
        chosen, _ = pair_logps(peft_model, collate_pairs(pairs, pad_id=0))
    assert not torch.allclose(chosen, expected[:, 0], atol=1e-2)  # the adapter is on again


def test_per_pair_margins_by_hand():
    inputs = DPOInputs(policy_chosen_logps=torch.tensor([-1.0, -4.0]),
                       policy_rejected_logps=torch.tensor([-3.0, -2.0]),
                       ref_chosen_logps=torch.tensor([-2.0, -4.0]),
                       ref_rejected_logps=torch.tensor([-2.0, -2.0]),
                       chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 1]))
    # dpo: beta * ((pc - rc) - (pr - rr)) = 0.5 * ((1) - (-1)) = 1.0, and 0.5 * (0 - 0) = 0
    cfg = DPOConfig(beta=0.5)
    assert per_pair_margins(inputs, cfg) == pytest.approx([1.0, 0.0])
    # simpo: beta * (pc / |c| - pr / |r|) = 2 * (-0.5 + 1) = 1.0, and 2 * (-1 + 2) = 2.0
    assert per_pair_margins(inputs, DPOConfig(loss="simpo", beta=2.0)) == pytest.approx([1.0, 2.0])


def test_config_rejects_label_smoothing_outside_cdpo():
    from rlhfkit.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="label_smoothing"):
        load_config(DPOConfig, None, ["label_smoothing=0.1"])
    with pytest.raises(ConfigError, match="cdpo"):
        load_config(DPOConfig, None, ["loss=cdpo"])
    assert load_config(DPOConfig, None, ["loss=cdpo", "label_smoothing=0.1"]).needs_reference
    assert not load_config(DPOConfig, None, ["loss=simpo"]).needs_reference
