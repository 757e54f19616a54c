"""A fast rollout engine for Llama-architecture models (CPU first, also correct on CUDA).

Where the time goes: a rollout is a prefill over all prompt tokens (most of the arithmetic at
~150-token prompts and 64 new tokens) plus one decode step per new token. ``generate`` pads every
prompt to the longest one and computes the padding; it grows its KV cache by concatenation every
step; it issues many small tensor operations per step. This engine does less work for the same
samples:

* a packed prefill: only real prompt tokens go through the linear layers and MLPs (no padding
  compute); the longest common prefix of the prompts (e.g. the chat template's system prompt) is
  computed once, since with positions starting at 0 it has the same K/V in every prompt; identical
  prompts (best-of-N, GRPO groups) are computed once; attention runs on prompts grouped by
  length (up to 4 groups), each padded on the right to its longest prompt, one SDPA call with
  ``is_causal`` per group and layer (no mask to build or read: padding only ever follows a
  prompt's real tokens; grouping cuts the padded attention work, sum of n_g * w_g^2, by about
  half on HH prompts); in the last layer only each prompt's last position goes through attention
  output, MLP and the LM head;
* a static KV cache per layer, [B, kv_heads, P + max_new_tokens, head_dim], allocated once per
  call; row i's prompt sits in slots [0, p_i) (slots [p_i, P) are masked), generated token t of
  every row goes to slot P + t, so a step writes one slot with a single copy;
* a minimal decode loop that calls the model's own submodules (embeddings, norms, projections,
  MLP, LM head: so LoRA/PEFT layers and in-place optimiser updates are seen without any copy) and
  does attention against the static cache with one SDPA call per layer. With one query position
  the grouped-query heads are folded into the query-length axis, so no KV head is repeated;
* rows that finished (``stop_at_eos``) leave the computation: when at least ``compact_finished``
  (a fraction) of the rows held in the caches are done, the caches are compacted to the live rows
  (one copy), so later steps compute only those. Sampling still draws one multinomial over all B
  rows (finished rows keep their last logits; their draw is discarded): torch draws a fixed number
  of random numbers per row whatever the probabilities, so the live rows' draws are unchanged.

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
class _Group:
    """Unique prompts whose prefill attention is one SDPA call, right-padded to the longest."""

    size: int  # n member prompts
    width: int  # w, the longest member
    kv_idx: torch.Tensor  # [n * w] computed token whose K/V fills slot j of member i (at i*w+j)
    q_idx: torch.Tensor  # [n * w] computed token whose query is evaluated there
    home: torch.Tensor  # [m] the flat slots that are some computed token's home


@dataclass
class _Plan:
    """Which tokens the prefill computes, and where their K/V and queries go.

    B rows, U unique prompts (prompt u in slots [0, p_u) of P), N computed tokens:
    the prompts' common prefix once (c tokens, positions 0..c-1 in every prompt, hence identical
    K/V in every prompt), then each unique prompt's remaining tokens. A computed token has one
    "home" (prompt, slot) where its query is evaluated; its K/V is copied to every (prompt, slot)
    that holds it (M of them, M = sum of unique prompt lengths). A token's slot is its position.
    One more token, the filler (index N), is computed alongside: a finite row that pads the
    attention groups' buffers; it is never cached nor read by a real query.
    """

    width: int  # P, the longest prompt
    lengths: torch.Tensor  # [B] real prompt length per row
    row_to_unique: torch.Tensor  # [B] index of the row's prompt among the U unique ones
    unique_lengths: torch.Tensor  # [U]
    tokens: torch.Tensor  # [N + 1] ids of the computed tokens, then the filler
    positions: torch.Tensor  # [N + 1] position ids (0 at a prompt's first token)
    kv_src: torch.Tensor  # [M] computed-token index of each prompt token
    kv_u: torch.Tensor  # [M]
    kv_slot: torch.Tensor  # [M]
    last: torch.Tensor  # [U] computed-token index of each unique prompt's last token
    groups: list[_Group]  # the prefill attention calls, prompts grouped by length
    order: torch.Tensor  # [N + 1] row of each computed token among the groups' outputs


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


def _length_groups(lengths: list[int], max_groups: int = 4) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length and cut into at most ``max_groups`` runs of equal
    count: padding each run to its longest costs far less attention than padding all to the
    longest (sum over groups of n_g * w_g^2 against U * P^2)."""
    order = sorted(range(len(lengths)), key=lambda u: lengths[u])
    n = min(max_groups, len(order))
    cuts = [round(i * len(order) / n) for i in range(n + 1)]
    return [order[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def _plan(prompts: list[list[int]], device: torch.device, share_prefix: bool = True,
          max_groups: int = 4) -> _Plan:
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
    kv_src, kv_u, kv_slot, last = [], [], [], []
    for u, p in enumerate(unique):
        kv_src += list(range(c))  # the shared prefix
        for j in range(c, len(p)):
            kv_src.append(len(tokens))
            tokens.append(p[j])
            positions.append(j)
            home_u.append(u)
        kv_u += [u] * len(p)
        kv_slot += range(len(p))
        last.append(len(tokens) - 1)
    filler = len(tokens)
    tokens.append(unique[0][0])
    positions.append(0)
    home = {(u, positions[i]): i for i, u in enumerate(home_u)}  # (prompt, slot) -> computed token
    starts = [0]  # where each unique prompt's tokens begin in kv_src
    for p in unique:
        starts.append(starts[-1] + len(p))
    t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    groups, order, done = [], [0] * len(tokens), 0
    for members in _length_groups([len(p) for p in unique], max_groups):
        w = max(len(unique[u]) for u in members)
        kv_idx, q_idx, homes = [], [], []
        for i, u in enumerate(members):
            n = len(unique[u])
            kv_idx += kv_src[starts[u]: starts[u + 1]] + [filler] * (w - n)
            for j in range(w):
                q_idx.append(home.get((u, j), filler))
                if q_idx[-1] != filler:
                    homes.append(i * w + j)
                    order[q_idx[-1]] = done
                    done += 1
        groups.append(_Group(len(members), w, t(kv_idx), t(q_idx), t(homes)))
    order[filler] = done  # the zero row after the groups' outputs
    return _Plan(width, t([len(p) for p in prompts]), t(rows), t([len(p) for p in unique]),
                 t(tokens), t(positions), t(kv_src), t(kv_u), t(kv_slot), t(last), groups, t(order))


def _gather(x: torch.Tensor, idx: torch.Tensor, group: _Group) -> torch.Tensor:
    """[N + 1, h, D] packed rows -> [n, h, w, D]: the group's layout, one row copy per slot."""
    rows = x.index_select(0, idx).view(group.size, group.width, x.shape[1], x.shape[2])
    return rows.transpose(1, 2)


class FastEngine:
    """Static-KV-cache sampler over the policy module's own submodules (see module docstring)."""

    name = "fast"

    def __init__(self, model: Any, tokenizer: Any, compact_finished: float = 0.25):
        """``compact_finished``: compact the caches to the unfinished rows once at least this
        fraction of the rows they hold has finished (0 = never; only with ``stop_at_eos``)."""
        if not supports(model):
            raise ValueError(
                f"FastEngine: {type(_unwrap(model)).__name__} is not a supported Llama-style causal LM"
            )
        if not 0.0 <= float(compact_finished) <= 1.0:
            raise ValueError(f"FastEngine: compact_finished must be in [0, 1], got {compact_finished}")
        self.compact_finished = float(compact_finished)
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
            self.gqa = self.n_kv != self.n_heads  # SDPA's enable_gqa in the prefill
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
        once); attention runs per length group (:meth:`_grouped_attention`). In the last layer
        only the K/V of all positions are needed (for the cache): its queries, o_proj and MLP run
        on each prompt's last position.
        """
        width, hd, n_unique = plan.width, self.head_dim, plan.unique_lengths.numel()
        cos, sin = cos_t[plan.positions].unsqueeze(1), sin_t[plan.positions].unsqueeze(1)  # [N+1,1,D]
        slots = torch.arange(width, device=device)
        last_mask = (slots[None, :] < plan.unique_lengths[:, None])[:, None, None, :]  # [U,1,1,P]
        in_order = n_unique == plan.row_to_unique.numel()  # no repeated prompt: rows = unique

        x = self.inner.embed_tokens(plan.tokens)  # [N + 1, H]
        n_layers = len(self.inner.layers)
        for li, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            if in_order:  # build K/V straight in the cache's prompt slots
                k_pad, v_pad = cache_k[li][:, :, :width], cache_v[li][:, :, :width]
            else:
                k_pad = torch.zeros(n_unique, self.n_kv, width, hd, device=device, dtype=x.dtype)
                v_pad = torch.zeros_like(k_pad)
            k = apply_rope(attn.k_proj(h).view(-1, self.n_kv, hd), cos, sin)  # [N + 1, kv, D]
            v = attn.v_proj(h).view(-1, self.n_kv, hd)
            k_pad[plan.kv_u, :, plan.kv_slot] = k[plan.kv_src]
            v_pad[plan.kv_u, :, plan.kv_slot] = v[plan.kv_src]
            if not in_order:  # rows sharing a prompt get copies of its K/V
                cache_k[li][:, :, :width] = k_pad.index_select(0, plan.row_to_unique)
                cache_v[li][:, :, :width] = v_pad.index_select(0, plan.row_to_unique)
            if li < n_layers - 1:
                q = apply_rope(attn.q_proj(h).view(-1, self.n_heads, hd), cos, sin)  # [N+1, Hq, D]
                o = self._grouped_attention(q, k, v, plan)
            else:  # last layer: only each prompt's last position feeds the LM head
                x, h = x[plan.last], h[plan.last]
                q = apply_rope(attn.q_proj(h).view(n_unique, self.n_heads, hd),
                               cos[plan.last], sin[plan.last])
                o = F.scaled_dot_product_attention(
                    q.unsqueeze(2), k_pad, v_pad, attn_mask=last_mask, enable_gqa=self.gqa
                ).reshape(n_unique, -1)  # [U, Hq * D]
            x = x + attn.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.lm.lm_head(self.inner.norm(x))  # [U, V]
        return logits[plan.row_to_unique].float()  # [B, V]

    def _grouped_attention(self, q, k, v, plan: _Plan) -> torch.Tensor:
        """Causal attention of the computed tokens' queries q [N + 1, Hq, D] over their prompts'
        keys/values (k, v: [N + 1, kv_heads, D], packed as computed, the filler last). Per length
        group of n prompts (longest w): queries, keys and values gathered into [n, heads, w, D]
        (prompt i in slots [0, p_i), the filler's row after), one SDPA with is_causal (a real
        query at slot j reads slots 0..j, all real; the other queries' outputs are dropped).
        Returns [N + 1, Hq * D] (zeros for the filler)."""
        parts = []
        for g in plan.groups:
            o = F.scaled_dot_product_attention(
                _gather(q, g.q_idx, g), _gather(k, g.kv_idx, g), _gather(v, g.kv_idx, g),
                is_causal=True, enable_gqa=self.gqa,
            )  # [n, Hq, w, D]
            parts.append(o.transpose(1, 2).reshape(g.size * g.width, -1).index_select(0, g.home))
        parts.append(q.new_zeros(1, parts[0].shape[1]))
        return torch.cat(parts).index_select(0, plan.order)

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
        and key_mask [B, 1, 1, P + steps] (True where a slot holds a real token of the row: the
        prompt's slots [0, p_i) and every generated slot)."""
        b, width = plan.lengths.numel(), plan.width
        slots = width + steps
        cache_k = [torch.zeros(b, self.n_kv, slots, self.head_dim, device=device, dtype=dtype)
                   for _ in self.inner.layers]
        cache_v = [torch.zeros_like(c) for c in cache_k]
        cos_t, sin_t = self._rope_table(int(plan.lengths.max()) + steps, device, dtype)
        key_mask = torch.ones(b, 1, 1, slots, dtype=torch.bool, device=device)
        key_mask[:, 0, 0, :width] = torch.arange(width, device=device) < plan.lengths[:, None]
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
                tokens, logprobs, compactions = self._sample(plan, params, eos_ids, pad_id, device,
                                                             dtype)
        finally:
            self.model.train(was_training)
        ids, mask = left_pad(prompts, pad_id, device)
        return finish_batch(ids, mask, tokens, logprobs, eos_ids, pad_id, params.stop_at_eos,
                            meta={"engine": self.name, "compactions": compactions})

    def _compact_rows(self, unfinished: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor | None:
        """Cache rows to keep (indices into the current caches), or None to keep them all.
        unfinished: [B] bool over the batch; live: [A] batch row of each cache row (None = all)."""
        if self.compact_finished <= 0:
            return None
        still = unfinished if live is None else unfinished[live]
        done = still.numel() - int(still.sum())
        if done == 0 or done < self.compact_finished * still.numel():
            return None
        return still.nonzero().squeeze(1)

    def _sample(self, plan: _Plan, params: SamplingParams, eos_ids, pad_id, device, dtype):
        """Prefill, then one token per row per step until max_new_tokens or every row hit EOS.
        Returns tokens, logprobs: [B, T] (T <= max_new_tokens; PAD / 0 after a row's EOS) and the
        number of cache compactions."""
        b, width, steps = plan.lengths.numel(), plan.width, params.max_new_tokens
        cache_k, cache_v, cos_t, sin_t, key_mask = self._allocate(plan, steps, device, dtype)
        eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
        tokens = torch.full((b, steps), pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((b, steps), dtype=torch.float32, device=device)
        unfinished = torch.ones(b, dtype=torch.bool, device=device)
        logits = self._prefill(plan, cache_k, cache_v, cos_t, sin_t, device)  # [B, V]
        live, compactions = None, 0  # live: [A] batch row of each cache row (None: all B rows)
        for t in range(steps):
            if t > 0:  # feed token t-1 (slot P+t-1, position p_i+t-1), get logits for token t
                if params.stop_at_eos:
                    keep = self._compact_rows(unfinished, live)
                    if keep is not None:
                        cache_k = [c.index_select(0, keep) for c in cache_k]
                        cache_v = [c.index_select(0, keep) for c in cache_v]
                        key_mask = key_mask.index_select(0, keep)
                        live = keep if live is None else live[keep]
                        compactions += 1
                fed = tokens[:, t - 1] if live is None else tokens[live, t - 1]
                pos = (plan.lengths if live is None else plan.lengths[live]) + (t - 1)
                out = self._decode_step(fed, width + t - 1, cos_t[pos], sin_t[pos],
                                        key_mask[..., : width + t], cache_k, cache_v)
                if live is None:
                    logits = out
                else:  # finished rows keep stale logits: drawn for, then replaced by PAD
                    logits.index_copy_(0, live, out)
            nxt, lp = sample_next(logits, params)
            if params.stop_at_eos:  # finished rows get PAD, as in transformers
                nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
                unfinished = unfinished & ~torch.isin(nxt, eos)
            tokens[:, t], logprobs[:, t] = nxt, lp
            if params.stop_at_eos and not bool(unfinished.any()):
                return tokens[:, : t + 1], logprobs[:, : t + 1], compactions
        return tokens, logprobs, compactions
