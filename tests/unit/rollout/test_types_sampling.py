"""SamplingParams / RolloutBatch containers and the token-selection maths, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.rollout.base import finish_batch, left_pad
from rlhfkit.rollout.sampling import filter_top_k, filter_top_p, sample_next, seeded
from rlhfkit.rollout.types import RolloutBatch, SamplingParams

NEG = float("-inf")


@pytest.mark.parametrize(
    "kwargs, field",
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
     ({"top_k": -2}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens")],
)
def test_sampling_params_reject_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=f"SamplingParams.{field}"):
        SamplingParams(**kwargs)


def test_sampling_params_greedy_and_logprob_temperature():
    assert SamplingParams(temperature=0).greedy and SamplingParams(temperature=0).logprob_temperature == 1.0
    assert SamplingParams(temperature=0.7).logprob_temperature == 0.7
    assert SamplingParams(eos_token_ids=[2, 5]).eos_token_ids == (2, 5)


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_finish_batch_masks_after_first_eos():
    prompt_ids, prompt_mask = left_pad([[9, 9], [9]], pad_id=0)
    # row 0 emits EOS (2) at t=1 then junk; row 1 never does; row 2 emits EOS at t=0 and again later
    tokens = torch.tensor([[4, 2, 7, 7], [4, 5, 6, 7], [2, 3, 2, 3]])
    prompt_ids = torch.cat([prompt_ids, prompt_ids[:1]])
    prompt_mask = torch.cat([prompt_mask, prompt_mask[:1]])
    logprobs = -torch.arange(1.0, 13.0).view(3, 4)
    batch = finish_batch(prompt_ids, prompt_mask, tokens, logprobs, (2,), pad_id=0, stop_at_eos=True)
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch.response_ids.tolist() == [[4, 2, 0, 0], [4, 5, 6, 7], [2, 0, 0, 0]]
    assert batch.finished.tolist() == [True, False, True]
    assert batch.response_lengths.tolist() == [2, 4, 1]
    assert batch.logprobs.tolist() == [[-1, -2, 0, 0], [-5, -6, -7, -8], [-9, 0, 0, 0]]
    assert batch.response_token_lists() == [[4, 2], [4, 5, 6, 7], [2]]
    assert batch.prompt_token_lists() == [[9, 9], [9], [9, 9]]
    assert batch.sequences.shape == (3, 6) and batch.attention_mask.sum().item() == 5 + 7
    sub = batch.select([2, 0])
    assert sub.response_lengths.tolist() == [1, 2] and sub.finished.tolist() == [True, True]
    assert batch.to("cpu").response_ids.tolist() == batch.response_ids.tolist()


def test_finish_batch_without_eos_stop_keeps_everything():
    ids, mask = left_pad([[1], [1]], pad_id=0)
    tokens = torch.tensor([[2, 3], [3, 2]])
    batch = finish_batch(ids, mask, tokens, torch.zeros(2, 2), (2,), pad_id=0, stop_at_eos=False)
    assert batch.response_mask.tolist() == [[1, 1], [1, 1]]
    assert batch.finished.tolist() == [False, False]


def test_rollout_batch_checks_shapes():
    ids, mask = left_pad([[1], [1]], pad_id=0)
    with pytest.raises(ValueError, match="RolloutBatch.logprobs"):
        RolloutBatch(ids, mask, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3),
                     torch.zeros(2, 2), torch.zeros(2, dtype=torch.bool), torch.full((2,), 3), 0)


def test_filter_top_k_keeps_k_best_and_ties():
    scores = torch.tensor([[1.0, 3.0, 2.0, 0.5], [1.0, 1.0, 1.0, 0.0]])
    out = filter_top_k(scores, 2)
    assert out.tolist() == [[NEG, 3.0, 2.0, NEG], [1.0, 1.0, 1.0, NEG]]


def test_filter_top_p_hand_computed():
    # probabilities 0.5, 0.3, 0.15, 0.05; ascending cumulative sums 0.05, 0.2, 0.5, 1.0.
    # A token goes when its cumulative sum <= 1 - top_p: top_p 0.75 and 0.79 keep {0.5, 0.3},
    # 0.81 keeps the 0.15 token too, a tiny top_p keeps only the best token.
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    scores = probs.log()
    kept = lambda p: torch.isfinite(filter_top_p(scores, p))[0].tolist()  # noqa: E731
    assert kept(0.75) == [False, True, False, True]
    assert kept(0.79) == [False, True, False, True]
    assert kept(0.81) == [True, True, False, True]
    assert kept(0.01) == [False, True, False, False]
    assert kept(1.0) == [True, True, True, True]


def test_sample_next_logprob_is_unfiltered_temperature_scaled():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    params = SamplingParams(temperature=0.5, top_k=1, seed=0)
    tokens, logprobs = sample_next(logits, params)
    assert tokens.tolist() == [0]  # top_k=1 leaves one choice
    scaled = [4.0, 2.0, 0.0, -2.0]
    expected = 4.0 - math.log(sum(math.exp(s) for s in scaled))
    assert logprobs.item() == pytest.approx(expected, abs=1e-6)
    greedy_tok, greedy_lp = sample_next(logits, SamplingParams(temperature=0))
    assert greedy_tok.tolist() == [0]
    assert greedy_lp.item() == pytest.approx(2.0 - math.log(sum(math.exp(s) for s in [2, 1, 0, -1])),
                                             abs=1e-6)


def test_seeded_restores_the_callers_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with seeded(123):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded(123):
        assert torch.equal(torch.rand(3), inside)
