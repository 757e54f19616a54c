"""What a run prints before it starts: the one batch vocabulary, and a memory estimate.

Batch vocabulary (used by every stage and printed at start):
  micro_batch_size  examples in one forward/backward pass on one process
  grad_accum        micro-batches summed before one optimizer step
  processes         data-parallel processes (1 on a laptop)
  global_batch_size = micro_batch_size * grad_accum * processes  (examples per optimizer step)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

GiB = 1024 ** 3


def describe_batches(micro_batch_size: int, grad_accum: int, n_examples: int, steps: int,
                     unit: str = "examples") -> str:
    from rlhfkit.distributed.group import world_size

    procs = world_size()
    global_bs = micro_batch_size * grad_accum * procs
    return (f"batch: micro_batch_size={micro_batch_size} {unit} per forward x grad_accum={grad_accum} "
            f"x processes={procs} = global_batch_size={global_bs} {unit} per optimizer step; "
            f"{n_examples} {unit} -> {steps} optimizer steps")


@dataclass
class MemoryEstimate:
    weights: float
    grads: float
    optimizer: float
    activations: float
    available: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations

    def summary(self) -> str:
        return (f"memory estimate: {self.total / GiB:.1f} GiB peak (weights {self.weights / GiB:.2f}, "
                f"grads {self.grads / GiB:.2f}, AdamW {self.optimizer / GiB:.2f}, activations "
                f"{self.activations / GiB:.2f}) of {self.available / GiB:.1f} GiB available")

    @property
    def too_big(self) -> bool:
        return self.total > 0.9 * self.available


def available_memory(device: str = "cpu") -> float:
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return float(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimate_training_memory(model: Any, micro_batch_size: int, seq_len: int, *,
                             extra_weight_copies: int = 0, device: str = "cpu",
                             checkpointing: bool = False, logit_positions: int | None = None) -> MemoryEstimate:
    """Rough peak for one training step: weights, grads and AdamW moments of trainable parameters,
    activations kept for backward (about 34*s*b*h + 5*a*s^2*b bytes per layer in 16-bit, doubled
    for fp32, the second term only without a fused attention kernel; Korthikanti et al. 2022) and
    the LM-head logits with their gradient, at ``logit_positions`` positions of the micro-batch
    (default all of its tokens; 0 for a scalar-head reward or value model)."""
    params = list(model.parameters())
    bytes_per = params[0].element_size() if params else 4
    n_all = sum(p.numel() for p in params)
    n_train = sum(p.numel() for p in params if p.requires_grad)
    cfg = getattr(model, "config", None)
    hidden = getattr(cfg, "hidden_size", 768)
    layers = getattr(cfg, "num_hidden_layers", 12)
    heads = getattr(cfg, "num_attention_heads", 12)
    vocab = getattr(cfg, "vocab_size", 32000)
    tokens = micro_batch_size * seq_len
    scale = bytes_per / 2
    # the 5*a*s^2*b term is the stored attention probabilities; a fused kernel (SDPA, flash) keeps
    # only its output and log-sum-exp, which the 34*s*b*h term already counts
    fused_attention = getattr(cfg, "_attn_implementation", None) in ("sdpa", "flash_attention_2",
                                                                     "flash_attention_3", "flex_attention")
    per_layer = (34 * tokens * hidden + (0 if fused_attention else 5 * heads * seq_len * tokens)) * scale
    if checkpointing:
        per_layer = 2 * tokens * hidden * scale
    logits = tokens if logit_positions is None else logit_positions
    activations = layers * per_layer + 3 * logits * vocab * bytes_per
    return MemoryEstimate(
        weights=n_all * bytes_per * (1 + extra_weight_copies),
        grads=n_train * bytes_per,
        optimizer=2 * n_train * 4,
        activations=activations,
        available=available_memory(device),
    )
