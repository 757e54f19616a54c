"""Resumable checkpoints: a Hugging Face folder (what users load) plus the training state.

Layout under ``output_dir``::

    checkpoints/step-000040/      model files (save_pretrained: config.json, model.safetensors or
                                  adapter_model.safetensors, tokenizer files) + training_state.pt
    final/                        the finished model, a plain HF folder

Each checkpoint is written to a temporary folder, flushed to disk and renamed into place
(:func:`rlhfkit.utils.io.atomic_save_folder`), so a crash never leaves a half-written checkpoint under
a real name; a resumed run still verifies the newest one and falls back to an older one when it is
damaged (:func:`load_resumable`). ``training_state.pt`` holds the optimizer, scheduler,
RNG states and loop counters: a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from rlhfkit.utils.io import atomic_save_folder  # noqa: F401  (re-exported: the one atomic folder writer)

STATE_FILE = "training_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = checkpoint_dir(output_dir)
    if not root.exists():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def _prune(output_dir: str | Path, keep: int, exclude_step: int | None = None) -> None:
    found = [(s, p) for s, p in list_checkpoints(output_dir) if s != exclude_step]
    for _, old in found[:max(0, len(found) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(output_dir: str | Path, step: int, save_model: Callable[[Path], None],
                    state: dict, keep: int = 2) -> Path:
    """Write model + state atomically as ``checkpoints/step-N`` and keep the newest ``keep`` (0 =
    all). With ``keep >= 2`` the oldest surplus one is deleted before the new one is written, so at
    most ``keep`` are ever on disk; ``keep=1`` needs room for two while the new one is written."""
    import torch

    if keep >= 2:
        _prune(output_dir, keep - 1, exclude_step=step)

    def write(folder: Path) -> None:
        save_model(folder)
        torch.save(state, folder / STATE_FILE)

    final = atomic_save_folder(checkpoint_dir(output_dir) / step_dir_name(step), write)
    if keep > 0:
        _prune(output_dir, keep)
    return final


class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be resumed from (the message says what is wrong)."""


def verify_checkpoint(path: str | Path) -> dict:
    """Load ``training_state.pt`` and check every ``*.safetensors`` file under the folder (at least
    one, non-empty, header and size consistent); returns the state or raises DamagedCheckpoint."""
    import torch
    from safetensors import safe_open

    path = Path(path)
    try:
        state = torch.load(path / STATE_FILE, weights_only=False)
    except Exception as err:  # truncated zip, bad pickle, missing file
        raise DamagedCheckpoint(f"{STATE_FILE} does not load ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise DamagedCheckpoint(f"{STATE_FILE} holds no training state")
    weights = sorted(path.rglob("*.safetensors"))
    if not weights:
        raise DamagedCheckpoint("no *.safetensors weights")
    for file in weights:
        name = file.relative_to(path)
        if file.stat().st_size == 0:
            raise DamagedCheckpoint(f"{name} is empty")
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as err:
            raise DamagedCheckpoint(f"{name} is unreadable ({err})") from None
    return state


def resume_target(train: Any) -> Path | None:
    """The checkpoint ``train.resume`` points at before any is verified: None (``never``, or no
    checkpoint yet), the newest one (``auto``), or the path given."""
    if train.resume == "never":
        return None
    if train.resume == "auto":
        return latest_checkpoint(train.output_dir)
    path = Path(train.resume)
    if not path.exists():
        from rlhfkit.errors import MissingFileError

        raise MissingFileError(f"train.resume: {path}: no such checkpoint")
    return path


def load_resumable(train: Any, warn: Callable[[str], None]) -> tuple[Path, dict] | None:
    """The checkpoint to resume from and its training state, verified. ``auto``: a damaged newest
    one is moved aside to ``step-N.damaged`` (with a warning naming it) and the next newest valid
    one is used; an explicit ``train.resume`` path that is damaged is a ConfigError."""
    from rlhfkit.config import ConfigError

    target = resume_target(train)
    if target is None:
        return None
    if train.resume != "auto":
        try:
            return target, verify_checkpoint(target)
        except DamagedCheckpoint as err:
            raise ConfigError(f"train.resume: {target}: damaged checkpoint: {err}") from None
    for _, path in reversed(list_checkpoints(train.output_dir)):
        try:
            return path, verify_checkpoint(path)
        except DamagedCheckpoint as err:
            aside = path.with_name(path.name + ".damaged")
            shutil.rmtree(aside, ignore_errors=True)
            path.rename(aside)
            warn(f"checkpoint {path} is damaged ({err}); moved it to {aside.name} and resuming from "
                 "the newest valid one")
    warn(f"no valid checkpoint left in {checkpoint_dir(train.output_dir)}: starting from step 0")
    return None


def load_state(path: str | Path) -> dict:
    import torch

    return torch.load(Path(path) / STATE_FILE, weights_only=False)


def save_hf_folder(model: Any, tokenizer: Any, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def load_weights_into(model: Any, folder: str | Path) -> None:
    """Load weights saved by :func:`save_hf_folder` back into ``model`` in place (full or LoRA)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    adapter = folder / "adapter_model.safetensors"
    if adapter.exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(adapter))
        return
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to resume from")
    state = {}
    for file in files:
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"{folder}: weights do not match the model "
                           f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]})")
