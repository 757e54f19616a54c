"""``rlhfkit rm eval --model PATH --data FILE``: evaluate a reward model on preference pairs
(registered by the command table in :mod:`rlhfkit.cli`; ``rm train`` is a config-driven stage there)."""

from __future__ import annotations

import argparse

from rlhfkit.models.reward import REDUCTIONS


def register_eval(rm_sub: argparse._SubParsersAction) -> None:
    ev = rm_sub.add_parser("eval", help="evaluate a reward model on preference pairs",
                           description="Accuracy (r_chosen > r_rejected, ties apart), mean loss, reward "
                                       "margin statistics, calibration (ECE); per-pair scores to --out.")
    ev.add_argument("--model", required=True, help="reward model folder (rlhfkit or any HF 1-label classifier)")
    ev.add_argument("--data", required=True, help="pairs file (JSONL/JSONL.gz/Parquet/..., HH transcripts) "
                                                  "or demo:pairs")
    ev.add_argument("--out", help="write one JSON line of scores per pair here")
    ev.add_argument("--kind", choices=["pairs", "rankings"], default="pairs",
                    help="record kind of --data (rankings are expanded into all ordered pairs)")
    ev.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
    ev.add_argument("--ensemble-reduce", choices=REDUCTIONS, default="mean",
                    help="ensembles: how member rewards combine (the key ensemble_reduce elsewhere)")
    ev.add_argument("--reduce", choices=REDUCTIONS, default=None, dest="reduce_deprecated",
                    help=argparse.SUPPRESS)  # the old spelling, until the next release
    ev.add_argument("--c", type=float, default=1.0, help="ensembles: c in mean - c * std")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ev.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from rlhfkit.stages.reward_eval import evaluate_file, print_eval

    if args.batch_size < 1:
        from rlhfkit.config import ConfigError

        raise ConfigError("--batch-size must be >= 1")
    reduce = args.ensemble_reduce
    if args.reduce_deprecated is not None:
        from rlhfkit.run import warn

        warn("--reduce is deprecated and will be removed in the next release: use --ensemble-reduce")
        reduce = args.reduce_deprecated
    result = evaluate_file(args.model, args.data, out=args.out, kind=args.kind, batch_size=args.batch_size,
                           reduce=reduce, c=args.c, device=args.device)
    print_eval(result)
    return 0
