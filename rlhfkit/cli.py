"""``rlhfkit <command> [--config x.yaml] [key=value ...]``: one entry point for every stage.

Each stage command takes an optional YAML config plus dotted overrides; ``--show-config`` prints
the resolved config and exits; ``--help`` lists every key with its default and meaning. Errors in
configs or data end the command with one line naming the key, file, line or field, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Callable

# Every command, in one table. A Stage is config-driven: ``rlhfkit NAME [--config x.yaml]
# [key=value ...]``, its keys listed by ``--help`` from the Config class; a Group holds sub-commands;
# Custom commands have their own arguments, defined by ``register(subparsers)`` in their module.
# Only names here: nothing heavy is imported to build the parser (``rlhfkit --help`` stays fast).


@dataclass(frozen=True)
class Stage:
    module: str  # has the Config class, ``run(config)`` and optionally ``report(result)``
    config: str
    help: str
    description: str


@dataclass(frozen=True)
class Custom:
    module: str  # ``register(subparsers)`` adds the command (and sets ``func``)
    register: str = "register"


@dataclass(frozen=True)
class Group:
    help: str
    description: str
    commands: dict


COMMANDS: dict[str, Stage | Custom | Group] = {
    "sft": Stage(
        "rlhfkit.stages.sft", "SFTConfig", "supervised fine-tuning on demonstrations",
        "Supervised fine-tuning: cross-entropy on response tokens only, the model's chat "
        "template, LoRA optional; saves a Hugging Face folder and resumable checkpoints."),
    "rm": Group(
        "reward model: train and evaluate",
        "Reward modelling (SPEC section 4): rlhfkit rm train [--config x.yaml] "
        "[key=value ...]; rlhfkit rm eval --model PATH --data FILE.",
        {"train": Stage(
            "rlhfkit.stages.reward", "RewardConfig", "train a reward model",
            "Train a reward model (backbone of the SFT model + scalar head at the last token) on "
            "pairs, rankings, scores and language feedback; early stopping on dev accuracy; "
            "stores reward normalisation stats; ensembles with ensemble.members=k."),
         "eval": Custom("rlhfkit.stages.reward_cli", "register_eval")}),
    "ppo": Stage(
        "rlhfkit.stages.ppo", "PPOConfig", "RL fine-tuning with PPO (policy, reference, reward, value)",
        "PPO (SPEC section 5): sample responses from the policy, score them with the reward "
        "(reward-model folder, contains:WORD, regex:PATTERN, length[:N], python:module:function), "
        "shape per-token rewards with a KL penalty to the reference, GAE advantages, clipped "
        "policy and value updates. Logs every step to metrics.jsonl, watches for reward "
        "hacking, checkpoints and resumes exactly.\n"
        "Example: rlhfkit ppo model=runs/sft/final reward=runs/rm/final train.max_steps=50"),
    "grpo": Stage(
        "rlhfkit.stages.grpo", "GRPOConfig",
        "GRPO: G samples per prompt, group-normalised advantages, KL as a loss term",
        "GRPO (Shao et al. 2024): samples grpo.group_size responses per prompt, scores them with "
        "the reward (reward-model folder, contains:WORD, regex:PATTERN, length[:N], "
        "python:module:function), advantage = (r - group mean) / group std, clipped surrogate "
        "plus beta * KL(pi || pi_ref) in the loss (kl.coef=0 loads no reference). No value model.\n"
        "Example: rlhfkit grpo model=runs/sft/final reward=contains:thanks train.max_steps=20"),
    "rloo": Stage(
        "rlhfkit.stages.grpo", "RLOOConfig",
        "RLOO: G samples per prompt, leave-one-out baseline, KL as a reward penalty",
        "RLOO (Ahmadian et al. 2024): REINFORCE with the mean reward of the other G - 1 samples "
        "of the same prompt as the baseline; the KL to the reference is subtracted from the "
        "reward. Same rollout, logging, checkpoints and reward-hacking watch as ppo and grpo.\n"
        "Example: rlhfkit rloo model=runs/sft/final reward=runs/rm/final train.max_steps=20"),
    "dpo": Stage(
        "rlhfkit.stages.dpo", "DPOConfig",
        "direct preference optimisation (DPO, cDPO, IPO, SimPO, ORPO) on preference pairs",
        "DPO family: trains the policy on preference pairs through the implicit reward "
        "beta*log(pi/pi_ref); no reward model, no sampling. Pick the variant with loss=... "
        "Reference log-probs are computed once and cached in the run folder; LoRA optional "
        "(the reference is then the base with the adapter off)."),
    "bon": Stage(
        "rlhfkit.stages.best_of_n", "BoNConfig",
        "best-of-N sampling: N samples per prompt, keep the best under a reward",
        "Best-of-N at inference time: samples N responses per prompt, scores them with a reward "
        "model, an ensemble or a reward function, and writes the best one per prompt with its "
        "score (JSONL), plus mean best score vs mean single-sample score. finetune=true turns it "
        "into rejection-sampling fine-tuning."),
    "rejection-sampling": Stage(
        "rlhfkit.stages.best_of_n", "RejectionSamplingConfig",
        "rejection-sampling fine-tuning (Llama 2 style): best-of-N samples become SFT data",
        "Rejection sampling: samples N responses per prompt, keeps the best under the reward "
        "(optionally only above a threshold), writes them as SFT records and fine-tunes the "
        "model on them with the SFT stage."),
    "judge": Stage(
        "rlhfkit.judge.stage", "JudgeConfig", "AI judge (RLAIF): label preference pairs with a model",
        "An AI judge compares two responses in both orders and averages: soft labels from a local "
        "causal LM's choice-token probabilities, or verdicts from an OpenAI-compatible endpoint; "
        "reports position inconsistency, unparseable/refused counts and accuracy vs the labels."),
    "pipeline": Stage(
        "rlhfkit.stages.pipeline", "PipelineConfig", "run the RLHF stages in order from one config",
        "The main job: runs the stages that exist in order (SFT -> reward model -> PPO, or "
        "SFT -> DPO with method=dpo) and prints sample responses before and after."),
    "rounds": Stage(
        "rlhfkit.rounds.stage", "RoundsConfig", "iterated RLHF rounds: sample, select, label, RM, policy, eval",
        "Iterated RLHF: each round the current policy samples K responses per prompt, active selection "
        "picks the pairs to label (ensemble disagreement), an AI judge labels them, the reward model "
        "retrains on all labels so far, DPO or PPO continues the policy, and an independent judge "
        "compares it with the previous round and the SFT policy. Rerun to resume where it stopped."),
    "constitution": Stage(
        "rlhfkit.stages.constitution", "ConstitutionConfig",
        "Constitutional AI: critique and revision, SFT, then AI preferences and PPO or DPO",
        "Constitutional AI (Bai et al. 2022): the model critiques and revises its answers under "
        "drawn principles and is fine-tuned on the revisions; an AI judge then labels pairs of its "
        "samples (soft labels) for a reward model and PPO, or DPO. Reports the share of revisions "
        "the judge prefers, per principle; a rerun skips finished phases."),
    "eval": Custom("rlhfkit.eval.cli"),  # rlhfkit eval [overopt|frontier|people] key=value ...
    "report": Custom("rlhfkit.eval.cli", "register_report"),
    "plan": Custom("rlhfkit.eval.plan_cli"),  # rlhfkit plan STAGE [key=value ...]
    "model": Custom("rlhfkit.models.cli"),
    "studio": Custom("rlhfkit.feedback.cli"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _config_help(module: str, cls_name: str) -> str:
    from rlhfkit.config import describe

    cls = getattr(importlib.import_module(module), cls_name)
    return "config keys (set in YAML or as key=value):\n" + "\n".join(describe(cls))


def add_stage(sub: argparse._SubParsersAction, name: str, module: str, cls_name: str,
              help_text: str, description: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=description,
                            epilog=_config_help(module, cls_name), formatter_class=_Formatter)
    add_config_args(parser)
    parser.set_defaults(func=lambda args: run_stage(module, cls_name, args))
    return parser


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file (keys as listed below)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides applied after the file, e.g. train.max_steps=10")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")


def load_stage_config(module: str, cls_name: str, args: argparse.Namespace):
    from rlhfkit.config import load_config

    cls = getattr(importlib.import_module(module), cls_name)
    return load_config(cls, args.config, args.overrides)


def run_stage(module: str, cls_name: str, args: argparse.Namespace) -> int:
    import yaml

    from rlhfkit.config import to_dict

    cfg = load_stage_config(module, cls_name, args)
    if args.show_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from rlhfkit.distributed.group import RankDone, session

    mod = importlib.import_module(module)
    with session(cfg):  # the torchrun process group, when the launch and train.distributed ask for one
        try:
            result = mod.run(cfg)
        except RankDone:  # a data-parallel rank other than 0 after training: rank 0 reports
            return 0
        report: Callable | None = getattr(mod, "report", None)
        if report is not None:
            report(result)
    return 0


def config_stage(name: str) -> Stage:
    """The config-driven stage a command runs (a group such as ``rm``: its ``train`` stage)."""
    entry = COMMANDS[name]
    if isinstance(entry, Group):
        entry = entry.commands["train"]
    if not isinstance(entry, Stage):
        raise KeyError(f"{name}: not a config-driven stage command")
    return entry


def add_command(sub: argparse._SubParsersAction, name: str, entry: Stage | Custom | Group) -> None:
    """Add one :data:`COMMANDS` entry (and a group's sub-commands) to ``sub``."""
    if isinstance(entry, Stage):
        add_stage(sub, name, entry.module, entry.config, entry.help, entry.description)
    elif isinstance(entry, Custom):
        getattr(importlib.import_module(entry.module), entry.register)(sub)
    else:
        group = sub.add_parser(name, help=entry.help, description=entry.description)
        inner = group.add_subparsers(dest=f"{name}_command", metavar="<" + "|".join(entry.commands) + ">")
        for sub_name, sub_entry in entry.commands.items():
            add_command(inner, sub_name, sub_entry)
        group.set_defaults(func=lambda args: _print_help(group))


def _print_help(parser: argparse.ArgumentParser) -> int:
    """A group command given without its sub-command."""
    parser.print_help()
    return 2


def build_parser() -> argparse.ArgumentParser:
    from rlhfkit import __version__

    parser = argparse.ArgumentParser(
        prog="rlhfkit", formatter_class=_Formatter,
        description="rlhfkit: the whole RLHF loop (human feedback -> SFT -> reward model -> PPO, "
                    "DPO and friends) on a laptop CPU first, on a cluster later.\n"
                    "Every stage: rlhfkit <stage> [--config file.yaml] [key=value ...]; "
                    "rlhfkit <stage> --help lists its keys.")
    parser.add_argument("--version", action="version", version=f"rlhfkit {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, entry in COMMANDS.items():
        add_command(sub, name, entry)
    return parser


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "transformers", "torch", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from rlhfkit.errors import RlhfkitError, error_exit

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.quiet)
    try:
        return int(args.func(args) or 0)
    except (RlhfkitError, FileNotFoundError) as err:
        # everything the user can fix (rlhfkit/errors.py), and a path the user gave that a library
        # (torch, datasets) found missing: one line, exit 2
        return error_exit(args.command, err)
    except KeyboardInterrupt as err:
        from rlhfkit.train.interrupt import TrainingInterrupted

        if isinstance(err, TrainingInterrupted):  # the training loop saved (or says why it could not)
            print(f"rlhfkit {args.command}: {err.message()}", file=sys.stderr)
            return err.exit_code
        print(f"rlhfkit {args.command}: interrupted outside a training step: nothing was saved at this "
              "point; rerunning the same command resumes from the newest checkpoint in the output "
              "folder, if there is one", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
