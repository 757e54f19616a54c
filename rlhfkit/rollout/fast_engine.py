"""A fast rollout engine for Llama-architecture models (CPU first, also correct on CUDA).

Where the time goes: a rollout is a prefill over all prompt tokens (most of the arithmetic at
~150-token prompts and 64 new tokens) plus one decode step per new token. ``generate`` pads every
prompt to the longest one and computes the padding; it grows its KV cache by concatenation every
step; it issues many small tensor operations per step. This engine does less work for the same
samples:

* a packed prefill: only real prompt tokens go through the linear layers and MLPs (no padding
  compute); the longest common prefix of the prompts (e.g. the chat template's system prompt) is
  computed once, since with positions starting at 0 it has the same K/V in every prompt; identical
  prompts (best-of-N, GRPO groups) are computed once; attention runs on a left-padded
  [U, heads, P, D] layout with one SDPA call per layer; in the last layer only each prompt's last
  position goes through attention output, MLP and the LM head;
* a static KV cache per layer, [B, kv_heads, P + max_new_tokens, head_dim], allocated once per
  call; row i's prompt sits right-aligned in slots [P - p_i, P) (left padding), generated token t
  of every row goes to slot P + t, so a step writes one slot with a single copy;
* a minimal decode loop that calls the model's own submodules (embeddings, norms, projections,
  MLP, LM head: so LoRA/PEFT layers and in-place optimiser updates are seen without any copy) and
  does attention against the static cache with one SDPA call per layer. With one query position
  the grouped-query heads are folded into the query-length axis, so no KV head is repeated;
* finished rows keep running (PAD as input) until every row is done: no reallocation per step.

Positions: as in ``generate`` with left padding, position ids start at 0 at a row's first real
token. Token selection (:mod:`rlhfkit.rollout.sampling`) matches transformers' sampler, including
one ``torch.multinomial`` over the whole batch per step, so for a fixed seed both engines draw the
same tokens (up to float rounding of the logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhfkit.rollout.base import check_prompts, finish_batch, left_pad, pad_token_id, resolve_eos_ids
from rlhfkit.rollout.sampling import sample_next, seeded
from rlhfkit.rollout.types import RolloutBatch, SamplingParams

SUPPORTED_MODEL_TYPES = ("llama",)


def _unwrap(model: Any) -> Any:
    """The ``*ForCausalLM`` module inside a PEFT wrapper (LoRA layers stay injected in it)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def supports(model: Any) -> bool:
    """True for Llama-architecture causal LMs with the module layout this engine drives."""
    base = _unwrap(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return False
    inner = getattr(base, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, n) for n in needed) or not hasattr(base, "lm_head"):
        return False
    layer = inner.layers[0]
    attn = getattr(layer, "self_attn", None)
    return attn is not None and all(
        hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")
    ) and all(hasattr(layer, n) for n in ("mlp", "input_layernorm", "post_attention_layernorm"))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [..., D]: (x1, x2) -> (-x2, x1), the RoPE pairing of Su et al. 2021 as Llama uses it."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., D] rotated by angles given as cos/sin broadcastable to x (RoPE, Su et al. 2021 eq. 34)."""
    return x * cos + rotate_half(x) * sin


@dataclass
class _Plan:
    """Which tokens the prefill computes, and where their K/V and queries go.

    B rows, U unique prompts (right-aligned in P slots, i.e. left-padded), N computed tokens:
    the prompts' common prefix once (c tokens, positions 0..c-1 in every prompt, hence identical
    K/V in every prompt), then each unique prompt's remaining tokens. A computed token has one
    "home" (prompt, slot) where its query is evaluated; its K/V is copied to every (prompt, slot)
    that holds it (M of them, M = sum of unique prompt lengths).
    """

    width: int  # P, the longest prompt
    lengths: torch.Tensor  # [B] real prompt length per row
    row_to_unique: torch.Tensor  # [B] index of the row's prompt among the U unique ones
    unique_lengths: torch.Tensor  # [U]
    tokens: torch.Tensor  # [N] ids of the computed tokens
    positions: torch.Tensor  # [N] position ids (0 at a prompt's first token)
    home_u: torch.Tensor  # [N]
    home_slot: torch.Tensor  # [N]
    kv_src: torch.Tensor  # [M] computed-token index of each prompt token
    kv_u: torch.Tensor  # [M]
    kv_slot: torch.Tensor  # [M]
    last: torch.Tensor  # [U] computed-token index of each unique prompt's last token


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest common prefix, leaving every prompt at least one token of its own."""
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    c = 0
    while c < limit and all(p[c] == first[c] for p in prompts):
        c += 1
    return c


def _plan(prompts: list[list[int]], device: torch.device, share_prefix: bool = True) -> _Plan:
    index: dict[tuple[int, ...], int] = {}
    unique: list[list[int]] = []
    rows = []
    for p in prompts:
        key = tuple(p)
        if key not in index:
            index[key] = len(unique)
            unique.append(p)
        rows.append(index[key])
    width = max(len(p) for p in unique)
    c = _common_prefix(unique) if share_prefix else 0
    # the shared prefix is computed once, with prompt 0 as its home
    tokens, positions, home_u = list(unique[0][:c]), list(range(c)), [0] * c
    home_slot = [width - len(unique[0]) + j for j in range(c)]
    kv_src, kv_u, kv_slot, last = [], [], [], []
    for u, p in enumerate(unique):
        pad = width - len(p)
        kv_src += list(range(c))  # the shared prefix
        for j in range(c, len(p)):
            kv_src.append(len(tokens))
            tokens.append(p[j])
            positions.append(j)
            home_u.append(u)
            home_slot.append(pad + j)
        kv_u += [u] * len(p)
        kv_slot += range(pad, width)
        last.append(len(tokens) - 1)
    t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return _Plan(width, t([len(p) for p in prompts]), t(rows), t([len(p) for p in unique]),
                 t(tokens), t(positions), t(home_u), t(home_slot), t(kv_src), t(kv_u), t(kv_slot),
                 t(last))


class FastEngine:
    """Static-KV-cache sampler over the policy module's own submodules (see module docstring)."""

    name = "fast"

    def __init__(self, model: Any, tokenizer: Any):
        if not supports(model):
            raise ValueError(
                f"FastEngine: {type(_unwrap(model)).__name__} is not a supported Llama-style causal LM"
            )
        self.tokenizer = tokenizer
        self.update_weights(model)

    def update_weights(self, model_or_state_dict: Any) -> None:
        """The engine drives the policy module itself, so optimiser steps are seen at once; a new
        module is adopted, a state dict is loaded into the current module."""
        if isinstance(model_or_state_dict, torch.nn.Module):
            self.model = model_or_state_dict
            base = _unwrap(model_or_state_dict)
            self.lm = base
            self.inner = base.model
            cfg = base.config
            self.n_heads = cfg.num_attention_heads
            self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
            self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        else:
            self.model.load_state_dict(model_or_state_dict)

    # -- the model pieces --------------------------------------------------------------------

    def _rope_table(self, length: int, device: torch.device, dtype: torch.dtype):
        """cos, sin: [length, D] for positions 0..length-1, from the model's own rotary module
        (so rope scaling variants come for free)."""
        positions = torch.arange(length, device=device).unsqueeze(0)
        probe = torch.zeros(1, 1, self.head_dim, device=device, dtype=dtype)
        cos, sin = self.inner.rotary_emb(probe, positions)
        return cos[0], sin[0]

    def _prefill(self, plan: _Plan, cache_k, cache_v, cos_t, sin_t, device) -> torch.Tensor:
        """Run the prompts, fill the caches' prompt slots, return last-position logits [B, V].

        Linear layers and MLPs run on the N computed tokens only (no padding, a shared prefix
        once); attention runs on a [U, heads, P, D] left-padded layout, one SDPA call per layer.
        In the last layer only the K/V of all positions are needed (for the cache): its queries,
        o_proj and MLP run on each prompt's last position.
        """
        width, hd, n_unique = plan.width, self.head_dim, plan.unique_lengths.numel()
        cos, sin = cos_t[plan.positions].unsqueeze(1), sin_t[plan.positions].unsqueeze(1)  # [N,1,D]
        # attend[u, 0, i, j]: slot i may read slot j (both real, j <= i); pad queries read themselves
        slots = torch.arange(width, device=device)
        real = slots[None, :] >= (width - plan.unique_lengths)[:, None]  # [U, P]
        attend = (real[:, None, None, :] & (slots[:, None] >= slots[None, :])) | torch.eye(
            width, dtype=torch.bool, device=device)  # [U, 1, P, P]
        in_order = n_unique == plan.row_to_unique.numel()  # no repeated prompt: rows = unique

        x = self.inner.embed_tokens(plan.tokens)  # [N, H]
        n_layers = len(self.inner.layers)
        for li, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            if in_order:  # build K/V straight in the cache's prompt slots
                k_pad, v_pad = cache_k[li][:, :, :width], cache_v[li][:, :, :width]
            else:
                k_pad = torch.zeros(n_unique, self.n_kv, width, hd, device=device, dtype=x.dtype)
                v_pad = torch.zeros_like(k_pad)
            k = apply_rope(attn.k_proj(h).view(-1, self.n_kv, hd), cos, sin)  # [N, kv, D]
            v = attn.v_proj(h).view(-1, self.n_kv, hd)
            k_pad[plan.kv_u, :, plan.kv_slot] = k[plan.kv_src]
            v_pad[plan.kv_u, :, plan.kv_slot] = v[plan.kv_src]
            if not in_order:  # rows sharing a prompt get copies of its K/V
                cache_k[li][:, :, :width] = k_pad.index_select(0, plan.row_to_unique)
                cache_v[li][:, :, :width] = v_pad.index_select(0, plan.row_to_unique)
            if li < n_layers - 1:
                o = self._padded_attention(h, attn, (cos, sin), plan.home_u, plan.home_slot,
                                           k_pad, v_pad, attend)
            else:  # last layer: only each prompt's last position feeds the LM head
                x, h = x[plan.last], h[plan.last]
                o = self._padded_attention(
                    h, attn, (cos[plan.last], sin[plan.last]), torch.arange(n_unique, device=device),
                    torch.zeros(n_unique, dtype=torch.long, device=device), k_pad, v_pad,
                    attend[:, :, -1:])
            x = x + attn.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.lm.lm_head(self.inner.norm(x))  # [U, V]
        return logits[plan.row_to_unique].float()  # [B, V]

    def _padded_attention(self, h, attn, rope, q_u, q_slot, k_pad, v_pad, mask) -> torch.Tensor:
        """Queries of n packed tokens ([n, H] hidden states ``h``) against padded K/V.

        q_u, q_slot: [n] each query's prompt and slot within the ``mask.shape[2]`` query slots;
        k_pad, v_pad: [U, kv_heads, P, D]; mask: [U, 1, Q, P] bool. Returns [n, heads * D].
        """
        n, hd = h.shape[0], self.head_dim
        q = apply_rope(attn.q_proj(h).view(n, self.n_heads, hd), *rope)  # [n, Hq, D]
        q_pad = torch.zeros(k_pad.shape[0], self.n_heads, mask.shape[2], hd, device=h.device,
                            dtype=h.dtype)
        q_pad[q_u, :, q_slot] = q
        o = F.scaled_dot_product_attention(
            q_pad, k_pad, v_pad, attn_mask=mask, enable_gqa=self.n_kv != self.n_heads
        )  # [U, Hq, Q, D]
        return o[q_u, :, q_slot].reshape(n, -1)

    def _decode_step(self, tokens, slot, cos, sin, key_mask, cache_k, cache_v) -> torch.Tensor:
        """One token per row. tokens [B]; cos/sin [B, D] at each row's position; key_mask
        [B, 1, 1, slot + 1] bool (True = attend). Writes KV at ``slot``; returns logits [B, V]."""
        b, hd = tokens.shape[0], self.head_dim
        group = self.n_heads // self.n_kv
        cos_q, sin_q = cos[:, None, None, :], sin[:, None, None, :]
        x = self.inner.embed_tokens(tokens)  # [B, H]
        for li, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            # [B, Hq*D] -> [B, kv_heads, group, D]: query head j*group+g reads KV head j
            q = apply_rope(attn.q_proj(h).view(b, self.n_kv, group, hd), cos_q, sin_q)
            k = apply_rope(attn.k_proj(h).view(b, self.n_kv, 1, hd), cos_q, sin_q)
            cache_k[li][:, :, slot] = k[:, :, 0]
            cache_v[li][:, :, slot] = attn.v_proj(h).view(b, self.n_kv, hd)
            o = F.scaled_dot_product_attention(
                q, cache_k[li][:, :, : slot + 1], cache_v[li][:, :, : slot + 1], attn_mask=key_mask
            )  # [B, kv_heads, group, D]
            x = x + attn.o_proj(o.reshape(b, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm.lm_head(self.inner.norm(x)).float()

    # -- the loop ------------------------------------------------------------------------------

    def _allocate(self, plan: _Plan, steps: int, device, dtype):
        """Static per-call buffers: KV caches [B, kv_heads, P + steps, D] per layer, the RoPE table,
        and key_mask [B, 1, 1, P + steps] (True where a slot holds a real token of the row)."""
        b, width = plan.lengths.numel(), plan.width
        slots = width + steps
        cache_k = [torch.zeros(b, self.n_kv, slots, self.head_dim, device=device, dtype=dtype)
                   for _ in self.inner.layers]
        cache_v = [torch.zeros_like(c) for c in cache_k]
        cos_t, sin_t = self._rope_table(int(plan.lengths.max()) + steps, device, dtype)
        key_mask = torch.ones(b, 1, 1, slots, dtype=torch.bool, device=device)
        key_mask[:, 0, 0, :width] = torch.arange(width, device=device) >= (width - plan.lengths)[:, None]
        return cache_k, cache_v, cos_t, sin_t, key_mask

    @torch.inference_mode()
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> RolloutBatch:
        prompts = check_prompts(prompt_ids)
        weight = self.inner.embed_tokens.weight
        device, dtype = weight.device, weight.dtype
        pad_id = pad_token_id(self.tokenizer)
        eos_ids = resolve_eos_ids(self.model, self.tokenizer, params)
        plan = _plan(prompts, device)
        was_training = self.model.training
        self.model.eval()
        try:
            with seeded(params.seed, device):
                tokens, logprobs = self._sample(plan, params, eos_ids, pad_id, device, dtype)
        finally:
            self.model.train(was_training)
        ids, mask = left_pad(prompts, pad_id, device)
        return finish_batch(ids, mask, tokens, logprobs, eos_ids, pad_id, params.stop_at_eos,
                            meta={"engine": self.name})

    def _sample(self, plan: _Plan, params: SamplingParams, eos_ids, pad_id, device, dtype):
        """Prefill, then one token per row per step until max_new_tokens or every row hit EOS.
        Returns tokens, logprobs: [B, T] (T <= max_new_tokens; PAD / 0 after a row's EOS)."""
        b, width, steps = plan.lengths.numel(), plan.width, params.max_new_tokens
        cache_k, cache_v, cos_t, sin_t, key_mask = self._allocate(plan, steps, device, dtype)
        eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
        tokens = torch.full((b, steps), pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((b, steps), dtype=torch.float32, device=device)
        unfinished = torch.ones(b, dtype=torch.bool, device=device)
        logits = self._prefill(plan, cache_k, cache_v, cos_t, sin_t, device)
        for t in range(steps):
            if t > 0:  # feed token t-1 (slot P+t-1, position p_i+t-1), get logits for token t
                pos = plan.lengths + (t - 1)
                logits = self._decode_step(tokens[:, t - 1], width + t - 1, cos_t[pos], sin_t[pos],
                                           key_mask[..., : width + t], cache_k, cache_v)
            nxt, lp = sample_next(logits, params)
            if params.stop_at_eos:  # finished rows get PAD, as in transformers
                nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
                unfinished = unfinished & ~torch.isin(nxt, eos)
            tokens[:, t], logprobs[:, t] = nxt, lp
            if params.stop_at_eos and not bool(unfinished.any()):
                return tokens[:, : t + 1], logprobs[:, : t + 1]
        return tokens, logprobs
