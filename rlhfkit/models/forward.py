"""Forward passes that skip work the loss does not need.

The LM head of a small model is a large share of its FLOPs (SmolLM2-135M: 576 x 49152, about a third
of a forward pass per token), yet SFT, DPO and PPO only need logits where a response token is
predicted. :func:`logits_at` runs the decoder once and applies the LM head only at the selected
positions.
"""

from __future__ import annotations

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
