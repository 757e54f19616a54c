"""Best-of-N sampling and rejection-sampling fine-tuning (SPEC section 6; Touvron et al. 2023,
Llama 2, section 3.2.3).

For each prompt the policy samples N responses (rollout engine ``fast`` by default: identical prompts
are prefilled once), a reward scores them (a reward-model folder, an ensemble folder, or a reward
function: anything :func:`rlhfkit.rewards.load_reward` accepts), and the best one is kept.

* ``rlhfkit bon``: inference-time best-of-N. Writes ``best_of_n.jsonl`` (prompt, best response, its
  score, the mean score of the N samples; the file reads back as SFT records) and prints the mean
  best score against the mean single-sample score: what sampling N buys under this reward.
* ``rlhfkit rejection-sampling`` (= ``bon finetune=true``): keeps the best responses (optionally only
  those scoring at least ``threshold``), writes them as SFT records (``sft_data.jsonl``) and
  fine-tunes the model on them with the SFT stage (``output_dir/sft``).

Recipe: setup -> sample -> score -> select -> write -> (fine-tune) -> report.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhfkit.config import opt
from rlhfkit.models.reward import Reduction
from rlhfkit.rollout.config import GroupSampling
from rlhfkit.run import prepare_output, prompt_text, say, seed_everything, warn
from rlhfkit.train.config import LoraConfig, OptimConfig, TrainConfig

BEST_FILE = "best_of_n.jsonl"
SAMPLES_FILE = "samples.jsonl"
SFT_DATA_FILE = "sft_data.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class BoNSampling(GroupSampling):
    n: int = opt(16, "responses sampled per prompt (Llama 2 used up to 100; 16 is plenty on a CPU)")
    only_finished: bool = opt(True, "choose only among responses that ended with EOS (a cut-off "
                                    "response makes poor SFT data); prompts with none are skipped")


@dataclass
class BoNFinetune:
    max_length: int = opt(512, "prompt+response tokens per SFT example")
    dev_fraction: float = opt(0.1, "share of the kept examples held out for the SFT dev loss")
    lora: LoraConfig = opt(factory=LoraConfig, help="")
    train: TrainConfig = opt(factory=lambda: TrainConfig(output_dir="", epochs=2, micro_batch_size=8),
                             help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=1e-5), help="")


@dataclass
class BoNConfig:
    RENAMED_KEYS: ClassVar[dict] = {"reward_reduce": "ensemble_reduce"}  # old spelling until the next release
    model: str = opt("default", "policy that samples (and, with finetune, the model fine-tuned)")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    prompts: str = opt("demo:prompts", "a file of any record kind (its prompts are used) or demo:prompts")
    max_prompts: int = opt(0, "use at most this many prompts (0 = all)")
    reward: str = opt("", "reward-model or ensemble folder, contains:WORDS, regex:PATTERN, length[:N], "
                          "python:module:function or file.py:function")
    ensemble_reduce: Reduction = opt(
        "mean", "how an ensemble combines its members (min / mean_minus_std are pessimistic)")
    reward_batch_size: int = opt(32, "responses per reward call")
    threshold: float | None = opt(None, "keep a prompt's best response only when it scores at least this")
    save_all: bool = opt(False, "also write every sample with its score to samples.jsonl")
    output_dir: str = opt("runs/bon", "where best_of_n.jsonl, summary.json (and the SFT run) go")
    seed: int = opt(0, "sampling seed")
    finetune: bool = opt(False, "rejection sampling: fine-tune the model on the kept best responses")
    sampling: BoNSampling = opt(factory=BoNSampling, help="")
    sft: BoNFinetune = opt(factory=BoNFinetune, help="")

    def validate(self) -> None:
        if not self.reward:
            raise ValueError("reward: required (a reward-model folder, an ensemble folder, contains:WORDS, "
                             "regex:PATTERN, length[:N] or python:module:function)")
        if self.sampling.n < 1:
            raise ValueError("sampling.n must be >= 1")
        if self.sampling.batch_size < 1 or self.reward_batch_size < 1:
            raise ValueError("sampling.batch_size and reward_batch_size must be >= 1")


@dataclass
class RejectionSamplingConfig(BoNConfig):
    """Same keys as ``bon``; fine-tuning on the kept responses is on by default."""

    finetune: bool = opt(True, "fine-tune the model on the kept best responses (off = best-of-N only)")


@dataclass
class PromptResult:
    prompt: Any  # Conversation
    responses: list[str]
    scores: list[float]
    finished: list[bool]
    best: int | None  # index into responses; None when no candidate qualified

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.scores[self.best]

    @property
    def mean_score(self) -> float:
        return sum(self.scores) / len(self.scores)


@dataclass
class BoNResult:
    output_dir: Path
    best_file: Path
    prompts: int
    n: int
    mean_best: float | None  # over prompts with a chosen response
    mean_single: float  # mean score of one sample = mean over every sample of every prompt
    no_candidate: int  # prompts skipped: no finished response
    below_threshold: int
    kept: int
    sample_seconds: float
    score_seconds: float
    tokens_per_s: float
    sft_data: Path | None = None
    sft_result: Any = None
    examples: list = field(default_factory=list)  # (prompt, best, best score, mean score)


# ----------------------------------------------------------------------------------------------
# Sample, score, select


def score_all(reward: Any, prompts: list, groups: list, batch_size: int) -> list[list[float]]:
    """Reward of every sample, ``[prompt][sample]`` (a reward model computes each prompt once)."""
    return reward.score_groups(prompts, [texts for texts, _ in groups], batch_size)


def pick_best(scores: list[float], finished: list[bool], only_finished: bool) -> int | None:
    """Index of the highest score (first on ties) among eligible samples; None if none is eligible."""
    eligible = [i for i in range(len(scores)) if finished[i] or not only_finished]
    if not eligible:
        return None
    return max(eligible, key=lambda i: (scores[i], -i))


def select(prompts: list, groups: list, scores: list, only_finished: bool) -> list[PromptResult]:
    return [PromptResult(prompt, texts, s, done, pick_best(s, done, only_finished))
            for prompt, (texts, done), s in zip(prompts, groups, scores)]


def write_outputs(results: list[PromptResult], cfg: BoNConfig, out: Path) -> tuple[Path, Path | None, int]:
    """best_of_n.jsonl (every prompt with a best response), samples.jsonl (save_all) and, with
    finetune, sft_data.jsonl (best responses at or above the threshold). All written atomically."""
    from rlhfkit.data.readers import write_records
    from rlhfkit.data.records import SFTExample, conversation_to_json
    from rlhfkit.utils.io import atomic_write_jsonl

    rows = [{"prompt": conversation_to_json(r.prompt), "response": r.responses[r.best],
             "score": r.best_score, "mean_score": r.mean_score, "n": len(r.responses),
             "finished": r.finished[r.best]}
            for r in results if r.best is not None]
    best_file = out / BEST_FILE
    atomic_write_jsonl(best_file, rows)
    if cfg.save_all:
        atomic_write_jsonl(out / SAMPLES_FILE, (
            {"prompt": conversation_to_json(r.prompt), "response": text, "score": score,
             "finished": done, "best": i == r.best}
            for r in results for i, (text, score, done) in enumerate(zip(r.responses, r.scores, r.finished))))
    kept = [r for r in results if r.best is not None
            and (cfg.threshold is None or r.best_score >= cfg.threshold)]
    sft_file = None
    if cfg.finetune:
        sft_file = write_records(out / SFT_DATA_FILE, [
            SFTExample(r.prompt, r.responses[r.best], meta={"score": r.best_score}) for r in kept])
    return best_file, sft_file, len(kept)


# ----------------------------------------------------------------------------------------------
# Fine-tune on the kept responses


def sft_config(cfg: BoNConfig, data: Path, out: Path):
    """The SFT stage's config for rejection-sampling fine-tuning on ``data``."""
    from dataclasses import replace

    from rlhfkit.stages.sft import SFTConfig, SFTData
    from rlhfkit.train.config import SampleConfig

    train = replace(cfg.sft.train, output_dir=cfg.sft.train.output_dir or str(out / "sft"))
    return SFTConfig(model=cfg.model, dtype=cfg.dtype, device=cfg.device, max_length=cfg.sft.max_length,
                     data=SFTData(train=str(data), dev_fraction=cfg.sft.dev_fraction),
                     lora=cfg.sft.lora, train=train, optim=cfg.sft.optim, samples=SampleConfig(prompts=0))


def run(cfg: BoNConfig) -> BoNResult:
    from rlhfkit.config import ConfigError
    from rlhfkit.data.sources import load_prompts
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.rewards import RewardError, load_reward
    from rlhfkit.rollout import make_engine, sample_groups
    from rlhfkit.run import resolve_device
    from rlhfkit.utils.io import write_json

    device = resolve_device(cfg.device)
    try:
        reward = load_reward(cfg.reward, device=device, reduce=cfg.ensemble_reduce)
    except RewardError as err:
        raise ConfigError(f"reward: {err}") from err
    out = prepare_output(cfg, cfg.output_dir)
    seed_everything(cfg.seed)
    prompts = load_prompts(cfg.prompts, cfg.max_prompts or None)
    model, tokenizer = load_causal_lm(cfg.model, dtype=cfg.dtype, device=device)
    say(f"best-of-{cfg.sampling.n}: {len(prompts)} prompts x {cfg.sampling.n} samples "
        f"(temperature {cfg.sampling.temperature}, <= {cfg.sampling.max_new_tokens} new tokens), "
        f"reward {reward.name}")

    t0 = time.time()
    groups, tokens_per_s = sample_groups(make_engine(cfg.sampling.engine, model, tokenizer), tokenizer,
                                         prompts, cfg.sampling, cfg.seed)
    t1 = time.time()
    scores = score_all(reward, prompts, groups, cfg.reward_batch_size)
    t2 = time.time()
    results = select(prompts, groups, scores, cfg.sampling.only_finished)
    best_file, sft_file, kept = write_outputs(results, cfg, out)
    chosen = [r for r in results if r.best is not None]
    summary = BoNResult(
        output_dir=out, best_file=best_file, prompts=len(prompts), n=cfg.sampling.n,
        mean_best=sum(r.best_score for r in chosen) / len(chosen) if chosen else None,
        mean_single=sum(sum(r.scores) for r in results) / sum(len(r.scores) for r in results),
        no_candidate=len(results) - len(chosen), below_threshold=len(chosen) - kept, kept=kept,
        sample_seconds=t1 - t0, score_seconds=t2 - t1, tokens_per_s=tokens_per_s, sft_data=sft_file,
        examples=[(r.prompt, r.responses[r.best], r.best_score, r.mean_score) for r in chosen[:3]])
    write_json(out / SUMMARY_FILE, {k: v for k, v in vars(summary).items()
                                    if k in ("prompts", "n", "mean_best", "mean_single", "no_candidate",
                                             "below_threshold", "kept", "sample_seconds", "score_seconds",
                                             "tokens_per_s")})
    if summary.no_candidate:
        warn(f"{summary.no_candidate} of {len(prompts)} prompts had no response that ended with EOS "
             f"within {cfg.sampling.max_new_tokens} tokens (raise sampling.max_new_tokens, or set "
             "sampling.only_finished=false)")
    if cfg.finetune:
        if not kept:
            from rlhfkit.data.records import no_usable

            raise no_usable("prompts", cfg.prompts, "responses to fine-tune on",
                            "no response was kept: lower threshold or check the reward")
        del model, reward  # the SFT stage loads its own copy of the model
        gc.collect()
        from rlhfkit.stages import sft

        say(f"rejection sampling: fine-tuning on {kept} best responses from {sft_file}")
        summary.sft_result = sft.run(sft_config(cfg, sft_file, out))
    return summary


def report(result: BoNResult) -> None:
    """Print what a person wants to see after best-of-N / rejection sampling."""
    print(f"best-of-{result.n} on {result.prompts} prompts: sampling {result.sample_seconds:.0f}s "
          f"({result.tokens_per_s:.0f} tokens/s), scoring {result.score_seconds:.1f}s")
    if result.mean_best is not None:
        print(f"mean best score {result.mean_best:.4f} vs mean single-sample score "
              f"{result.mean_single:.4f} (gain {result.mean_best - result.mean_single:+.4f})")
    if result.no_candidate:
        print(f"{result.no_candidate} prompts skipped: no sample ended with EOS")
    if result.below_threshold:
        print(f"{result.below_threshold} best responses below the threshold were not kept")
    for prompt, best, score, mean in result.examples:
        print(f"\n  prompt: {prompt_text(prompt)}\n  best ({score:.3f}, mean {mean:.3f}): {best.strip()}")
    print(f"\nbest responses: {result.best_file}")
    if result.sft_data is not None:
        print(f"SFT data: {result.sft_data} ({result.kept} examples)")
    if result.sft_result is not None:
        from rlhfkit.stages import sft

        sft.report(result.sft_result)
