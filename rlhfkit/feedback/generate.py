"""Sample k candidate responses per prompt with a model rlhfkit loads (SPEC section 3).

The chat template of the tokenizer is applied to each prompt (with the generation prompt), the
batch is left-padded, and ``model.generate`` samples ``k`` continuations per prompt. torch and
transformers are imported here only.
"""

from __future__ import annotations

from typing import Sequence

from rlhfkit.data.records import Message


def _chat_text(tokenizer, prompt: Sequence[Message]) -> str:
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


def generate_candidates(prompts: Sequence[tuple], model: str = "default", k: int = 2,
                        max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 0.95,
                        seed: int = 0, batch_size: int = 8) -> list[list[str]]:
    """Return ``k`` sampled responses for each prompt (a tuple of Message ending with a user turn).

    Responses are returned as generated (special tokens removed, whitespace stripped); one may be
    empty when the model stops at once, and the studio shows it as such.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    import torch

    from rlhfkit.models import load_causal_lm

    lm, tok = load_causal_lm(model)
    lm.eval()
    torch.manual_seed(seed)
    tok.padding_side = "left"
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        texts = [_chat_text(tok, p) for p in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            seqs = lm.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, num_return_sequences=k,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = seqs[:, enc["input_ids"].shape[1]:]  # [batch * k, new_tokens]
        decoded = tok.batch_decode(new, skip_special_tokens=True)
        for i in range(len(chunk)):
            out.append([d.strip() for d in decoded[i * k:(i + 1) * k]])
    return out
