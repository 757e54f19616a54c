"""The fast engine against the reference (``model.generate``) engine, on the tiny random Llama; one
test on the real default model with two short chat prompts."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from rlhfkit.rollout import SamplingParams, generate_texts, make_engine
from rlhfkit.rollout.base import resolve_eos_ids
from rlhfkit.rollout.fast_engine import FastEngine, supports
from rlhfkit.rollout.hf_engine import HFEngine

TEXTS = [
    "Hello there, how are you today?",
    "Hi",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Why is the sky blue?",
]


def ragged_prompts(tok):
    ids = [tok(t)["input_ids"] for t in TEXTS]
    assert len({len(p) for p in ids}) > 1  # a left-padded ragged batch
    return ids


def engines(model, tok):
    return make_engine("hf", model, tok), make_engine("fast", model, tok)


def test_factory(tiny):
    model, tok = tiny
    hf, fast = engines(model, tok)
    assert isinstance(hf, HFEngine) and isinstance(fast, FastEngine) and supports(model)
    with pytest.raises(ValueError, match="rollout engine 'vllm2'"):
        make_engine("vllm2", model, tok)


def test_non_llama_falls_back_to_hf(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok)))
    assert not supports(gpt2)
    assert isinstance(make_engine("fast", gpt2, tok), HFEngine)


def test_bad_prompts_are_named(tiny):
    model, tok = tiny
    _, fast = engines(model, tok)
    with pytest.raises(ValueError, match=r"prompt_ids\[1\]: empty prompt"):
        fast.generate([[1, 2], []], SamplingParams())


def test_greedy_equal_on_ragged_batch(tiny):
    model, tok = tiny
    hf, fast = engines(model, tok)
    params = SamplingParams(temperature=0, max_new_tokens=12)
    a, b = hf.generate(ragged_prompts(tok), params), fast.generate(ragged_prompts(tok), params)
    assert torch.equal(a.prompt_ids, b.prompt_ids) and torch.equal(a.prompt_mask, b.prompt_mask)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=1.0, max_new_tokens=10, seed=11),
     SamplingParams(temperature=0.7, top_p=0.9, top_k=50, max_new_tokens=10, seed=3)],
)
def test_seeded_sampling_identical_to_generate(tiny, params):
    """Same seed -> same tokens: the fast engine draws from the same distribution with the same RNG
    use as transformers' sampler. Repeated prompts exercise the shared-prefill path."""
    model, tok = tiny
    hf, fast = engines(model, tok)
    prompts = ragged_prompts(tok) + ragged_prompts(tok)[:2]
    a, b = hf.generate(prompts, params), fast.generate(prompts, params)
    assert torch.equal(a.response_ids, b.response_ids)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    # a different seed gives different samples (the seed is used at all)
    c = fast.generate(prompts, replace(params, seed=params.seed + 1))
    assert not torch.equal(b.response_ids, c.response_ids)


def test_chat_prompts_share_a_prefix_and_match_generate(tiny):
    """Chat-template prompts share the system-prompt prefix (computed once by the fast engine);
    with a repeated prompt too, outputs still equal the reference engine's."""
    from rlhfkit.rollout.base import encode_prompts
    from rlhfkit.rollout.fast_engine import _common_prefix

    model, tok = tiny
    hf, fast = engines(peaked(model, 5.0), tok)
    prompts = encode_prompts(tok, TEXTS + TEXTS[1:2])
    assert _common_prefix(prompts) >= 5
    for params in (SamplingParams(temperature=0, max_new_tokens=8),
                   SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=8, seed=4)):
        a, b = hf.generate(prompts, params), fast.generate(prompts, params)
        assert torch.equal(a.response_ids, b.response_ids)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def peaked(model, factor=40.0):
    """A copy of the tiny model whose logits are ``factor`` times larger: a peaked distribution."""
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        sharp.model.norm.weight.mul_(factor)
    return sharp


def test_first_token_frequencies_match_the_distribution(tiny):
    """Statistical check, independent of transformers: 600 draws of the first token of one prompt
    (repeated rows) with temperature 2 and top_k 4 against the exact filtered probabilities.
    Chi-square with 3 degrees of freedom: 21.1 is the 1e-4 quantile, so a correct sampler fails
    about once in 10^4 runs (it is seeded, so never), while a wrong temperature or filter fails."""
    model, tok = tiny
    sharp = peaked(model)
    prompt = tok("The weather today is")["input_ids"]
    temperature, k, n = 2.0, 4, 600
    with torch.no_grad():
        logits = sharp(torch.tensor([prompt])).logits[0, -1] / temperature
    top = torch.topk(logits, k)
    probs = torch.softmax(top.values, dim=0)
    assert probs.max() < 0.9 and probs.min() > 0.01  # an informative distribution
    fast = make_engine("fast", sharp, tok)
    params = SamplingParams(temperature=temperature, top_k=k, max_new_tokens=1, seed=5)
    batch = fast.generate([prompt] * n, params)
    first = batch.response_ids[:, 0]
    counts = torch.stack([(first == t).sum() for t in top.indices]).double()
    assert counts.sum() == n
    expected = probs.double() * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 21.1, (counts.tolist(), expected.tolist())
    # the recorded log-probs are those of the temperature-scaled unfiltered distribution
    full = torch.log_softmax(logits, dim=0)
    torch.testing.assert_close(batch.logprobs[:, 0], full[first], atol=1e-5, rtol=0)


def forward_logprobs(model, batch, temperature):
    """log softmax(logits / T) of each response token from one full forward of prompt + response."""
    seq, mask = batch.sequences, batch.attention_mask
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=seq, attention_mask=mask, position_ids=position_ids).logits
    p = batch.prompt_ids.shape[1]
    scaled = logits[:, p - 1: -1].float() / temperature  # predicts response positions
    return torch.log_softmax(scaled, dim=-1).gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("name", ["hf", "fast"])
def test_logprobs_match_a_full_forward(tiny, name):
    model, tok = tiny
    sharp = peaked(model, 10.0)
    engine = make_engine(name, sharp, tok)
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=10, seed=2)
    batch = engine.generate(ragged_prompts(tok), params)
    ref = forward_logprobs(sharp, batch, 0.8)
    m = batch.response_mask.bool()
    assert m.any()
    assert (batch.logprobs - ref)[m].abs().max().item() < 1e-4
    assert (batch.logprobs[~m] == 0).all()


def test_eos_stops_rows_and_sets_finished(tiny):
    model, tok = tiny
    hf, fast = engines(model, tok)
    prompts = ragged_prompts(tok)
    greedy = SamplingParams(temperature=0, max_new_tokens=8, stop_at_eos=False)
    free = fast.generate(prompts, greedy)
    eos = int(free.response_ids[0, 2])  # row 0 will emit it at step 2 (or earlier)
    stop_at = [next((t for t, x in enumerate(row) if x == eos), None)
               for row in free.response_ids.tolist()]
    params = SamplingParams(temperature=0, max_new_tokens=8, eos_token_ids=(eos,))
    for engine in (hf, fast):
        batch = engine.generate(prompts, params)
        for i, t in enumerate(stop_at):
            length = 8 if t is None else t + 1
            assert batch.response_lengths[i].item() == length
            assert batch.finished[i].item() == (t is not None)
            assert batch.response_mask[i].tolist() == [1] * length + [0] * (batch.response_mask.shape[1] - length)
            assert batch.response_ids[i, length:].eq(tok.pad_token_id).all()
            if t is not None:
                assert batch.response_ids[i, t].item() == eos
        assert batch.response_ids.shape[1] == max(
            8 if t is None else t + 1 for t in stop_at)


def test_all_rows_finish_early_stops_the_loop(tiny):
    model, tok = tiny
    _, fast = engines(model, tok)
    prompt = tok("Hi")["input_ids"]
    first = int(fast.generate([prompt], SamplingParams(temperature=0, max_new_tokens=1)).response_ids[0, 0])
    batch = fast.generate([prompt, prompt], SamplingParams(temperature=0, max_new_tokens=20,
                                                             eos_token_ids=(first,)))
    assert batch.response_ids.shape == (2, 1) and batch.finished.all()


def test_max_new_tokens_respected(tiny):
    model, tok = tiny
    for engine in engines(model, tok):
        batch = engine.generate(ragged_prompts(tok), SamplingParams(max_new_tokens=5, seed=0,
                                                                     stop_at_eos=False))
        assert batch.response_ids.shape == (4, 5) and (batch.response_lengths == 5).all()


def test_eos_ids_resolved_from_model_and_tokenizer(tiny):
    model, tok = tiny
    assert tok.eos_token_id in resolve_eos_ids(model, tok, SamplingParams())
    assert resolve_eos_ids(model, tok, SamplingParams(eos_token_ids=(7,))) == (7,)


def test_update_weights_and_lora(tiny):
    """The fast engine drives the live module: a LoRA-wrapped policy and weights loaded through
    update_weights are sampled from, matching the reference engine."""
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    policy = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False))
    hf, fast = engines(policy, tok)
    params = SamplingParams(temperature=0, max_new_tokens=8)
    prompts = ragged_prompts(tok)
    base_out = make_engine("fast", model, tok).generate(prompts, params)
    a, b = hf.generate(prompts, params), fast.generate(prompts, params)
    assert torch.equal(a.response_ids, b.response_ids)
    assert not torch.equal(a.response_ids, base_out.response_ids)  # the adapter is in effect
    # load another model's weights through update_weights: outputs follow
    other = peaked(model, 3.0)
    engine = make_engine("fast", copy.deepcopy(model), tok)
    engine.update_weights(other.state_dict())
    expected = make_engine("hf", other, tok).generate(prompts, params)
    assert torch.equal(engine.generate(prompts, params).response_ids, expected.response_ids)


def test_generate_texts_applies_chat_template(tiny):
    from rlhfkit.data.records import Message

    model, tok = tiny
    _, fast = engines(model, tok)
    convs = [(Message("user", "Hi"),), "Tell me a joke", [{"role": "user", "content": "Why?"}]]
    texts, batch = generate_texts(fast, tok, convs, SamplingParams(temperature=0, max_new_tokens=4))
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    prompt0 = tok.decode(batch.prompt_token_lists()[0])
    assert prompt0.endswith("<|im_start|>assistant\n") and "Hi" in prompt0


def test_default_model_fast_equals_generate():
    """The real SmolLM2-135M-Instruct, two short chat prompts: greedy and seeded sampling agree."""
    from rlhfkit.models import ModelLoadError, load_causal_lm

    try:
        model, tok = load_causal_lm("default")
    except ModelLoadError as err:
        pytest.skip(f"default model unavailable: {err}")
    hf, fast = engines(model, tok)
    prompts = ["What is 2+2? Answer with one number.", "Name a colour."]
    for params in (SamplingParams(temperature=0, max_new_tokens=16),
                   SamplingParams(temperature=1.0, max_new_tokens=16, seed=5)):
        ta, a = generate_texts(hf, tok, prompts, params)
        tb, b = generate_texts(fast, tok, prompts, params)
        assert ta == tb and torch.equal(a.response_ids, b.response_ids)
        assert torch.equal(a.finished, b.finished)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-4, rtol=0)
    assert a.finished.any()  # "2+2" is answered briefly and ends with <|im_end|>


def test_finished_rows_are_compacted_and_samples_stay_identical(tiny):
    """With stop_at_eos, rows that finished leave the caches (compact_finished=0.01: at the first
    finish). The live rows' seeded samples and log-probs still equal generate's, since the sampler
    draws over all B rows as before; without compaction the fast engine gives the same tokens."""
    model, tok = tiny
    sharp = peaked(model, 6.0)
    prompts = ragged_prompts(tok) * 2
    free = make_engine("fast", sharp, tok).generate(
        prompts, SamplingParams(temperature=1.0, max_new_tokens=12, stop_at_eos=False, seed=9))
    # EOS ids that end rows at different steps: what rows 0 and 5 sampled at steps 1 and 4
    eos_ids = (int(free.response_ids[0, 1]), int(free.response_ids[5, 4]))
    params = SamplingParams(temperature=1.0, max_new_tokens=12, eos_token_ids=eos_ids, seed=9)
    ref = make_engine("hf", sharp, tok).generate(prompts, params)
    compacting = make_engine("fast", sharp, tok, compact_finished=0.01).generate(prompts, params)
    plain = make_engine("fast", sharp, tok, compact_finished=0.0).generate(prompts, params)
    lengths = ref.response_lengths.tolist()
    assert min(lengths) < max(lengths) and ref.finished.any()  # rows end at different steps
    assert compacting.meta["compactions"] >= 2 and plain.meta["compactions"] == 0
    for batch in (compacting, plain):
        assert torch.equal(batch.response_ids, ref.response_ids)
        assert torch.equal(batch.response_mask, ref.response_mask)
        assert torch.equal(batch.finished, ref.finished)
        torch.testing.assert_close(batch.logprobs, ref.logprobs, atol=1e-5, rtol=0)
    # until its EOS, each row is what it was without stopping: finished rows do not move others
    for i, n in enumerate(lengths):
        assert compacting.response_ids[i, :n].tolist() == free.response_ids[i, :n].tolist()


def test_compact_finished_is_checked(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="compact_finished must be in"):
        make_engine("fast", model, tok, compact_finished=1.5)


def test_length_groups_sort_and_split():
    from rlhfkit.rollout.fast_engine import _length_groups

    assert _length_groups([5, 1, 9, 3, 7, 2, 8, 4], 4) == [[1, 5], [3, 7], [0, 4], [6, 2]]
    assert _length_groups([3, 1], 4) == [[1], [0]]
    assert _length_groups([4, 4, 4], 1) == [[0, 1, 2]]


def test_grouped_prefill_with_padding_inside_groups_matches_generate(tiny):
    """Ten prompts of ten lengths in four length groups: each group pads its shorter prompts on the
    right (causal attention never reads that padding); outputs equal generate's."""
    from rlhfkit.rollout.fast_engine import _plan

    model, tok = tiny
    base = tok("Once upon a time in a small village by the sea there lived an old fisherman who "
               "told stories to anyone who would listen")["input_ids"]
    prompts = [base[: 3 + 2 * i] for i in (4, 0, 7, 2, 9, 5, 1, 8, 3, 6)]
    plan = _plan(prompts, torch.device("cpu"))
    assert len(plan.groups) == 4
    sizes = [(g.size, g.width) for g in plan.groups]
    assert sum(n for n, _ in sizes) == 10 and all(n >= 2 for n, _ in sizes)
    # every computed token's query is evaluated in exactly one group (the filler, last, in none)
    homes = torch.cat([g.q_idx[g.home] for g in plan.groups]).sort().values
    assert torch.equal(homes, torch.arange(plan.tokens.numel() - 1))
    hf, fast = engines(peaked(model, 5.0), tok)
    for params in (SamplingParams(temperature=0, max_new_tokens=6),
                   SamplingParams(temperature=1.0, max_new_tokens=6, seed=8)):
        a, b = hf.generate(prompts, params), fast.generate(prompts, params)
        assert torch.equal(a.response_ids, b.response_ids)
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
