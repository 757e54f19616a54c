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
from typing import Callable

# command name -> (module with Config + run + report, Config class name, one-line help, description)
STAGES = {
    "sft": ("rlhfkit.stages.sft", "SFTConfig", "supervised fine-tuning on demonstrations",
            "Supervised fine-tuning: cross-entropy on response tokens only, the model's chat "
            "template, LoRA optional; saves a Hugging Face folder and resumable checkpoints."),
    "pipeline": ("rlhfkit.stages.pipeline", "PipelineConfig", "run the RLHF stages in order from one config",
                 "The main job: runs the stages that exist in order (SFT -> reward model -> PPO, or "
                 "SFT -> DPO with method=dpo) and prints sample responses before and after."),
    "judge": ("rlhfkit.judge.stage", "JudgeConfig", "AI judge (RLAIF): label preference pairs with a model",
              "An AI judge compares two responses in both orders and averages: soft labels from a local "
              "causal LM's choice-token probabilities, or verdicts from an OpenAI-compatible endpoint; "
              "reports position inconsistency, unparseable/refused counts and accuracy vs the labels."),
    "rounds": ("rlhfkit.rounds.stage", "RoundsConfig", "iterated RLHF rounds: sample, select, label, RM, policy, eval",
               "Iterated RLHF: each round the current policy samples K responses per prompt, active selection "
               "picks the pairs to label (ensemble disagreement), an AI judge labels them, the reward model "
               "retrains on all labels so far, DPO or PPO continues the policy, and an independent judge "
               "compares it with the previous round and the SFT policy. Rerun to resume where it stopped."),
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


def _register_optional(sub: argparse._SubParsersAction, module: str) -> None:
    """Stage packages that own their sub-commands expose ``register(subparsers)``."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            return  # that part of the toolkit is not installed in this tree
        raise
    mod.register(sub)


EXTRA_COMMANDS = ("rlhfkit.models.cli", "rlhfkit.stages.reward_cli", "rlhfkit.stages.ppo_cli",
                  "rlhfkit.stages.alt_cli", "rlhfkit.feedback.cli", "rlhfkit.eval.cli", "rlhfkit.eval.plan_cli")


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
    for name, (module, cls_name, help_text, description) in STAGES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        add_stage(sub, name, module, cls_name, help_text, description)
    for module in EXTRA_COMMANDS:
        _register_optional(sub, module)
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
