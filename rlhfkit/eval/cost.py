"""Compute cost of a stage before running it (``rlhfkit plan``): FLOPs per optimizer step or RL
iteration, split by phase and role, the time on a device, and what full RLHF costs over SFT.

What is counted (Kaplan et al. 2020, with the attention term made explicit):

    N_body  parameters of the decoder layers (+ final norm): every token goes through them
    N_head  vocab x hidden, the LM-head matmul, counted only at the positions whose logits are
            computed (rlhfkit computes logits only where a token is scored; a reward or value model
            has a scalar head, counted as 0). Input embeddings are a lookup: 0 FLOPs.
    pairs   (query, key) pairs attended: a causal row of L tokens has L(L+1)/2; decoding n tokens
            after a prompt of P has nP + n(n+1)/2.

    forward  = 2 N_body tokens + 4 layers d_attn pairs + 2 N_head logit_positions
    training = forward + backward; backward = 2x forward for layers whose weights train (weight
               and activation gradients: 6 N tokens in all), 1x for the matmuls of frozen layers a
               gradient passes through (activation gradients only: LoRA, 4 N tokens), 2x for
               attention wherever a gradient passes, nothing below the lowest trainable layer
               (a reward model's frozen bottom layers); a LoRA adapter adds 6 N_lora tokens.

Memory per role comes from :func:`rlhfkit.train.report.estimate_training_memory` (one memory
model in the project). Time = FLOPs / (peak x utilisation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

# bf16 dense tensor peak (TFLOP/s, no sparsity) and memory (GiB) as the vendors state them
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "a100": (312.0, 80.0),
    "h100": (989.0, 80.0),     # SXM
    "h200": (989.0, 141.0),
    "l4": (121.0, 24.0),
    "rtx4090": (165.0, 24.0),
}

Grad = Literal["none", "full", "lora"]


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs of a model (from its config.json, see rlhfkit/cost_cli.py)."""

    name: str
    layers: int
    d_attn: int      # query width: heads x head_dim (= hidden for most models)
    body: int        # N_body: decoder-layer parameters (+ final norm)
    head: int        # N_head: vocab x hidden
    lora: int = 0    # trainable LoRA parameters for the stage's lora group (0 = LoRA off)


@dataclass(frozen=True)
class Work:
    """One pass: tokens through the body, attended (query, key) pairs, LM-head positions."""

    tokens: float
    pairs: float
    logits: float = 0.0

    def __mul__(self, k: float) -> "Work":
        return Work(self.tokens * k, self.pairs * k, self.logits * k)


def causal_pairs(length: float) -> float:
    """L(L+1)/2: a causal row of L tokens, each attending to itself and everything before it."""
    return length * (length + 1) / 2


def decode_pairs(prompt: float, new: float) -> float:
    """n P + n(n+1)/2: n tokens decoded one at a time after a cached prompt of P tokens."""
    return new * prompt + causal_pairs(new)


def row(prompt: float, response: float, logits: float | None = None) -> Work:
    """One prompt+response row (logits at the response positions unless given)."""
    return Work(prompt + response, causal_pairs(prompt + response), response if logits is None else logits)


def shared_prompt(prompt: float, responses: list[float], logits: bool = True) -> Work:
    """A prompt computed once for k responses (tree attention): P + sum r tokens,
    P(P+1)/2 + sum (r P + r(r+1)/2) pairs."""
    return Work(prompt + sum(responses), causal_pairs(prompt) + sum(decode_pairs(prompt, r) for r in responses),
                sum(responses) if logits else 0.0)


def pass_flops(shape: ModelShape, w: Work, grad: Grad = "none", trainable_layers: int | None = None) -> float:
    """FLOPs of one forward (grad="none") or forward+backward pass over ``w`` (formulas above).
    ``trainable_layers``: only the top k layers train (the rest frozen, no gradient reaches them)."""
    k = shape.layers if trainable_layers is None else min(trainable_layers, shape.layers)
    per_layer_fwd = 2 * shape.body / shape.layers * w.tokens + 4 * shape.d_attn * w.pairs
    head_fwd = 2 * shape.head * w.logits
    forward = shape.layers * per_layer_fwd + head_fwd
    if grad == "none":
        return forward
    attn_fwd = 4 * shape.d_attn * w.pairs
    matmul_fwd = per_layer_fwd - attn_fwd
    if grad == "full":  # weights train: 2x forward for the top k layers and the head
        backward = k * 2 * per_layer_fwd + 2 * head_fwd
        return forward + backward
    # LoRA: frozen matmuls pass activation gradients (1x), attention 2x, adapters train (6 N_lora)
    backward = k * (matmul_fwd + 2 * attn_fwd) + head_fwd
    return forward + backward + 6 * shape.lora * w.tokens * k / shape.layers


@dataclass
class Phase:
    name: str
    role: str          # policy, reference, reward, value
    flops: float
    note: str = ""


@dataclass
class Plan:
    """The cost of one unit (optimizer step, RL iteration, prompt) of a stage, split by phase."""

    stage: str
    unit: str
    phases: list[Phase]
    units: int | None = None          # units in the whole run (None = unknown)
    memory: dict = field(default_factory=dict)   # role -> GiB (filled by the CLI)
    assumptions: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.phases)

    @property
    def total_flops(self) -> float | None:
        return None if self.units is None else self.flops * self.units

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(flops_per_unit=self.flops, total_flops=self.total_flops)
        return out


def seconds(flops: float, peak_flops: float, utilisation: float) -> float:
    """Time at ``utilisation`` x ``peak_flops`` (FLOP/s)."""
    return flops / (peak_flops * utilisation)


def steps_for(examples: int | None, global_batch: int, epochs: float, max_steps: int) -> int | None:
    """Optimizer steps of a supervised run: max_steps when set, else ceil(epochs x examples / batch)."""
    if max_steps > 0:
        return max_steps
    if examples is None:
        return None
    return max(1, math.ceil(epochs * examples / global_batch))


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matrix-multiply throughput of this machine now (GFLOP/s), the best of a few runs
    (about a second; benchmarks/ measure their peak with this too)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9
