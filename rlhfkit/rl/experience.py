"""From prompts to a scored rollout batch: the part every RL algorithm here shares.

    prompts --sample--> responses + the sampler's log-probs      (time: rollout)
            --reward--> scores (+ hacking penalties, normalisation, clipping)
            --forward-> reference log-probs, values               (time: scoring)

PPO turns the result into KL-shaped per-token rewards and GAE advantages; GRPO/RLOO into
group-relative advantages (see rlhfkit/stages/ppo.py and grpo.py). Everything is kept in a
:class:`Experience`, the typed container the update step reads minibatches from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import torch

from rlhfkit.rl.forward import build_sequences, token_logprobs, value_model_values


@dataclass
class Experience:
    """One rollout batch, B responses. Per-token tensors are [B, T] over response tokens.

    real_mask: 1 on every sampled response token (EOS included): the attention mask of the responses.
    mask: 1 on tokens that count in the losses (the response tokens, EOS included; rows dropped by
        ``missing_eos=drop`` are all 0).
    logprobs: log pi_old(y_t) recorded by the sampler (temperature-scaled, see rlhfkit.rollout.types).
    ref_logprobs: log pi_ref(y_t) (None when no reference is needed, e.g. GRPO with beta 0).
    values: V_old(s_t) (PPO only). advantages: [B, T]. returns: value targets [B, T] (PPO only).
    scores: [B] the scores the advantages were built from; raw_scores: [B] as the reward returned.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    real_mask: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    finished: torch.Tensor
    raw_scores: torch.Tensor
    scores: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    texts: list = field(default_factory=list)
    prompts: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.response_ids.shape[0])

    def select(self, index: Sequence[int] | torch.Tensor) -> "Experience":
        """Rows ``index`` (tensors indexed, lists picked), for minibatches."""
        idx = torch.as_tensor(index, dtype=torch.long)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value.index_select(0, idx.to(value.device))
            elif isinstance(value, list) and value:
                out[f.name] = [value[int(i)] for i in idx]
            else:
                out[f.name] = value
        return Experience(**out)

    def sequences(self):
        """Model inputs for these rows (see :func:`rlhfkit.rl.forward.build_sequences`)."""
        return build_sequences(self.prompt_ids, self.prompt_mask, self.response_ids, self.real_mask)


def micro_batches(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


class ScoreShaper:
    """Scores -> scores used for learning: optional whitening (per batch or with running
    statistics, Welford) and clipping. Stateful (saved in checkpoints) for ``running``."""

    def __init__(self, normalize: str = "none", clip: float = 0.0):
        self.normalize, self.clip = normalize, clip
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def _update(self, x: torch.Tensor) -> None:
        for v in x.tolist():  # Welford's online mean/variance
            self.count += 1
            delta = v - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (v - self.mean)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        x = scores.float()
        if self.normalize == "batch" and x.numel() > 1:
            x = (x - x.mean()) / (x.std() + 1e-8)
        elif self.normalize == "running":
            self._update(x)
            var = self.m2 / (self.count - 1) if self.count > 1 else 1.0
            x = (x - self.mean) / math.sqrt(var + 1e-8)
        if self.clip > 0:
            x = x.clamp(-self.clip, self.clip)
        return x

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


@dataclass
class Scored:
    """What :func:`collect` returns: the experience (advantages still empty) and timings/stats."""

    experience: Experience
    seconds_rollout: float
    seconds_scoring: float
    stats: dict
    hacking: Any = None


def encode_prompt_set(tokenizer: Any, prompts: list, max_length: int) -> tuple[list, list, int]:
    """Tokenize prompts with the chat template; drop (and count) those longer than ``max_length``.
    Returns (kept conversations, their ids, number dropped)."""
    from rlhfkit.data.tokenize import encode_prompt

    kept, ids, dropped = [], [], 0
    for conv in prompts:
        tokens = encode_prompt(tokenizer, conv)
        if len(tokens) > max_length:
            dropped += 1
            continue
        kept.append(conv)
        ids.append(tokens)
    return kept, ids, dropped


@torch.no_grad()
def forward_pass(roles: Any, exp: Experience, temperature: float, micro: int, *, reference: bool,
                 values: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Reference log-probs and old values for every row, ``micro`` rows at a time: ([B, T], [B, T])."""
    B, T = exp.response_ids.shape
    device = exp.response_ids.device
    ref_out = torch.zeros(B, T, device=device) if reference else None
    val_out = torch.zeros(B, T, device=device) if values else None
    for rows in micro_batches(B, micro):
        part = exp.select(rows)
        seq = part.sequences()
        n = seq.length
        if reference:
            with roles.reference_model() as ref:
                logp, _, _ = token_logprobs(ref, seq, part.response_ids, temperature)
            ref_out[rows, :n] = logp.float()
        if values:
            if roles.value is not None:
                v = value_model_values(roles.value, seq)
            else:
                _, _, v = token_logprobs(roles.policy, seq, part.response_ids, temperature,
                                         value_head=roles.value_head)
            val_out[rows, :n] = v.float()
    mask = exp.real_mask.bool()
    if ref_out is not None:
        ref_out = torch.where(mask, ref_out, torch.zeros_like(ref_out))
    if val_out is not None:
        val_out = torch.where(mask, val_out, torch.zeros_like(val_out))
    return ref_out, val_out


def detach_batch(batch: Any) -> Any:
    """A copy of a RolloutBatch whose tensors are ordinary (engines return inference-mode tensors,
    which autograd refuses to save for backward)."""
    from dataclasses import replace

    return replace(batch, **{f.name: getattr(batch, f.name).clone() for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


def collect(*, roles: Any, engine: Any, reward: Any, prompts: list, prompt_ids: list, params: Any,
            shaper: ScoreShaper, monitor: Any, step: int, micro: int, reference: bool, values: bool,
            missing_eos: str) -> Scored:
    """Sample, score and run the frozen/old forwards for one rollout batch (see module docstring)."""
    roles.train(False)
    t0 = time.time()
    batch = detach_batch(engine.generate(prompt_ids, params))
    t1 = time.time()
    texts = batch.decode(roles.tokenizer)
    raw = reward(prompts, texts).to(batch.response_ids.device)
    tokens = batch.response_token_lists()
    hacking = monitor.check_responses(step, texts, tokens, raw.tolist()) if monitor is not None else None
    scores = raw.clone()
    if hacking is not None:
        scores = scores + torch.tensor(hacking.penalties, dtype=scores.dtype, device=scores.device)
    scores = shaper(scores)
    real = batch.response_mask.float()
    mask = real.clone()
    if missing_eos == "drop":
        mask = mask * batch.finished.float().unsqueeze(1)  # dropped rows count nowhere
    exp = Experience(prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask,
                     response_ids=batch.response_ids, real_mask=real, mask=mask, logprobs=batch.logprobs.float(),
                     finished=batch.finished, raw_scores=raw, scores=scores, texts=texts,
                     prompts=list(prompts))
    exp.ref_logprobs, exp.values = forward_pass(roles, exp, params.temperature, micro,
                                                reference=reference, values=values)
    t2 = time.time()
    lengths = batch.response_lengths.float()
    stats = {
        "score": float(raw.mean()),
        "score_std": float(raw.std()) if raw.numel() > 1 else 0.0,
        "response_length": float(lengths.mean()),
        "eos_frac": float(batch.finished.float().mean()),
        "time_rollout": t1 - t0,
        "time_scoring": t2 - t1,
        "rollout_tokens_per_s": float(lengths.sum()) / max(1e-9, t1 - t0),
    }
    if reward.last_logs:
        stats.update({f"reward/{k}": float(v) for k, v in reward.last_logs.items()
                      if isinstance(v, (int, float)) or getattr(v, "numel", lambda: 0)() == 1})
    if hacking is not None:
        stats.update(hacking.metrics())
    return Scored(exp, t1 - t0, t2 - t1, stats, hacking)
