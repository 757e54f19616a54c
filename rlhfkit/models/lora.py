"""LoRA in one place: build the adapter, switch it off (the reference), save merged + adapter.

Every stage that offers ``lora.enabled`` (SFT, reward model, DPO family, PPO/GRPO/RLOO) calls these:

    apply_lora(model, cfg.lora)          a peft model whose only trainable weights are the adapter's
    with adapter_disabled(model): ...    the base weights alone: the frozen reference, no second copy
    save_merged(model, tok, final)       final/ = merged full model (loads like any HF model),
                                         final/adapter/ = the adapter alone; written atomically

peft is imported only when LoRA is used.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Callable

ADAPTER_DIR = "adapter"


def apply_lora(model: Any, lora: Any, task_type: str = "CAUSAL_LM",
               modules_to_save: list[str] | None = None) -> Any:
    """Wrap ``model`` in a peft LoRA model from a :class:`rlhfkit.train.config.LoraConfig`.

    ``task_type``: CAUSAL_LM (policies) or SEQ_CLS (reward and value models); ``modules_to_save``:
    modules trained in full next to the adapter (the reward stage's ``score`` head)."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    extra = {} if modules_to_save is None else {"modules_to_save": list(modules_to_save)}
    peft_cfg = PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type=task_type, **extra)
    return get_peft_model(model, peft_cfg)


def is_lora(model: Any) -> bool:
    return hasattr(model, "disable_adapter")


def adapter_disabled(model: Any):
    """Context in which a peft model computes with its base weights only (the reference); a plain
    model is used as it is."""
    return model.disable_adapter() if is_lora(model) else contextlib.nullcontext()


def merged_copy(model: Any) -> Any:
    """The plain HF model with the adapter merged into its weights, built from a copy so ``model``
    stays a peft model (training, sampling or the reference may still use it)."""
    return copy.deepcopy(model).merge_and_unload() if is_lora(model) else model


def write_merged(model: Any, tokenizer: Any, folder: Path, merged: Any = None) -> None:
    """Into ``folder`` (not atomic: call inside :func:`rlhfkit.train.checkpoint.atomic_save_folder`):
    the merged model and tokenizer, and the adapter (with the tokenizer) in ``folder/adapter``.
    ``merged``: the result of :func:`merged_copy` when the caller has it already."""
    from rlhfkit.train.checkpoint import save_hf_folder

    save_hf_folder(merged if merged is not None else merged_copy(model), tokenizer, folder)
    save_hf_folder(model, tokenizer, folder / ADAPTER_DIR)


def save_merged(model: Any, tokenizer: Any, folder: Path,
                extra: Callable[[Path], None] | None = None, merged: Any = None) -> Path:
    """Write ``folder`` atomically: merged model + ``adapter/`` (:func:`write_merged`), then
    ``extra(tmp)`` for whatever else belongs there (e.g. a reward model's metadata)."""
    from rlhfkit.train.checkpoint import atomic_save_folder

    def write(tmp: Path) -> None:
        write_merged(model, tokenizer, tmp, merged)
        if extra is not None:
            extra(tmp)

    return atomic_save_folder(Path(folder), write)
