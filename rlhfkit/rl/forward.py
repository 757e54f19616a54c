"""Forward passes over (prompt, response) sequences: per-token log-probs, entropies and values.

Layout (Huang et al. 2024 details: left padding with matching position ids, a PAD distinct from EOS):

    columns:   [ PAD .. PAD prompt | response .. PAD ]       ids [B, P + T]
    position:  counts real tokens only: cumsum(mask) - 1 (as generation computed them)
    response token t is predicted by the hidden state at column P - 1 + t

Only the response positions go through the LM head (the head of a small model is a large share of
its FLOPs), and columns that are padding in every row of a micro-batch are cut off first.
Log-probs divide the logits by the sampling temperature, so the first PPO epoch sees ratio 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlhfkit.losses.utils import entropy_from_logits, logprobs_from_logits
from rlhfkit.models.forward import decoder_hidden, unwrap


@dataclass
class Sequences:
    """Model inputs for a batch of prompt+response rows, trimmed of all-padding columns.

    input_ids / attention_mask / position_ids: [B, L]; ``start``: column whose hidden state predicts
    response token 0; ``length``: T, the response columns covered (the longest response).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    start: int
    length: int


def build_sequences(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                    response_mask: torch.Tensor) -> Sequences:
    """[B, P] left-padded prompts + [B, T] right-padded responses -> :class:`Sequences`."""
    real_cols = (prompt_mask.sum(0) > 0).nonzero()
    first = int(real_cols[0]) if len(real_cols) else prompt_ids.shape[1] - 1
    first = min(first, prompt_ids.shape[1] - 1)  # keep at least the last prompt column
    length = max(1, int(response_mask.sum(1).max()))
    ids = torch.cat([prompt_ids[:, first:], response_ids[:, :length]], dim=1)
    mask = torch.cat([prompt_mask[:, first:], response_mask[:, :length]], dim=1).long()
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)  # [B, L]
    start = prompt_ids.shape[1] - first - 1
    return Sequences(ids, mask, position_ids, start, length)


def response_hidden(model: Any, seq: Sequences) -> torch.Tensor:
    """[B, T, H]: the hidden states that predict each response token."""
    hidden = decoder_hidden(model, seq.input_ids, seq.attention_mask, seq.position_ids)
    return hidden[:, seq.start: seq.start + seq.length]


def token_logprobs(model: Any, seq: Sequences, response_ids: torch.Tensor, temperature: float,
                   entropy: str = "none", value_head: Any = None):
    """Per-token log pi(y_t | x, y_<t) at ``temperature``: returns (logp [B, T], entropy [B, T] or
    None, values [B, T] or None). ``entropy``: none, stat (detached, for logging) or grad (for an
    entropy bonus). ``value_head`` (a Linear H -> 1) reads the same hidden states."""
    hidden = response_hidden(model, seq)  # [B, T, H]
    logits = unwrap(model).get_output_embeddings()(hidden)  # [B, T, V]
    targets = response_ids[:, : seq.length]
    logp = logprobs_from_logits(logits, targets, temperature)
    ent = None
    if entropy == "grad":
        ent = entropy_from_logits(logits, temperature)
    elif entropy == "stat":
        with torch.no_grad():
            ent = entropy_from_logits(logits.detach(), temperature)
    values = value_head(hidden).squeeze(-1).float() if value_head is not None else None  # [B, T]
    return logp, ent, values


def value_model_values(value_model: Any, seq: Sequences) -> torch.Tensor:
    """[B, T] values from a sequence-classification model's backbone and scalar head, read at the
    same positions as the policy's logits (the state before each response token)."""
    base = unwrap(value_model)
    out = base.base_model(input_ids=seq.input_ids, attention_mask=seq.attention_mask,
                          position_ids=seq.position_ids, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    hidden = hidden[:, seq.start: seq.start + seq.length]
    return base.score(hidden).squeeze(-1).float()  # [B, T, 1] -> [B, T]
