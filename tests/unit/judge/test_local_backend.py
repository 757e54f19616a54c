"""The local judge on the tiny model: the shared-prefix forward equals two independent forwards and a
plain full-sequence forward read by hand; batching and padding change nothing."""

import pytest
import torch

from rlhfkit.data.records import Message
from rlhfkit.data.tokenize import render_prompt
from rlhfkit.judge import Judge, JudgePrompt, soft_label
from rlhfkit.judge.local import LocalBackend

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [("How do I boil an egg?", "Put it in boiling water for eight minutes.", "No idea."),
         ("What is 2+2?", "4", "It is five, obviously, and anyone who says otherwise is wrong."),
         ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
           {"role": "user", "content": "Name a colour."}], "Blue.", "I would rather not.")]


@pytest.fixture(scope="module")
def backend():
    from rlhfkit.models import load_causal_lm

    model, tok = load_causal_lm("tiny")
    return LocalBackend(model, tok, name="tiny", batch_size=2)


def test_shared_prefix_equals_independent_forwards(backend):
    judge = Judge(backend)
    backend.share_prefix = True
    shared = judge.compare_many(PAIRS)
    shared_tokens, backend.tokens = backend.tokens, 0
    backend.share_prefix = False
    plain = judge.compare_many(PAIRS)
    backend.share_prefix = True
    for s, p in zip(shared, plain):
        assert s.p_ab == pytest.approx(p.p_ab, abs=1e-5) and s.p_ba == pytest.approx(p.p_ba, abs=1e-5)
    assert shared_tokens < backend.tokens  # the prefix was computed once, not twice


def test_probability_matches_a_plain_forward_read_by_hand(backend):
    prompt = JudgePrompt()
    ab = prompt.messages((Message("user", "How do I boil an egg?"),), "Boil it.", "No idea.")
    text = render_prompt(backend.tokenizer, (Message("system", ab.system), Message("user", ab.head + ab.tail)))
    ids = backend.tokenizer(text + "Verdict:", add_special_tokens=False)["input_ids"]
    prefix, (suffix_ab, _) = backend.encode(ab, prompt.messages((Message("user", "How do I boil an egg?"),),
                                                                "No idea.", "Boil it."))
    assert prefix + suffix_ab == ids  # the split falls on a token boundary
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    id_a, id_b = backend.choice_ids
    expected = soft_label(float(logp[id_a]), float(logp[id_b]))
    got = Judge(backend, prompt).compare("How do I boil an egg?", "Boil it.", "No idea.")
    assert got.p_ab == pytest.approx(expected, abs=1e-5)
    assert got.status == "ok" and got.sources == ("logprobs", "logprobs")


def test_batching_and_order_do_not_change_verdicts(backend):
    judge = Judge(backend)
    together = judge.compare_many(PAIRS)
    alone = [judge.compare_many([p])[0] for p in PAIRS]
    for t, a in zip(together, alone):
        assert t.prob == pytest.approx(a.prob, abs=1e-5)
    # swapping A and B mirrors the probabilities: P(A) of (b, a) = 1 - P(A) of (a, b)
    q, a, b = PAIRS[0]
    swapped = judge.compare(q, b, a)
    assert swapped.prob == pytest.approx(1 - together[0].prob, abs=1e-5)
