"""Config groups shared by the RL stages (PPO, GRPO, RLOO).

Batch vocabulary of an RL iteration (printed at the start of every run):

    prompts_per_batch   prompts drawn from the prompt set for one rollout batch
    samples_per_prompt  responses sampled per prompt (1 for PPO, the group size G for GRPO/RLOO)
    rollout batch       prompts_per_batch x samples_per_prompt responses, scored once
    minibatch           train.micro_batch_size x train.grad_accum responses per optimizer step
    epochs              passes over the rollout batch (reshuffled each time) before the next rollout
    optimizer steps per iteration = epochs x rollout batch / minibatch
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import opt
from rlhfkit.models.reward import Reduction
from rlhfkit.monitor.hacking import HackingConfig
from rlhfkit.train.config import LoraConfig, SampleConfig, TrainConfig


@dataclass
class PromptData:
    prompts: str = opt("demo:prompts", "prompt file (any record kind; prompts are taken from it) or demo:prompts")
    max_prompts: int = opt(0, "use at most this many prompts (0 = all)")
    max_prompt_length: int = opt(
        128, "prompts longer than this many tokens (chat template included) are dropped and counted")
    eval_prompts: int = opt(8, "prompts held out for the before/after report and periodic evaluation (0 = none)")
    eval_samples: int = opt(4, "responses sampled per held-out prompt at each evaluation (more = less noisy "
                            "before/after numbers)")

    def validate(self) -> None:
        if self.eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1, got {self.eval_samples}")
        if self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.max_prompts < 0 or self.eval_prompts < 0:
            raise ValueError("max_prompts and eval_prompts must be >= 0")


@dataclass
class RolloutConfig:
    engine: Literal["fast", "hf"] = opt("fast", "sampling engine: fast (static KV cache, Llama) or hf (model.generate)")
    temperature: float = opt(0.7, "sampling temperature; training log-probs divide the logits by the same value")
    top_p: float = opt(1.0, "nucleus sampling (1.0 = off, the RLHF default: log-probs then match exactly)")
    max_new_tokens: int = opt(64, "response length cap in tokens (EOS included)")
    missing_eos: Literal["keep", "penalty", "drop"] = opt(
        "penalty", "responses that hit max_new_tokens without EOS: keep their score, replace it by "
                   "missing_eos_penalty (the EOS trick), or drop them from the update")
    missing_eos_penalty: float = opt(-1.0, "score given to a response without EOS when missing_eos=penalty")

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (RL needs sampled responses)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


@dataclass
class ScoreConfig:
    ensemble_reduce: Reduction = opt(
        "mean", "how an ensemble reward model combines its members")
    normalize: Literal["none", "batch", "running"] = opt(
        "none", "whiten scores: per batch, or with running mean/std over the run (saved in checkpoints)")
    clip: float = opt(0.0, "clip scores (after normalisation) to [-clip, clip] (0 = off)")

    def validate(self) -> None:
        if self.clip < 0:
            raise ValueError("clip must be >= 0")


@dataclass
class RLStageConfig:
    """The fields every on-policy RL stage (PPO, GRPO, RLOO) has: the models, the prompts, how
    responses are sampled and scored, LoRA, the reward-hacking watch and the before/after samples.
    Each stage adds its algorithm's group, its KL group, and train/optim defaults."""

    model: str = opt("default", "policy to start from (the SFT model): default, tiny, or a HF folder")
    reference: str = opt("", "frozen reference model (empty = the same as model)")
    reward: str = opt("", "reward: a reward-model folder, contains:WORD, regex:PATTERN, length[:N], "
                          "python:module:function or file.py:function")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    data: PromptData = opt(factory=PromptData, help="")
    rollout: RolloutConfig = opt(factory=RolloutConfig, help="")
    score: ScoreConfig = opt(factory=ScoreConfig, help="")
    lora: LoraConfig = opt(factory=LoraConfig, help="")
    hacking: HackingConfig = opt(factory=HackingConfig, help="")
    samples: SampleConfig = opt(factory=SampleConfig, help="")


def validate_rl_train(train: TrainConfig, responses_per_batch: int) -> None:
    """Checks shared by the RL stages: minibatches tile the rollout batch."""
    minibatch = train.micro_batch_size * train.grad_accum
    if responses_per_batch % minibatch:
        raise ValueError(f"the rollout batch ({responses_per_batch} responses) must be a multiple of "
                         f"the minibatch train.micro_batch_size x train.grad_accum = {minibatch}")
    if train.early_stopping_patience:
        raise ValueError("train.early_stopping_patience is not used by RL stages; leave it at 0")
