import torch

from rlhfkit.data.collate import IGNORE_INDEX, bucketed_batches, collate_packed, collate_sft, pack_examples
from rlhfkit.data.records import Message
from rlhfkit.data.tokenize import Encoded, encode_example, fit, render_prompt


def test_fit_cuts_prompt_from_the_left_then_response():
    enc = fit(list(range(10)), [100, 101, 102], max_length=8, min_response=3)
    assert enc.prompt_ids == list(range(5, 10)) and enc.response_ids == [100, 101, 102]
    assert enc.prompt_truncated and not enc.response_truncated
    long = fit([1, 2], list(range(100, 120)), max_length=10)
    assert len(long) == 10 and long.response_truncated and long.prompt_ids == [1, 2]


def test_encode_uses_chat_template_and_ends_with_eos(tiny):
    _, tok = tiny
    prompt = (Message("user", "What is 2+2?"),)
    enc = encode_example(tok, prompt, "Four.", 128)
    assert render_prompt(tok, prompt).endswith("<|im_start|>assistant\n")
    assert tok.decode(enc.prompt_ids) == render_prompt(tok, prompt)
    assert enc.response_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.response_ids[:-1]) == "Four."


def test_collate_masks_prompt_and_padding():
    batch = collate_sft([Encoded([1, 2, 3], [4, 5]), Encoded([6], [7])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    i = IGNORE_INDEX
    assert batch["labels"].tolist() == [[i, i, i, 4, 5], [i, 7, i, i, i]]


def test_bucketing_is_deterministic_covers_everything_and_groups_lengths():
    lengths = [5, 100, 7, 98, 6, 99, 8, 97]
    a = bucketed_batches(lengths, 2, seed=1, epoch=0)
    assert a == bucketed_batches(lengths, 2, seed=1, epoch=0)
    assert a != bucketed_batches(lengths, 2, seed=1, epoch=1) or len(a) == 1
    assert sorted(i for b in a for i in b) == list(range(8))
    for b in a:  # short with short, long with long
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3


def test_packed_rows_compute_what_separate_examples_compute(tiny):
    model, tok = tiny
    exs = [encode_example(tok, (Message("user", q),), a, 64)
           for q, a in [("Hi there", "Hello!"), ("What is 2+2?", "Four."), ("Name a colour", "Blue.")]]
    rows = pack_examples(exs, max_length=200)
    assert len(rows) == 1
    sep = collate_sft(exs, tok.pad_token_id)
    packed = collate_packed([[exs[i] for i in rows[0]]], tok.pad_token_id)

    def total_logprob(batch, **extra):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra).logits
        labels = batch["labels"][:, 1:]
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (lp * (labels != IGNORE_INDEX)).sum()

    assert torch.allclose(total_logprob(sep), total_logprob(packed, position_ids=packed["position_ids"]),
                          atol=1e-3)
    assert int(packed["token_mask"].sum()) == sum(len(e) for e in exs)
