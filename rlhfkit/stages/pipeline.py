"""The main job: the RLHF stages in order from one config, on the demo data by default.

    base model --SFT--> sft/final --(method)--> final policy

It shows a few responses of the base model and of the final model to the same held-out prompts,
so a person sees what the run changed. Each stage writes into its own folder under
``output_dir`` and resumes from its checkpoints when the pipeline is run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rlhfkit.config import opt
from rlhfkit.stages import sft as sft_stage
from rlhfkit.stages.common import prepare_output, say
from rlhfkit.train.config import OptimConfig, TrainConfig


def demo_sft() -> sft_stage.SFTConfig:
    """SFT on the 40 demo demonstrations: 2 epochs at batch 8 (about a minute on 2 cores)."""
    return sft_stage.SFTConfig(
        max_length=256,
        train=TrainConfig(epochs=2, micro_batch_size=8, progress=True),
        optim=OptimConfig(lr=3e-5),
        samples=sft_stage.SampleConfig(prompts=0),
    )


@dataclass
class PipelineConfig:
    model: str = opt("default", "base model for every stage: default (SmolLM2-135M-Instruct), tiny, a folder")
    method: Literal["sft"] = opt("sft", "which stages follow SFT")
    output_dir: str = opt("runs/pipeline", "each stage writes to a sub-folder here")
    show_prompts: int = opt(3, "held-out demo prompts answered by the base and the final model")
    max_new_tokens: int = opt(48, "length limit of those answers (greedy)")
    sft: sft_stage.SFTConfig = opt(factory=demo_sft, help="")


@dataclass
class PipelineResult:
    final_model: Path
    stages: dict = field(default_factory=dict)  # stage name -> its result
    samples: list = field(default_factory=list)  # (prompt, base answer, final answer)


def show_prompts(n: int) -> list:
    from rlhfkit.data.sources import load

    return load("demo:prompts", "prompts").records[:n]


def answers(model_name: str, prompts: list, max_new_tokens: int) -> list[str]:
    from rlhfkit.models.loading import load_causal_lm

    model, tok = load_causal_lm(model_name)
    return sft_stage.sample(model, tok, prompts, max_new_tokens)


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

    after = answers(str(final), prompts, cfg.max_new_tokens)
    return PipelineResult(final_model=final, stages=stages, samples=list(zip(prompts, before, after)))


def report(result: PipelineResult) -> None:
    print("== pipeline finished ==")
    for name, stage_result in result.stages.items():
        module = {"sft": sft_stage}.get(name)
        if module is not None and hasattr(module, "report"):
            print(f"\n-- {name} --")
            module.report(stage_result)
    print(f"\nfinal model: {result.final_model}")
    print("\nresponses of the base model (before) and the final model (after):")
    for prompt, before, after in result.samples:
        sft_stage.print_sample(prompt, before, after)
