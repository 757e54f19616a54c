"""Config groups shared by every training stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt


@dataclass
class OptimConfig:
    lr: float = opt(2e-5, "peak learning rate (AdamW)")
    weight_decay: float = opt(0.0, "AdamW decoupled weight decay")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.999, "AdamW beta2")
    eps: float = opt(1e-8, "AdamW epsilon")
    scheduler: Literal["linear", "cosine", "constant"] = opt(
        "linear", "learning-rate schedule after warm-up; linear/cosine anneal to zero at the last step")
    warmup_ratio: float = opt(0.05, "fraction of optimizer steps spent warming up linearly from 0")
    max_grad_norm: float = opt(1.0, "clip the global gradient norm to this (0 = no clipping)")

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")


@dataclass
class TrainConfig:
    output_dir: str = opt("runs/stage", "where checkpoints, metrics.jsonl and the final model go")
    epochs: float = opt(1.0, "passes over the training data (fractions allowed)")
    max_steps: int = opt(0, "stop after this many optimizer steps (0 = use epochs)")
    micro_batch_size: int = opt(4, "examples per forward/backward pass on one process")
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step")
    eval_every: int = opt(0, "evaluate on the dev split every N optimizer steps (0 = at the end only)")
    save_every: int = opt(0, "write a resumable checkpoint every N optimizer steps (0 = at the end only)")
    keep_checkpoints: int = opt(
        2, "how many step checkpoints to keep on disk (0 = all); with 2 or more the oldest is deleted "
           "before a new one is written, so at most this many exist; 1 needs room for 2 while writing")
    log_every: int = opt(1, "write metrics every N optimizer steps")
    seed: int = opt(0, "seed for data order, initialisation and sampling")
    resume: str = opt("auto", "auto = continue from the newest checkpoint in output_dir; never; or a path")
    tensorboard: bool = opt(False, "also write TensorBoard event files to output_dir/tensorboard")
    trackers: list[Literal["mlflow", "wandb"]] = opt(
        help="experiment trackers fed beside metrics.jsonl, e.g. [mlflow, wandb] (packages mlflow-skinny, "
             "wandb; rlhfkit/monitor/trackers.py)", factory=list)
    tracker_project: str = opt("rlhfkit", "MLflow experiment / W&B project name of the tracked runs")
    mlflow_uri: str = opt("", "MLflow tracking URI (empty = sqlite:///output_dir/mlflow.db; or a server URL)")
    wandb_mode: Literal["offline", "online"] = opt(
        "offline", "W&B: offline writes output_dir/wandb (upload later with wandb sync); online needs a login")
    early_stopping_patience: int = opt(
        0, "stop when the dev metric has not improved for this many evaluations (0 = off)")
    progress: bool = opt(True, "show a progress bar")
    distributed: Literal["auto", "ddp", "none"] = opt(
        "auto", "data-parallel training under torchrun: auto (DDP when torchrun starts several "
                "processes), ddp (needs torchrun), none (one process); gloo on CPU, NCCL on CUDA; "
                "global batch = micro_batch_size x grad_accum x processes")

    def validate(self) -> None:
        if self.micro_batch_size < 1 or self.grad_accum < 1:
            raise ValueError("micro_batch_size and grad_accum must be >= 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs > 0 or max_steps > 0")


@dataclass
class LoraConfig:
    enabled: bool = opt(False, "train a LoRA adapter instead of all weights (peft)")
    r: int = opt(16, "LoRA rank")
    alpha: int = opt(32, "LoRA alpha (scale = alpha / r)")
    dropout: float = opt(0.0, "dropout on the LoRA path")
    target_modules: list[str] = opt(
        help="module names to adapt",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class SampleConfig:
    prompts: int = opt(3, "held-out prompts whose responses are shown before and after training (0 = off)")
    max_new_tokens: int = opt(48, "length limit of those responses (greedy decoding)")
