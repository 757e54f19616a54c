"""Policies and judges under evaluation: name -> model folder, K samples per prompt from each, and
reward specs loaded with errors that name the config key.

A policy is a run folder (its ``final/`` model is used), a Hugging Face folder, ``default`` or
``tiny``, or a hub name. Sampling is the best-of-N stage's (:func:`rlhfkit.rollout.sample_groups`:
the rollout engine, whole prompt groups per engine call so each prompt is prefilled once).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.config import opt
from rlhfkit.rollout.config import GroupSampling


@dataclass
class EvalSampling(GroupSampling):
    n: int = opt(4, "responses sampled per prompt and policy (K)")

    def validate(self) -> None:
        if self.n < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("n, batch_size and max_new_tokens must be >= 1")


@dataclass
class PolicySamples:
    name: str  # as the user gave it
    path: str  # the model folder (or alias) that was loaded
    texts: list  # [P][K] response texts
    finished: list  # [P][K] ended with EOS
    embeddings: Any = None  # [P*K, H] numpy, prompt-major, or None
    tokens_per_s: float = 0.0
    seconds: float = 0.0


def resolve_policy(spec: str) -> str:
    """A run folder -> its ``final/`` model; anything else as given (``default``, ``tiny``, a folder)."""
    final = Path(spec).expanduser() / "final"
    return str(final) if (final / "config.json").exists() else spec


def check_policies(names: list[str]) -> None:
    """Raise ModelLoadError (one line) for a name that is no model folder, run folder or alias."""
    from rlhfkit.models.loading import resolve_model_path

    for name in names:
        resolve_model_path(resolve_policy(name))


def sample_policy(spec: str, prompts: list, sampling: EvalSampling, seed: int, device: str,
                  dtype: str = "float32", embed: bool = False) -> PolicySamples:
    """Load the policy, sample ``sampling.n`` responses per prompt (seeds ``seed``, ``seed + 1``, ...
    per engine call), optionally embed them with the same model, and free the model."""
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.rollout import make_engine, sample_groups

    path = resolve_policy(spec)
    model, tokenizer = load_causal_lm(path, dtype=dtype, device=device)
    start = time.time()
    engine = make_engine(sampling.engine, model, tokenizer)
    groups, tokens_per_s = sample_groups(engine, tokenizer, prompts, sampling, seed)
    texts = [list(t) for t, _ in groups]
    embeddings = None
    if embed:
        from rlhfkit.eval.diversity import response_embeddings

        embeddings = response_embeddings(model, tokenizer, [t for g in texts for t in g])
    out = PolicySamples(spec, path, texts, [list(f) for _, f in groups], embeddings, tokens_per_s,
                        time.time() - start)
    del engine, model
    gc.collect()
    return out


def load_named_reward(spec: str, key: str, device: str, reduce: str = "mean"):
    """:func:`rlhfkit.rewards.load_reward`, its error re-raised as a ConfigError naming ``key``."""
    from rlhfkit.config import ConfigError
    from rlhfkit.rewards import RewardError, load_reward

    try:
        return load_reward(spec, device=device, reduce=reduce)
    except RewardError as err:
        raise ConfigError(f"{key}: {err}") from err
