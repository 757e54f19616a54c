"""The run context below the stages: what every stage and the RL loop share to open and narrate a
run. User-facing lines (``say``/``warn``, on stderr through logging so stdout stays parseable),
the output folder with its resume guard, seeds, the device, and start-of-run reports (truncation,
memory, trainable parameters).

Import direction: stages, rl/ and train/ import this module; it imports nothing above ``config``,
``train`` and ``models``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

log = logging.getLogger("rlhfkit")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Keys a resumed run may change without breaking the continuation (where the folder is, the length
# of the run, logging).
# train.grad_accum and train.distributed may change with the number of processes: the training loop
# checks that the global batch (micro_batch_size x grad_accum x processes) stays the same.
RESUME_FREE_KEYS = ("train.output_dir", "output_dir", "train.resume", "train.max_steps", "train.epochs",
                    "train.grad_accum", "train.distributed",
                    "train.progress", "train.tensorboard", "train.trackers",
                    "train.tracker_project", "train.mlflow_uri", "train.wandb_mode", "train.save_every", "train.keep_checkpoints",
                    "train.log_every", "train.eval_every")


def config_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs, except :data:`RESUME_FREE_KEYS`."""
    from rlhfkit.config import flatten_keys

    a, b = flatten_keys(old), flatten_keys(new)
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b))
            if k not in RESUME_FREE_KEYS and a.get(k) != b.get(k)]


def check_resume_compatible(cfg: Any, out: Path) -> None:
    """Before any work: a run that would resume from checkpoints in ``out`` must have the config
    that wrote them (apart from the run length and logging), else resuming would silently continue
    a different run or fail deep inside the optimizer state."""
    from rlhfkit.config import ConfigError, read_yaml, to_dict
    from rlhfkit.train.checkpoint import latest_checkpoint

    train = getattr(cfg, "train", None)
    if getattr(train, "resume", "never") != "auto" or not (out / "config.yaml").exists():
        return
    if latest_checkpoint(out) is None:
        return
    import yaml

    now = yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False))  # as config.yaml stores it
    changes = config_changes(read_yaml(out / "config.yaml"), now)
    if changes:
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
        raise ConfigError(
            f"train.output_dir={out} holds checkpoints of a run with a different config ({shown}), and "
            "train.resume=auto would continue that run: use a new train.output_dir, remove the folder, "
            "or set train.resume=never to start over in it")


def prepare_output(cfg: Any, output_dir: str) -> Path:
    """Create the run folder and write ``config.yaml`` (after checking that a resume is valid)."""
    from rlhfkit.config import ConfigError, save_config
    from rlhfkit.data.fingerprint import begin_run

    out = Path(output_dir)
    begin_run()  # the data this run reads is fingerprinted from here on (resume check)
    key = "output_dir" if getattr(cfg, "output_dir", None) == output_dir else "train.output_dir"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{key}={out}: is a file, not a folder")
    check_resume_compatible(cfg, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    except OSError as err:  # read-only file system, no permission, a parent that is a file, disk full
        raise ConfigError(f"{key}={out}: cannot write the run folder ({err.strerror or err})") from None
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


def say_trainable(model: Any, detail: str = "") -> None:
    """Print ``trainable parameters: N of M`` (and ``detail`` in parentheses)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"trainable parameters: {trainable:,} of {sum(p.numel() for p in model.parameters()):,}"
        + (f" ({detail})" if detail else ""))


def prompt_text(prompt: Any) -> str:
    """What a report shows of a prompt: its last message if a conversation, else the text."""
    return prompt[-1].content if isinstance(prompt, tuple) else str(prompt)


def print_sample(prompt: Any, before: str, after: str) -> None:
    """One before/after sample of an end-of-run report."""
    print(f"\n  prompt: {prompt_text(prompt)}\n  before: {before.strip()}\n  after:  {after.strip()}")
