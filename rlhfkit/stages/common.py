"""The opening the causal-LM training stages (SFT, DPO) share; the run context itself (say/warn,
output folder and resume guard, seeds, device) is :mod:`rlhfkit.run`, below the stages."""

from __future__ import annotations

from typing import Any

from rlhfkit.run import prepare_output, resolve_device, seed_everything


def start_lm_stage(cfg: Any, load_data: Any, what: str) -> tuple:
    """The opening every causal-LM training stage (SFT, DPO) shares: output folder (with the resume
    guard), seeds, device, model and tokenizer, the data (``load_data(cfg, tokenizer)`` ->
    ``(train, dev, dev_records)``, an empty train set is an error naming ``data.train``), LoRA.

    Returns ``(out, device, model, tokenizer, train, dev, dev_records)``."""
    from rlhfkit.models.loading import load_causal_lm

    out = prepare_output(cfg, cfg.train.output_dir)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.device)
    model, tokenizer = load_causal_lm(cfg.model, dtype=cfg.dtype, device=device)
    train, dev, dev_records = load_data(cfg, tokenizer)
    if not train:
        from rlhfkit.data.records import no_usable

        raise no_usable("data.train", cfg.data.train, what)
    if cfg.lora.enabled:
        from rlhfkit.models.lora import apply_lora

        model = apply_lora(model, cfg.lora)
    return out, device, model, tokenizer, train, dev, dev_records
