"""``rlhfkit eval [key=value ...]`` (compare policies, :mod:`rlhfkit.eval.compare`),
``rlhfkit eval overopt [key=value ...]`` (best-of-N over-optimisation, :mod:`rlhfkit.eval.bon_overopt`),
``rlhfkit eval frontier [key=value ...]`` (reward vs KL over an RL run's checkpoints, :mod:`rlhfkit.eval.frontier`),
``rlhfkit eval people [key=value ...]`` (win rates from the studio's verdicts, :mod:`rlhfkit.eval.people`)
and ``rlhfkit report RUN_DIR`` (one self-contained report.html, :mod:`rlhfkit.monitor.report`).

Imports stay light (no torch) so ``rlhfkit --help`` stays fast."""

from __future__ import annotations

import argparse

COMPARE = ("rlhfkit.eval.compare", "EvalConfig")
OVEROPT = ("rlhfkit.eval.bon_overopt", "OverOptConfig")
FRONTIER = ("rlhfkit.eval.frontier", "FrontierConfig")
PEOPLE = ("rlhfkit.eval.people", "PeopleConfig")
MODES = {"overopt": OVEROPT, "frontier": FRONTIER, "people": PEOPLE}


def register(sub: argparse._SubParsersAction) -> None:
    from rlhfkit.cli import _config_help, add_stage

    parser = add_stage(
        sub, "eval", *COMPARE, "compare policies against a baseline (win rates, diversity, mode collapse)",
        "Evaluate what RLHF did.\n"
        "  rlhfkit eval policies=[runs/ppo] baseline=runs/sft judge=runs/gold_rm/final\n"
        "    K samples per prompt from each policy, judged by a reward model or ensemble the policy was not\n"
        "    optimised against: win rate vs the baseline with ties and a bootstrap CI, the length-controlled\n"
        "    win rate, mean scores, diversity (distinct-n, self-BLEU, hidden-state cosine), mode collapse.\n"
        "  rlhfkit eval overopt policy=... proxy=... gold=...\n"
        "    best-of-N over-optimisation (Gao et al. 2022): gold and proxy against sqrt(KL) for N = 1..64,\n"
        "    the fitted curve and where gold peaks.\n"
        "  rlhfkit eval frontier run=runs/ppo gold=...\n"
        "    reward vs KL across the run's checkpoints: the RL over-optimisation curve, where gold peaks.\n"
        "  rlhfkit eval people pairs=... labels=...\n"
        "    win rates from people's studio verdicts on the pairs eval wrote with people_pairs=N.")
    for mode, (module, cls_name) in MODES.items():
        parser.epilog += f"\n\nrlhfkit eval {mode}: " + _config_help(module, cls_name)
    parser.set_defaults(func=dispatch)


def register_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="write one self-contained report.html for a run folder",
                         description="rlhfkit report RUN_DIR: config, training curves, evaluation tables, "
                                     "answers side by side and reward-hacking warnings of every run under "
                                     "RUN_DIR (a stage, pipeline, eval or overopt folder) in one HTML file "
                                     "with the plots embedded (no external assets).")
    rep.add_argument("run_dir", help="a run folder (or a folder of runs)")
    rep.add_argument("--out", help="where to write the report (default RUN_DIR/report.html)")
    rep.set_defaults(func=report_command)


def dispatch(args: argparse.Namespace) -> int:
    from rlhfkit.cli import run_stage

    mode = MODES.get(args.overrides[0]) if args.overrides else None
    if mode is not None:
        args.overrides = args.overrides[1:]
        return run_stage(*mode, args)
    return run_stage(*COMPARE, args)


def report_command(args: argparse.Namespace) -> int:
    from rlhfkit.monitor.report import build_report

    print(f"report: {build_report(args.run_dir, args.out)}")
    return 0
