"""Sampling engines behind one interface (:class:`RolloutEngine`): ``hf`` (``model.generate``, the
reference) and ``fast`` (static KV cache, packed prefill; Llama architectures). See base.py."""

from rlhfkit.rollout.base import (  # noqa: F401
    ENGINE_NAMES,
    RolloutEngine,
    encode_prompts,
    generate_texts,
    greedy_texts,
    sample_groups,
    make_engine,
    resolve_eos_ids,
)
from rlhfkit.rollout.types import RolloutBatch, SamplingParams  # noqa: F401
