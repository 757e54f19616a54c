"""Typed containers at the rollout boundary: what to sample (:class:`SamplingParams`) and what came
back (:class:`RolloutBatch`).

Log-prob convention (read this before using ``RolloutBatch.logprobs`` in a loss): the engines record
``log softmax(logits / temperature)[token]`` under the *temperature-scaled, unfiltered* distribution,
even when top-k / top-p filtering restricted the tokens that could be drawn. That is the quantity a
PPO/GRPO trainer recomputes from a plain forward pass of the policy (logits divided by the sampling
temperature, Huang et al. 2024, "The N+ implementation details of RLHF with PPO"), so the importance
ratio of the first PPO epoch is exactly 1. With ``top_k == 0`` and ``top_p == 1`` (the RLHF default)
it is also exactly the log-prob of the sampling distribution. Greedy decoding (``temperature == 0``)
records ``log softmax(logits)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one response per prompt.

    temperature: logits are divided by it before softmax; ``0`` means greedy (argmax) decoding.
    top_p: nucleus filtering, keep the smallest set of tokens whose probability sums to >= top_p
        (``1.0`` = off).
    top_k: keep the k most probable tokens (``0`` = off). Applied after temperature, before top-p.
    max_new_tokens: hard cap on response length (the EOS token counts as a response token).
    eos_token_ids: tokens that end a response. ``None`` = every EOS id of the model's generation
        config and the tokenizer (see :func:`rlhfkit.rollout.base.resolve_eos_ids`).
    stop_at_eos: ``False`` keeps sampling through EOS until ``max_new_tokens`` (benchmarks).
    seed: makes sampling reproducible (the global torch RNG is seeded inside a forked RNG state,
        so the caller's RNG stream is left untouched). ``None`` = draw from the caller's RNG.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    eos_token_ids: tuple[int, ...] | None = None
    stop_at_eos: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise ValueError(f"SamplingParams.temperature: must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k: must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.eos_token_ids is not None:
            object.__setattr__(self, "eos_token_ids", tuple(int(t) for t in self.eos_token_ids))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def logprob_temperature(self) -> float:
        """The divisor of the logits in the recorded log-probs (1 for greedy decoding)."""
        return 1.0 if self.greedy else float(self.temperature)


@dataclass
class RolloutBatch:
    """One sampled response per prompt. B = prompts, P = longest prompt, T = longest response.

    prompt_ids: [B, P] long, left-padded with PAD.
    prompt_mask: [B, P] long, 1 on real prompt tokens.
    response_ids: [B, T] long, right-padded with PAD after the response (and after its EOS).
    response_mask: [B, T] long, 1 on real response tokens, the EOS token included.
    logprobs: [B, T] float32, log pi(token | prefix) under softmax(logits / temperature) without
        top-k/top-p filtering (module docstring); 0 where ``response_mask`` is 0.
    finished: [B] bool, True where the response ended with an EOS token.
    response_lengths: [B] long, ``response_mask.sum(1)``.
    pad_token_id: the PAD id used in ``prompt_ids`` and ``response_ids``.
    """

    prompt_ids: Any
    prompt_mask: Any
    response_ids: Any
    response_mask: Any
    logprobs: Any
    finished: Any
    response_lengths: Any
    pad_token_id: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        b, t = self.response_ids.shape
        if self.prompt_ids.shape[0] != b or self.prompt_mask.shape != self.prompt_ids.shape:
            raise ValueError(
                f"RolloutBatch.prompt_ids/prompt_mask: shapes {tuple(self.prompt_ids.shape)} and "
                f"{tuple(self.prompt_mask.shape)} do not match {b} responses"
            )
        for name in ("response_mask", "logprobs"):
            shape = tuple(getattr(self, name).shape)
            if shape != (b, t):
                raise ValueError(f"RolloutBatch.{name}: shape {shape}, expected {(b, t)}")
        for name in ("finished", "response_lengths"):
            shape = tuple(getattr(self, name).shape)
            if shape != (b,):
                raise ValueError(f"RolloutBatch.{name}: shape {shape}, expected {(b,)}")

    def __len__(self) -> int:
        return int(self.response_ids.shape[0])

    @property
    def sequences(self):
        """[B, P + T] prompt and response concatenated (left PAD, prompt, response, right PAD)."""
        import torch

        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self):
        """[B, P + T] 1 on real tokens of :attr:`sequences`."""
        import torch

        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    def response_token_lists(self) -> list[list[int]]:
        """Each response's real tokens (EOS included) as a Python list."""
        lengths = self.response_lengths.tolist()
        return [row[:n] for row, n in zip(self.response_ids.tolist(), lengths)]

    def prompt_token_lists(self) -> list[list[int]]:
        return [
            [tok for tok, m in zip(row, mask) if m]
            for row, mask in zip(self.prompt_ids.tolist(), self.prompt_mask.tolist())
        ]

    def decode(self, tokenizer: Any, skip_special_tokens: bool = True) -> list[str]:
        """Response texts (special tokens such as EOS dropped by default)."""
        return tokenizer.batch_decode(
            self.response_token_lists(), skip_special_tokens=skip_special_tokens
        )

    def to(self, device: Any) -> "RolloutBatch":
        """A copy with every tensor moved to ``device``."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value.to(device) if hasattr(value, "to") and f.name != "meta" else value
        return RolloutBatch(**values)

    def select(self, index: Sequence[int]) -> "RolloutBatch":
        """Rows ``index`` (a list of ints), e.g. to split a batch; padding columns are kept."""
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.response_ids.device)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value.index_select(0, idx) if hasattr(value, "index_select") else value
        return RolloutBatch(**values)
