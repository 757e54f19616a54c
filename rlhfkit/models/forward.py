"""Forward passes that skip work the loss does not need.

The LM head of a small model is a large share of its FLOPs (SmolLM2-135M: 576 x 49152, about a third
of a forward pass per token), yet SFT, DPO and PPO only need logits where a response token is
predicted. :func:`logits_at` runs the decoder once and applies the LM head only at the selected
positions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any


def unwrap(model: Any) -> Any:
    """The transformers model under a peft wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_hidden(model: Any, input_ids, attention_mask, position_ids=None):
    """Last hidden states ``[B, L, H]`` of the decoder stack (no LM head)."""
    base = unwrap(model)
    out = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def next_token_targets(labels, ignore_index: int = -100):
    """``labels [B, L]`` -> (positions ``[B, L]`` bool whose *next* token is scored, targets ``[N]``)."""
    import torch

    select = torch.zeros_like(labels, dtype=torch.bool)
    select[:, :-1] = labels[:, 1:] != ignore_index
    return select, labels[:, 1:][select[:, :-1]]


def logits_at(model: Any, input_ids, attention_mask, select, position_ids=None):
    """LM-head logits ``[N, V]`` only at positions where ``select [B, L]`` is True (row-major)."""
    hidden = decoder_hidden(model, input_ids, attention_mask, position_ids)
    return unwrap(model).get_output_embeddings()(hidden[select])


@contextmanager
def layer_range(backbone: Any, start: int, stop: int | None, final_norm: bool = True):
    """Run only ``backbone.layers[start:stop]`` (and the final norm unless ``final_norm=False``)
    inside this block; the decoder's own forward does the rest (rotary positions, masks)."""
    import torch

    full, norm = backbone.layers, backbone.norm
    backbone.layers = torch.nn.ModuleList(list(full)[start:stop])
    if not final_norm:
        backbone.norm = torch.nn.Identity()
    try:
        yield backbone
    finally:
        backbone.layers, backbone.norm = full, norm


# --------------------------------------------------------------------------------------------------
# the last decoder layer, only where its output is read

# Decoder layers with the pre-norm Llama block (norm -> attention -> residual -> norm -> MLP ->
# residual) and plain q/k/v/o projections (optional biases), rotary positions from the decoder.
_PLAIN_LAYERS = ("LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer")


def supports_partial_last_layer(backbone: Any) -> bool:
    """Whether :func:`final_hidden_at` may run the last layer on the read positions only."""
    layers = getattr(backbone, "layers", None)
    if not layers or not hasattr(backbone, "norm") or not hasattr(backbone, "rotary_emb"):
        return False
    last = layers[-1]
    if type(last).__name__ not in _PLAIN_LAYERS:
        return False
    config = getattr(last.self_attn, "config", None)
    return not getattr(config, "sliding_window", None) or not getattr(config, "use_sliding_window", True)


def key_mask_at(attention_mask, index, dtype):
    """Additive mask ``[B, 1, K, L]`` for queries at ``index [B, K]``: from a 4D additive mask
    ``[B, 1, L, L]`` its rows, from a 2D padding mask ``[B, L]`` the real tokens at or before each
    query (causal), with the dtype's minimum elsewhere."""
    import torch

    if attention_mask.dim() == 4:
        rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1)
        return attention_mask[:, 0][rows, index].unsqueeze(1).to(dtype)
    positions = torch.arange(attention_mask.shape[1], device=index.device)
    allowed = attention_mask.bool().unsqueeze(1) & (positions <= index.unsqueeze(-1))  # [B, K, L]
    return torch.zeros(allowed.shape, dtype=dtype, device=index.device).masked_fill(
        ~allowed, torch.finfo(dtype).min).unsqueeze(1)


def decoder_layer_at(layer: Any, hidden, index, mask, position_embeddings):
    """Output ``[B, K, H]`` of a Llama-style decoder ``layer`` at positions ``index [B, K]`` only.

    Keys and values come from every position of ``hidden [B, L, H]``; the queries, the attention
    output, the residuals and the MLP run only at the ``K`` read positions. Same arithmetic as the
    layer's own forward there (tested to float tolerance, gradients included)."""
    import sys

    import torch
    import torch.nn.functional as F

    attn = layer.self_attn
    rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    b, length, _ = hidden.shape
    rows = torch.arange(b, device=hidden.device).unsqueeze(1)  # [B, 1]
    normed = layer.input_layernorm(hidden)  # [B, L, H]
    k = attn.k_proj(normed).view(b, length, -1, attn.head_dim).transpose(1, 2)  # [B, kv, L, d]
    v = attn.v_proj(normed).view(b, length, -1, attn.head_dim).transpose(1, 2)
    q = attn.q_proj(normed[rows, index]).view(b, index.shape[1], -1, attn.head_dim).transpose(1, 2)
    cos, sin = position_embeddings  # [B, L, d]
    q = rotary(q, q, cos[rows, index], sin[rows, index])[0]
    k = rotary(k, k, cos, sin)[1]
    p = attn.attention_dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask_at(mask, index, q.dtype),
                                         dropout_p=p, scale=attn.scaling, enable_gqa=True)
    h = hidden[rows, index] + attn.o_proj(out.transpose(1, 2).reshape(b, index.shape[1], -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def final_hidden_at(backbone: Any, index, attention_mask, position_ids, input_ids=None, inputs_embeds=None,
                    start_layer: int = 0):
    """Final (normed) hidden states ``[B, K, H]`` at positions ``index [B, K]``.

    A reward model reads one position per response, so the last layer's queries, attention output
    and MLP at every other position are wasted work (for SmolLM2-135M one layer in 30; a quarter of
    the trained compute when only the top 4 layers train). Layers below the last run as usual.
    ``inputs_embeds`` with ``start_layer`` = the output of the lowest ``start_layer`` layers
    (before the final norm), e.g. a frozen-layer cache. Falls back to the full forward for decoders
    without the plain Llama block."""
    import torch

    n = len(backbone.layers)
    rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1)
    inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    kwargs = {"attention_mask": attention_mask, "position_ids": position_ids, "use_cache": False}
    if start_layer >= n or not supports_partial_last_layer(backbone):
        with layer_range(backbone, start_layer, None):
            return backbone(**inputs, **kwargs).last_hidden_state[rows, index]
    if start_layer < n - 1:
        with layer_range(backbone, start_layer, n - 1, final_norm=False):
            hidden = backbone(**inputs, **kwargs).last_hidden_state
    else:
        hidden = inputs_embeds
    position_embeddings = backbone.rotary_emb(hidden, position_ids)
    out = decoder_layer_at(backbone.layers[-1], hidden, index, attention_mask, position_embeddings)
    return backbone.norm(out)
