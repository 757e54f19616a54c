"""Reference log-probs computed once and cached in the run folder, for any reference-based loss
(the DPO family today; KTO and others the same way).

The reference model is frozen, so log pi_ref(y|x) of every training and dev example is a constant:
compute it once before training (no gradients, eval mode, and for a LoRA policy the adapter off,
so the base weights are the reference and no second copy exists), store it with a fingerprint of
everything it depends on (the reference model's name and weight files, the dtype, every token id),
and let a resumed run or a rerun read it back instead of recomputing.

    key = fingerprint(cfg.model, cfg.dtype, [train_items, dev_items])
    tensors, reused, seconds = load_or_compute(out, key, lambda: {
        "train": compute_reference_logps(model, train_batches, logps_fn, len(train), columns=2),
        "dev": ...})

``logps_fn(model, batch)`` returns one ``[B]`` tensor per column (DPO: chosen and rejected sums);
each batch carries ``index [B]``, the examples' positions in the data set.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REFERENCE_FILE = "reference_logps.pt"


def model_identity(name: str) -> str:
    """The model name plus, for a local folder, its weight files' names, sizes and times (so a
    retrained SFT model in the same folder invalidates cached reference log-probs)."""
    from rlhfkit.models.loading import resolve_model_path

    folder = Path(resolve_model_path(name))  # a hub name is no folder: then the name alone
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return name + "".join(f"|{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def fingerprint(model: str, dtype: str, parts: Sequence[Iterable[Any]]) -> str:
    """Identifies what reference log-probs depend on: the reference model, its dtype and every
    example of every part (``repr`` of each item, e.g. a tuple of token-id lists)."""
    digest = hashlib.sha256(f"{model_identity(model)}|{dtype}".encode())
    for part in parts:
        digest.update(b"|part")
        for item in part:
            digest.update(repr(item).encode())
    return digest.hexdigest()


def compute_reference_logps(model: Any, batches: Sequence[dict], logps: Callable[[Any, dict], tuple],
                            n: int, columns: int, desc: str | None = None, unit: str = "example") -> Any:
    """Reference log-probs ``[n, columns]`` float32, in data order (rows placed at ``batch["index"]``).

    Runs without gradients, in eval mode and, for a LoRA model, with the adapter off (the base is
    the reference); restores the training mode after. ``desc``: show a progress bar with that name."""
    import torch

    from rlhfkit.models.lora import adapter_disabled

    out = torch.zeros((n, columns), dtype=torch.float32)
    if not n:
        return out
    was_training = model.training
    model.eval()
    bar = None
    if desc is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit=unit, dynamic_ncols=True)
    with torch.no_grad(), adapter_disabled(model):
        for i in range(len(batches)):
            batch = batches[i]
            for column, values in enumerate(logps(model, batch)):
                out[batch["index"], column] = values.float().cpu()
            if bar is not None:
                bar.update(len(batch["index"]))
    if bar is not None:
        bar.close()
    model.train(was_training)
    return out


def cached_reference(path: Path, key: str, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """The tensors (e.g. ``{"train": [n, 2], "dev": [m, 2]}``) from ``path`` when its fingerprint is
    ``key``, else from ``compute()`` (then saved there atomically). Returns (tensors, reused)."""
    import torch

    from rlhfkit.run import warn
    from rlhfkit.utils.io import atomic_path

    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved.get("fingerprint") == key:
            return {k: v for k, v in saved.items() if k != "fingerprint"}, True
        warn(f"{path}: reference log-probs belong to other data or another model; recomputing")
    tensors = compute()
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": key, **tensors}, tmp)
    return tensors, False


def load_or_compute(out: Path, key: str, compute: Callable[[], dict]) -> tuple[dict, bool, float]:
    """:func:`cached_reference` at ``out/reference_logps.pt``, timed and reported in one line:
    (tensors, reused from the cache, seconds spent computing)."""
    from rlhfkit.run import say

    path, start = out / REFERENCE_FILE, time.time()
    tensors, reused = cached_reference(path, key, compute)
    seconds = 0.0 if reused else time.time() - start
    say(f"reference log-probs reused from {path}" if reused
        else f"reference log-probs computed in {seconds:.1f}s -> {path}")
    return tensors, reused, seconds
