"""The config group of N-samples-per-prompt sampling, shared by best-of-N and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt


@dataclass
class GroupSampling:
    """How :func:`rlhfkit.rollout.sample_groups` draws ``n`` responses per prompt."""

    n: int = opt(4, "responses sampled per prompt")
    temperature: float = opt(1.0, "sampling temperature (1 = the policy's own distribution; diversity "
                                  "across the N samples matters)")
    top_p: float = opt(1.0, "nucleus sampling threshold (1 = off)")
    top_k: int = opt(0, "keep the k most probable tokens (0 = off)")
    max_new_tokens: int = opt(128, "length limit of each response")
    batch_size: int = opt(64, "sequences per generate call (whole prompt groups are kept together)")
    engine: Literal["fast", "hf"] = opt("fast", "rollout engine: fast (static KV cache, Llama) or hf")
