"""Sequence layout and the training-time forward passes against plain references: the log-probs
the update uses must be the sampler's (ratio 1 at the first minibatch), and values must be read at
the positions that predict each response token."""

import pytest
import torch

from rlhfkit.rl.experience import detach_batch
from rlhfkit.rl.forward import build_sequences, token_logprobs, value_model_values


pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_sequences_layout_by_hand():
    # two prompts left-padded to width 4 (one all-pad leading column), responses right-padded to 3
    prompt_ids = torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    response_ids = torch.tensor([[11, 12, 0], [13, 0, 0]])
    response_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    seq = build_sequences(prompt_ids, prompt_mask, response_ids, response_mask)
    # column 0 is padding in every row and the 3rd response column is empty: both cut
    assert seq.input_ids.tolist() == [[0, 5, 6, 11, 12], [7, 8, 9, 13, 0]]
    assert seq.attention_mask.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert seq.position_ids.tolist() == [[0, 0, 1, 2, 3], [0, 1, 2, 3, 3]]
    assert seq.start == 2 and seq.length == 2  # hidden state at column 2 predicts response token 0


def _reference_logprobs(model, seq, response_ids, temperature):
    """Plain full forward with the LM head everywhere, then gather (the slow definition)."""
    logits = model(input_ids=seq.input_ids, attention_mask=seq.attention_mask,
                   position_ids=seq.position_ids).logits.float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    out = torch.zeros(response_ids.shape[0], seq.length)
    for t in range(seq.length):
        out[:, t] = logp[:, seq.start + t].gather(1, response_ids[:, t:t + 1]).squeeze(1)
    return out


@pytest.mark.parametrize("engine_name", ["hf", "fast"])
def test_training_logprobs_match_the_sampler_and_a_plain_forward(tiny, engine_name):
    from rlhfkit.rollout import SamplingParams, encode_prompts, make_engine

    model, tok = tiny
    engine = make_engine(engine_name, model, tok)
    ids = encode_prompts(tok, ["hello there", "what is two plus two and why?", "hi"])
    batch = detach_batch(engine.generate(ids, SamplingParams(temperature=0.7, max_new_tokens=6, seed=3)))
    seq = build_sequences(batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    with torch.no_grad():
        logp, entropy, values = token_logprobs(model, seq, batch.response_ids, 0.7, entropy="stat")
        ref = _reference_logprobs(model, seq, batch.response_ids, 0.7)
    mask = batch.response_mask[:, :seq.length].bool()
    assert values is None and entropy.shape == logp.shape
    assert torch.allclose(logp[mask], ref[mask], atol=1e-4)
    assert torch.allclose(logp[mask], batch.logprobs[:, :seq.length][mask], atol=1e-4)
    assert bool((entropy[mask] > 0).all())


def test_value_head_and_value_model_read_the_predicting_positions(tiny):
    from transformers import AutoModelForSequenceClassification

    from rlhfkit.models.loading import resolve_model_path

    model, _ = tiny
    prompt_ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    response_ids = torch.tensor([[11, 12], [13, 0]])
    response_mask = torch.tensor([[1, 1], [1, 0]])
    seq = build_sequences(prompt_ids, prompt_mask, response_ids, response_mask)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    with torch.no_grad():
        _, _, values = token_logprobs(model, seq, response_ids, 1.0, value_head=head)
        hidden = model(input_ids=seq.input_ids, attention_mask=seq.attention_mask,
                       position_ids=seq.position_ids, output_hidden_states=True).hidden_states[-1]
    expected = head(hidden[:, seq.start:seq.start + seq.length]).squeeze(-1)
    assert torch.allclose(values, expected, atol=1e-5)

    vm = AutoModelForSequenceClassification.from_pretrained(resolve_model_path("tiny"), num_labels=1)
    with torch.no_grad():
        v = value_model_values(vm, seq)
        h = vm.model(input_ids=seq.input_ids, attention_mask=seq.attention_mask,
                     position_ids=seq.position_ids).last_hidden_state
    assert v.shape == (2, 2)
    assert torch.allclose(v, vm.score(h[:, seq.start:seq.start + 2]).squeeze(-1), atol=1e-5)
