"""Stage 1: supervised fine-tuning (SPEC section 2).

Next-token cross-entropy on response tokens only (prompt tokens are masked with -100), the model's
chat template, dynamic padding with length bucketing (or packing), optional LoRA, dev loss and
perplexity, Hugging Face checkpoints plus exact resume. Reads like a recipe:
setup -> data -> train -> report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.config import opt
from rlhfkit.run import memory_check, print_sample, say, say_trainable, truncation_report, warn
from rlhfkit.stages.common import start_lm_stage
from rlhfkit.train.config import LoraConfig, OptimConfig, SampleConfig, TrainConfig


@dataclass
class SFTData:
    train: str = opt("demo:sft", "SFT file (JSONL/JSONL.gz/JSON/Parquet/HF dataset folder) or demo:sft")
    dev: str = opt("", "dev file; empty = hold out dev_fraction of the training records")
    dev_fraction: float = opt(0.1, "share of train held out for dev loss/perplexity when dev is empty")
    max_examples: int = opt(0, "use at most this many training records (0 = all)")


@dataclass
class SFTConfig:
    model: str = opt("default", "model to fine-tune: default (SmolLM2-135M-Instruct), tiny, a HF folder or hub name")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    max_length: int = opt(512, "prompt+response tokens per example; longer ones are cut and counted")
    packing: bool = opt(False, "pack several examples per row (block-diagonal attention, no padding)")
    data: SFTData = opt(factory=SFTData, help="")
    lora: LoraConfig = opt(factory=LoraConfig, help="")
    train: TrainConfig = opt(factory=lambda: TrainConfig(output_dir="runs/sft", epochs=3,
                                                         micro_batch_size=8), help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=5e-5), help="")
    samples: SampleConfig = opt(factory=SampleConfig, help="")

    def validate(self) -> None:
        if self.max_length < 2:  # below 2 no response token is left to predict: a "perfect" loss of 0
            raise ValueError(f"max_length must be >= 2 (a prompt token and a response token), "
                             f"got {self.max_length}")


@dataclass
class SFTResult:
    model_dir: Path
    steps: int
    dev_loss_before: float | None
    dev_loss_after: float | None
    samples: list = field(default_factory=list)  # (prompt, before, after)
    metrics_file: Path | None = None


def load_examples(cfg: SFTConfig, tokenizer: Any) -> tuple[list, list, list]:
    """Read, split and tokenize; returns (train Encoded, dev Encoded, dev records)."""
    from rlhfkit.data.sources import load, split_dev
    from rlhfkit.data.tokenize import encode_example

    result = load(cfg.data.train, "sft", limit=cfg.data.max_examples or None)
    say(result.report())
    if cfg.data.dev:
        dev_result = load(cfg.data.dev, "sft")
        say(dev_result.report())
        train_records, dev_records = result.records, dev_result.records
    else:
        train_records, dev_records = split_dev(result.records, cfg.data.dev_fraction, cfg.train.seed)
    train = [encode_example(tokenizer, r.prompt, r.response, cfg.max_length) for r in train_records]
    dev = [encode_example(tokenizer, r.prompt, r.response, cfg.max_length) for r in dev_records]
    if cfg.data.dev and not dev:
        warn(f"data.dev: {cfg.data.dev}: no usable dev examples: training runs without a dev loss")
    truncation_report("SFT examples", sum(e.response_truncated or e.prompt_truncated for e in train),
                      len(train), cfg.max_length)
    require_targets(train, cfg.max_length)
    return train, dev, dev_records


def require_targets(examples: list, max_length: int) -> None:
    """Stop when truncation left no response token to predict: the loss would read 0 (perplexity 1)."""
    if examples and not any(e.prompt_ids and e.response_ids for e in examples):
        from rlhfkit.config import ConfigError

        raise ConfigError(f"max_length={max_length}: no response token of the {len(examples)} training "
                          "examples survives truncation, so there is nothing to learn: raise max_length")


def sft_step(model: Any, batch: dict, device: str):
    """Loss on response tokens; the LM head runs only where a response token is predicted."""
    from rlhfkit.losses.sft import selected_token_loss
    from rlhfkit.models.forward import logits_at, next_token_targets
    from rlhfkit.train.loop import StepOutput

    batch = {k: v.to(device) for k, v in batch.items()}
    select, targets = next_token_targets(batch["labels"])
    logits = logits_at(model, batch["input_ids"], batch["attention_mask"], select,
                       batch.get("position_ids"))
    loss, stats = selected_token_loss(logits, targets)
    real = int(batch.get("token_mask", batch["attention_mask"]).sum())
    return StepOutput(loss=loss, stats={"ppl": stats["ppl"]}, tokens=real,
                      examples=batch["input_ids"].shape[0])


def loss_tokens(batch: dict) -> int:
    """Tokens the loss of a micro-batch averages over (its weight in gradient accumulation)."""
    return int((batch["labels"][:, 1:] != -100).sum())


def make_batches(examples: list, cfg: SFTConfig, pad_id: int, epoch: int, shuffle: bool = True) -> list:
    from rlhfkit.data.collate import bucketed_batches, collate_packed, collate_sft, pack_examples

    size = cfg.train.micro_batch_size
    if cfg.packing:
        rows = pack_examples(examples, cfg.max_length)
        order = bucketed_batches([len(r) for r in rows], size, cfg.train.seed, epoch, shuffle)
        return [collate_packed([[examples[i] for i in rows[j]] for j in b], pad_id) for b in order]
    order = bucketed_batches([len(e) for e in examples], size, cfg.train.seed, epoch, shuffle)
    return [collate_sft([examples[i] for i in b], pad_id) for b in order]


def evaluate_loss(model: Any, batches: list, device: str) -> dict:
    """Token-weighted dev loss and perplexity."""
    import torch

    from rlhfkit.models.forward import next_token_targets

    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            out = sft_step(model, batch, device)
            n = int(next_token_targets(batch["labels"])[1].numel())
            total += float(out.loss) * n
            tokens += n
    loss = total / max(1, tokens)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def run(cfg: SFTConfig) -> SFTResult:
    from rlhfkit.models.lora import save_merged
    from rlhfkit.monitor.metrics import MetricLogger
    from rlhfkit.rollout import greedy_texts
    from rlhfkit.train.checkpoint import load_weights_into, save_hf_folder
    from rlhfkit.train.loop import EvalSpec, total_steps, train_loop
    from rlhfkit.train.report import describe_batches

    out, device, model, tokenizer, train, dev, dev_records = start_lm_stage(cfg, load_examples, "SFT examples")
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = tokenizer.pad_token_id
    n_micro = len(make_batches(train, cfg, pad_id, 0))
    steps = total_steps(cfg.train, n_micro)
    say(describe_batches(cfg.train.micro_batch_size, cfg.train.grad_accum, len(train), steps))
    say_trainable(model)
    memory_check(model, cfg.train.micro_batch_size, max(len(e) for e in train), device)

    dev_batches = make_batches(dev, cfg, pad_id, 0, shuffle=False) if dev else []
    sample_prompts = [r.prompt for r in dev_records[:cfg.samples.prompts]]
    before = greedy_texts(model, tokenizer, sample_prompts, cfg.samples.max_new_tokens)
    dev_before = evaluate_loss(model, dev_batches, device)["loss"] if dev_batches else None
    logger = MetricLogger.for_run(out, cfg.train, cfg)

    def save_model(folder: Path) -> None:
        save_hf_folder(model, tokenizer, folder)

    result = train_loop(
        model=model, params=params,
        micro_batches=lambda epoch: make_batches(train, cfg, pad_id, epoch),
        compute=lambda batch: sft_step(model, batch, device),
        cfg=cfg.train, optim=cfg.optim, save_model=save_model,
        load_model=lambda folder: load_weights_into(model, folder), logger=logger,
        evaluate=EvalSpec(lambda: evaluate_loss(model, dev_batches, device)) if dev_batches else None,
        desc="sft", weight=loss_tokens,
    )
    logger.close()
    final_dir = result.final_dir
    if cfg.lora.enabled:
        final_dir = save_merged(model, tokenizer, result.final_dir)  # final/ merged, final/adapter/
    after = greedy_texts(model, tokenizer, sample_prompts, cfg.samples.max_new_tokens)
    dev_after = result.eval_history[-1]["loss"] if result.eval_history else None
    return SFTResult(model_dir=final_dir, steps=result.steps, dev_loss_before=dev_before,
                     dev_loss_after=dev_after, samples=list(zip(sample_prompts, before, after)),
                     metrics_file=logger.path)


def report(result: SFTResult) -> None:
    """Print what a person wants to see at the end of an SFT run."""
    print(f"SFT finished: {result.steps} optimizer steps; model saved to {result.model_dir}")
    if result.dev_loss_before is not None and result.dev_loss_after is not None:
        print(f"dev loss {result.dev_loss_before:.4f} -> {result.dev_loss_after:.4f} "
              f"(perplexity {math.exp(min(result.dev_loss_before, 50)):.2f} -> "
              f"{math.exp(min(result.dev_loss_after, 50)):.2f})")
    for prompt, before, after in result.samples:
        print_sample(prompt, before, after)
    print(f"metrics: {result.metrics_file}")
