"""The reference rollout engine: plain ``model.generate`` on a left-padded batch.

Slow on CPU (per-step overhead dominates at small models) but it is the definition the fast engine
is tested against. Works for any causal LM ``transformers`` can generate with, LoRA/PEFT included.
"""

from __future__ import annotations

from typing import Any

import torch

from rlhfkit.rollout.base import check_prompts, finish_batch, left_pad, pad_token_id, resolve_eos_ids
from rlhfkit.rollout.sampling import seeded, token_logprobs
from rlhfkit.rollout.types import RolloutBatch, SamplingParams


class HFEngine:
    """Rollouts through ``model.generate(do_sample=..., output_logits=True)``."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer

    def update_weights(self, model_or_state_dict: Any) -> None:
        """Shares the policy module: a module is adopted as is; a state dict is loaded into it."""
        if isinstance(model_or_state_dict, torch.nn.Module):
            self.model = model_or_state_dict
        else:
            self.model.load_state_dict(model_or_state_dict)

    def _generation_config(self, params: SamplingParams, eos_ids: tuple[int, ...], pad_id: int):
        from transformers import GenerationConfig

        sampling = {} if params.greedy else {
            "temperature": float(params.temperature), "top_p": float(params.top_p),
            "top_k": int(params.top_k),
        }
        return GenerationConfig(
            do_sample=not params.greedy,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=list(eos_ids) if params.stop_at_eos else [],  # [] = never stop (None = model default)
            pad_token_id=pad_id,
            return_dict_in_generate=True,
            output_logits=True,
            use_cache=True,
            **sampling,
        )

    @torch.inference_mode()
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> RolloutBatch:
        prompts = check_prompts(prompt_ids)
        device = next(self.model.parameters()).device
        pad_id = pad_token_id(self.tokenizer)
        eos_ids = resolve_eos_ids(self.model, self.tokenizer, params)
        ids, mask = left_pad(prompts, pad_id, device)
        config = self._generation_config(params, eos_ids, pad_id)
        was_training = self.model.training
        self.model.eval()
        try:
            with seeded(params.seed, device):
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        finally:
            self.model.train(was_training)
        tokens = out.sequences[:, ids.shape[1]:]  # [B, T]
        # raw logits per step -> log-probs under softmax(logits / temperature), unfiltered
        scale = params.logprob_temperature
        logprobs = torch.stack(
            [token_logprobs(step.float() / scale, tokens[:, t]) for t, step in enumerate(out.logits)],
            dim=1,
        ) if tokens.shape[1] else torch.zeros_like(tokens, dtype=torch.float32)
        return finish_batch(ids, mask, tokens, logprobs, eos_ids, pad_id, params.stop_at_eos,
                            meta={"engine": self.name})
