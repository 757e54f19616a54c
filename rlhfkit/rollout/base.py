"""The rollout-engine interface, the engine factory, and the helpers every engine shares.

An engine turns token-id prompts into a :class:`RolloutBatch`:

    engine = make_engine("fast", model, tokenizer)
    batch = engine.generate([[1, 2, 3], [4, 5]], SamplingParams(temperature=1.0, max_new_tokens=64))
    ...                              # train the policy
    engine.update_weights(model)     # make the engine sample from the new weights

Engines that hold the policy module itself (``hf`` and ``fast`` in-process) see every optimiser
step automatically, so ``update_weights`` is cheap for them; an engine that keeps its own copy of
the weights (an inference server such as vLLM on a GPU, possibly in another process / Ray actor)
copies the given module or state dict there. Stages must call it after each policy update either way.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from rlhfkit.rollout.types import RolloutBatch, SamplingParams

ENGINE_NAMES = ("hf", "fast")


@runtime_checkable
class RolloutEngine(Protocol):
    """Samples one response per prompt from the current policy weights."""

    name: str

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> RolloutBatch:
        """``prompt_ids``: B token lists (no padding, each non-empty). Returns a B-row batch."""
        ...

    def update_weights(self, model_or_state_dict: Any) -> None:
        """Make later ``generate`` calls sample from these weights (a module or a state dict)."""
        ...


def make_engine(name: str, model: Any, tokenizer: Any, **options: Any) -> RolloutEngine:
    """Build a rollout engine by name: ``"hf"`` (reference, ``model.generate``) or ``"fast"``.

    ``"fast"`` falls back to ``"hf"`` (with a logged warning) for architectures it does not know.
    """
    key = name.lower()
    if key == "hf":
        from rlhfkit.rollout.hf_engine import HFEngine

        return HFEngine(model, tokenizer, **options)
    if key == "fast":
        from rlhfkit.rollout.fast_engine import FastEngine, supports

        if not supports(model):
            import logging

            from rlhfkit.rollout.hf_engine import HFEngine

            logging.getLogger(__name__).warning(
                "rollout engine 'fast' does not support %s; using 'hf'", type(model).__name__
            )
            return HFEngine(model, tokenizer)
        return FastEngine(model, tokenizer, **options)
    raise ValueError(f"rollout engine '{name}': expected one of {', '.join(ENGINE_NAMES)}")


# ---------------------------------------------------------------------------------------------
# Helpers shared by the engines


def resolve_eos_ids(model: Any, tokenizer: Any, params: SamplingParams) -> tuple[int, ...]:
    """EOS ids to stop at: ``params.eos_token_ids`` if given, else the union of the model's
    generation config, the model config and the tokenizer EOS ids (order kept, duplicates dropped)."""
    if params.eos_token_ids is not None:
        return params.eos_token_ids
    found: list[int] = []
    sources = [
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(getattr(model, "config", None), "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ]
    for value in sources:
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is not None and int(v) not in found:
                found.append(int(v))
    return tuple(found)


def pad_token_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise ValueError("tokenizer: has neither pad_token_id nor eos_token_id")
    return int(pad)


def check_prompts(prompt_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """Validate the prompts (non-empty lists of ints); the error names the bad prompt index."""
    if len(prompt_ids) == 0:
        raise ValueError("prompt_ids: no prompts given")
    out = []
    for i, ids in enumerate(prompt_ids):
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
            raise ValueError(f"prompt_ids[{i}]: expected a list of token ids, got {type(ids).__name__}")
        if len(ids) == 0:
            raise ValueError(f"prompt_ids[{i}]: empty prompt")
        out.append([int(t) for t in ids])
    return out


def left_pad(prompt_ids: list[list[int]], pad_id: int, device: Any = None):
    """([B, P] ids left-padded with ``pad_id``, [B, P] mask) as long tensors."""
    import torch

    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def finish_batch(prompt_ids, prompt_mask, tokens, logprobs, eos_ids, pad_id, stop_at_eos, meta=None):
    """Assemble a :class:`RolloutBatch` from raw sampled tokens.

    tokens / logprobs: [B, T] as sampled (anything after a row's first EOS is ignored).
    The response mask covers tokens up to and including the first EOS (when ``stop_at_eos``).
    """
    import torch

    b, t = tokens.shape
    is_eos = torch.isin(tokens, torch.tensor(list(eos_ids), dtype=tokens.dtype, device=tokens.device))
    if stop_at_eos and len(eos_ids) > 0 and t > 0:
        # A token is real when no EOS came strictly before it.
        eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
        response_mask = (eos_before == 0).long()
        finished = is_eos.any(dim=1)
    else:
        response_mask = torch.ones((b, t), dtype=torch.long, device=tokens.device)
        finished = torch.zeros(b, dtype=torch.bool, device=tokens.device)
    response_ids = torch.where(response_mask.bool(), tokens, torch.full_like(tokens, pad_id))
    logprobs = torch.where(response_mask.bool(), logprobs.float(), torch.zeros_like(logprobs.float()))
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        logprobs=logprobs,
        finished=finished,
        response_lengths=response_mask.sum(dim=1),
        pad_token_id=int(pad_id),
        meta=dict(meta or {}),
    )


# ---------------------------------------------------------------------------------------------
# Text in, text out


def encode_prompts(tokenizer: Any, prompts: Iterable[Any], chat_template: bool = True) -> list[list[int]]:
    """Token ids of each prompt, exactly as training sees them (rlhfkit.data.tokenize.encode_prompt:
    the chat template with the generation prompt, or a plain fallback) when ``chat_template`` is True;
    else the raw text (strings only)."""
    from rlhfkit.data.records import as_conversation
    from rlhfkit.data.tokenize import encode_prompt

    out = []
    for i, prompt in enumerate(prompts):
        if chat_template:
            out.append(encode_prompt(tokenizer, as_conversation(prompt, f"prompts[{i}]")))
        elif isinstance(prompt, str):
            out.append(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        else:
            raise ValueError(f"prompts[{i}]: a conversation needs chat_template=True")
    return out


def generate_texts(
    engine: RolloutEngine,
    tokenizer: Any,
    prompts: Sequence[Any],
    params: SamplingParams,
    chat_template: bool = True,
) -> tuple[list[str], RolloutBatch]:
    """Sample one response per prompt (strings or conversations); returns (texts, batch)."""
    ids = encode_prompts(tokenizer, prompts, chat_template=chat_template)
    batch = engine.generate(ids, params)
    return batch.decode(tokenizer), batch


def greedy_texts(model: Any, tokenizer: Any, prompts: Sequence[Any], max_new_tokens: int) -> list[str]:
    """Greedy responses of ``model`` to a few prompts with the plain HF engine: the before/after
    samples a training stage shows."""
    from rlhfkit.rollout.types import SamplingParams

    if not prompts:
        return []
    engine = make_engine("hf", model, tokenizer)
    texts, _ = generate_texts(engine, tokenizer, prompts,
                              SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))
    return texts


def sample_groups(engine: Any, tokenizer: Any, prompts: list, s: Any, seed: int) -> tuple[list, float]:
    """N samples per prompt: ``[(texts [N], finished [N])]`` per prompt, and tokens/s. ``s`` is a
    :class:`rlhfkit.rollout.config.GroupSampling` (n, batch_size, temperature, top_p, top_k,
    max_new_tokens).

    Sequences go to the engine in chunks of ``sampling.batch_size`` made of whole prompt groups
    where possible, so the engine prefills each prompt once; chunk i uses seed ``seed + i``."""
    import time

    from rlhfkit.rollout.types import SamplingParams
    from rlhfkit.run import say

    ids = encode_prompts(tokenizer, prompts)
    flat = [(p, k) for p in range(len(prompts)) for k in range(s.n)]  # prompt-major
    per_chunk = max(1, s.batch_size // s.n) * s.n if s.batch_size >= s.n else s.batch_size
    texts: list[list[str]] = [[] for _ in prompts]
    finished: list[list[bool]] = [[] for _ in prompts]
    tokens, start = 0, time.time()
    for c, at in enumerate(range(0, len(flat), per_chunk)):
        chunk = flat[at:at + per_chunk]
        params = SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_new_tokens=s.max_new_tokens, seed=seed + c)
        batch = engine.generate([ids[p] for p, _ in chunk], params)
        decoded = batch.decode(tokenizer)
        for (p, _), text, done in zip(chunk, decoded, batch.finished.tolist()):
            texts[p].append(text)
            finished[p].append(bool(done))
        tokens += int(batch.response_lengths.sum())
        say(f"sampled {min(at + per_chunk, len(flat))}/{len(flat)} responses")
    return list(zip(texts, finished)), tokens / max(1e-9, time.time() - start)
