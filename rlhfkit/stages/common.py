"""Set-up steps every stage shares: output folder, logging, seeds, start-of-run report."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

log = logging.getLogger("rlhfkit")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_output(cfg: Any, output_dir: str) -> Path:
    from rlhfkit.config import save_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return out


def say(message: str) -> None:
    """User-facing progress line (stderr via logging, so stdout stays parseable)."""
    log.info(message)


def warn(message: str) -> None:
    log.warning(message)


def truncation_report(what: str, n_cut: int, n_total: int, max_length: int, threshold: float = 0.05):
    """Warn when many examples hit the length limit (silent truncation is a classic failure)."""
    if n_total and n_cut:
        share = n_cut / n_total
        text = (f"{n_cut} of {n_total} {what} ({share:.0%}) were cut at max_length={max_length}")
        if share >= threshold:
            warn(text + ": raise max_length or filter long examples")
        else:
            say(text)


def memory_check(model: Any, micro_batch_size: int, seq_len: int, device: str = "cpu", **kw) -> None:
    from rlhfkit.train.report import estimate_training_memory

    est = estimate_training_memory(model, micro_batch_size, seq_len, device=device, **kw)
    if est.too_big:
        warn(est.summary() + ": this will likely run out of memory; lower micro_batch_size or "
             "max_length, use LoRA, or raise grad_accum instead")
    else:
        say(est.summary())
