"""A tiny test policy that RL can move within seconds.

The tiny random Llama spreads its probability almost uniformly over 49k tokens, so a reward for
any particular word has nothing to reinforce, and its weights (std 0.02) do not survive learning
rates large enough to learn in a few steps. :func:`make_prior_model` builds a variant with a
unigram prior that one hidden dimension controls:

* every input embedding gets +1 on dimension 0, so the residual stream (and the final hidden
  state) always points that way; the final norm scales that dimension by ``gain``;
* the LM head is untied from the embeddings and its dimension-0 column is 0 except for a few
  chosen words and EOS, which get ``boost`` / ``eos_boost``: their logits rise by about
  boost x gain x sqrt(hidden) in every context.

The model then says those words (and stops) often, and a step of the optimizer on one LM-head
entry moves a word's logit by about lr x gain x sqrt(hidden): a reward for "the" or for length is
learned in a few iterations at a learning rate the transformer layers tolerate.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (" the", " a", ",", ".", " and", " of", " to", " is", " in", " it", " you", " I")


def make_prior_model(folder: Path, boost: float = 0.12, eos_boost: float = 0.13, gain: float = 10.0,
                     words=WORDS) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    from rlhfkit.models import load_causal_lm

    tied, tok = load_causal_lm("tiny")
    config = tied.config
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    state = {k: v for k, v in tied.state_dict().items() if k != "lm_head.weight"}
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
        model.lm_head.weight.copy_(tied.get_input_embeddings().weight)
        model.get_input_embeddings().weight[:, 0] += 1.0
        model.model.norm.weight[0] = gain
        head = model.lm_head.weight
        head[:, 0] = 0.0
        for word in words:
            (tid,) = tok(word, add_special_tokens=False)["input_ids"]
            head[tid, 0] = boost
        head[tok.eos_token_id, 0] = eos_boost
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def the_share(prompts, responses):
    """Reward for tests: the share of a response's words that are "the" (0 for an empty one)."""
    out = []
    for text in responses:
        words = text.lower().split()
        out.append(words.count("the") / len(words) if words else 0.0)
    return out
