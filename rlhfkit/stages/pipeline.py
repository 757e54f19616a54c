"""The main job: the RLHF stages in order from one config, on the demo data by default.

    method=ppo (default):  base --SFT--> sft/final --reward model--> rm/final --PPO--> ppo/final
    method=dpo:            base --SFT--> sft/final --DPO--> dpo/final
    method=sft:            base --SFT--> sft/final

It shows the answers of the base model and of the final model to the same held-out prompts, so a
person sees what the run changed. Each stage writes into its own folder under ``output_dir`` and
resumes from its checkpoints when the pipeline is run again. Every stage's keys can be overridden
with a prefix, e.g. ``rlhfkit pipeline sft.train.epochs=1 ppo.train.max_steps=4``; the model and data
paths that connect the stages are set by the pipeline itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rlhfkit.config import build, opt
from rlhfkit.stages import dpo as dpo_stage
from rlhfkit.stages import ppo as ppo_stage
from rlhfkit.stages import reward as rm_stage
from rlhfkit.stages import sft as sft_stage
from rlhfkit.run import prepare_output, print_sample, say
from rlhfkit.train.config import SampleConfig
from rlhfkit.train.config import OptimConfig, TrainConfig


def demo_sft() -> sft_stage.SFTConfig:
    """SFT on the 40 demo demonstrations: 2 epochs at batch 8."""
    return sft_stage.SFTConfig(
        max_length=256,
        train=TrainConfig(epochs=2, micro_batch_size=8),
        optim=OptimConfig(lr=3e-5),
        samples=SampleConfig(prompts=0),
    )


def demo_rm() -> rm_stage.RewardConfig:
    """A reward model on the 40 demo preference pairs: the top layers and the head train, the
    lower 24 of 30 layers are frozen (and cached), 3 epochs."""
    return build(rm_stage.RewardConfig, {
        "max_length": 256, "freeze_layers": 24,
        "data": {"train": "demo:pairs", "dev_fraction": 0.2},
        "train": {"epochs": 3, "micro_batch_size": 8, "eval_every": 0},
        "optim": {"lr": 2e-5, "warmup_ratio": 0.1},
    })


def demo_ppo() -> ppo_stage.PPOConfig:
    return ppo_stage.demo_config(model="", reward="", output_dir="")


def demo_dpo() -> dpo_stage.DPOConfig:
    """DPO on the demo pairs: 8 steps of 4 pairs, beta 0.1."""
    return build(dpo_stage.DPOConfig, {
        "max_length": 256, "loss": "sigmoid", "beta": 0.1,
        "data": {"train": "demo:pairs", "dev_fraction": 0.2},
        "train": {"max_steps": 8, "micro_batch_size": 4},
        "optim": {"lr": 1e-5, "warmup_ratio": 0.1},
        "samples": {"prompts": 0},
    })


@dataclass
class PipelineConfig:
    model: str = opt("default", "base model for every stage: default (SmolLM2-135M-Instruct), tiny, a folder")
    method: Literal["ppo", "dpo", "sft"] = opt(
        "ppo", "what follows SFT: ppo (reward model, then PPO), dpo, or nothing (sft)")
    output_dir: str = opt("runs/pipeline", "each stage writes to a sub-folder here")
    show_prompts: int = opt(3, "held-out demo prompts answered by the base and the final model")
    max_new_tokens: int = opt(48, "length limit of those answers (greedy)")
    sft: sft_stage.SFTConfig = opt(factory=demo_sft, help="")
    rm: rm_stage.RewardConfig = opt(factory=demo_rm, help="")
    ppo: ppo_stage.PPOConfig = opt(factory=demo_ppo, help="")
    dpo: dpo_stage.DPOConfig = opt(factory=demo_dpo, help="")


@dataclass
class PipelineResult:
    final_model: Path
    stages: dict = field(default_factory=dict)  # stage name -> its result
    samples: list = field(default_factory=list)  # (prompt, base answer, final answer)


REPORTS = {"sft": sft_stage, "rm": rm_stage, "ppo": ppo_stage, "dpo": dpo_stage}


def show_prompts(n: int) -> list:
    from rlhfkit.data.sources import load

    return load("demo:prompts", "prompts").records[-n:] if n else []


def answers(model_name: str, prompts: list, max_new_tokens: int) -> list[str]:
    from rlhfkit.models.loading import load_causal_lm

    model, tok = load_causal_lm(model_name)
    from rlhfkit.rollout import greedy_texts

    return greedy_texts(model, tok, prompts, max_new_tokens)


def run(cfg: PipelineConfig) -> PipelineResult:
    out = prepare_output(cfg, cfg.output_dir)
    prompts = show_prompts(cfg.show_prompts)
    before = answers(cfg.model, prompts, cfg.max_new_tokens)
    stages: dict[str, Any] = {}

    say("== stage 1: supervised fine-tuning ==")
    cfg.sft.model = cfg.model
    cfg.sft.train.output_dir = str(out / "sft")
    stages["sft"] = sft_stage.run(cfg.sft)
    final = stages["sft"].model_dir

    if cfg.method == "ppo":
        say("== stage 2: reward model ==")
        cfg.rm.model = str(final)
        cfg.rm.train.output_dir = str(out / "rm")
        stages["rm"] = rm_stage.run(cfg.rm)
        say("== stage 3: PPO ==")
        cfg.ppo.model, cfg.ppo.reward = str(final), str(stages["rm"].model_dir)
        cfg.ppo.train.output_dir = str(out / "ppo")
        stages["ppo"] = ppo_stage.run(cfg.ppo)
        final = stages["ppo"].model_dir
    elif cfg.method == "dpo":
        say("== stage 2: DPO ==")
        cfg.dpo.model = str(final)
        cfg.dpo.train.output_dir = str(out / "dpo")
        stages["dpo"] = dpo_stage.run(cfg.dpo)
        final = stages["dpo"].model_dir

    after = answers(str(final), prompts, cfg.max_new_tokens)
    return PipelineResult(final_model=final, stages=stages, samples=list(zip(prompts, before, after)))


def report(result: PipelineResult) -> None:
    print("== pipeline finished ==")
    for name, stage_result in result.stages.items():
        print(f"\n-- {name} --")
        REPORTS[name].report(stage_result)
    print(f"\nfinal model: {result.final_model}")
    print("\nanswers of the base model (before) and the final model (after) to held-out prompts:")
    for prompt, before, after in result.samples:
        print_sample(prompt, before, after)
