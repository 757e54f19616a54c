"""Local AI judge throughput: both orders sharing the prompt's computation vs two independent forwards.

The judge asks every comparison twice (A first, then B first) and averages. Everything before the
first response (instruction, principle, the conversation) is the same in both orders, so
``share_prefix`` computes it once per pair (one row ``[prefix | order AB | order BA]``); the naive way
runs each order as its own sequence. Both run in this process on the same pairs, interleaved per
repeat so load drifts hit both alike; the verdicts must agree (max |diff| printed).

    python benchmarks/judge_throughput.py                 # default model, 64 HH dev pairs
    python benchmarks/judge_throughput.py --quick         # tiny model, 8 pairs: a smoke run

What sharing can save: each order's text after the prefix holds both responses, so a pair costs
P + 2S tokens instead of 2P + 2S (on HH dev about 30% fewer tokens; "tokens/pass" is printed). The
saving is in the linear layers of a real model; on the tiny model (hidden size 64) fixed per-call
costs and the ``[B, 1, L, L]`` shared-prefix mask dominate, so ``--quick`` shows no speed-up.

Last line: ``RESULT name=judge pairs_per_s=<shared> naive_pairs_per_s=<naive> ratio=<x> consistency=<share>``
(consistency = share of ok verdicts whose two orders prefer the same response).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_file, load_avg, result_line  # noqa: E402


def load_pairs(n: int) -> tuple[list, str]:
    from rlhfkit.data.sources import load

    path = hh_file("dev", required=False)
    if path is None:
        print("shared HH data not found: using the demo pairs")
        return list(load("demo:pairs", "pairs", limit=n).records), "demo:pairs"
    return list(load(str(path), "pairs", limit=n).records), path.name


def timed(judge, pairs: list, share: bool) -> tuple[float, list]:
    judge.backend.share_prefix = share
    start = time.perf_counter()
    verdicts = judge.compare_many(pairs)
    return time.perf_counter() - start, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="judge model (default, tiny, a folder)")
    parser.add_argument("--pairs", type=int, default=64, help="HH dev pairs judged per run")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each way, interleaved")
    parser.add_argument("--quick", action="store_true", help="tiny model, 8 pairs, 1 repeat (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.pairs, args.repeats = "tiny", 8, 1

    from rlhfkit.judge import Judge
    from rlhfkit.judge.local import LocalBackend

    pairs, source = load_pairs(args.pairs)
    judge = Judge(LocalBackend.load(args.model, batch_size=args.batch_size))
    timed(judge, pairs[:args.batch_size], True)  # warm-up
    print(f"{len(pairs)} pairs from {source}, model {args.model}, batch {args.batch_size} ({load_avg()})")
    total = {True: 0.0, False: 0.0}
    tokens = {}
    for _ in range(args.repeats):
        for share in (True, False):
            judge.backend.tokens = 0
            seconds, verdicts = timed(judge, pairs, share)
            total[share] += seconds
            tokens[share] = judge.backend.tokens
            if share:
                shared_verdicts = verdicts
            else:
                naive_verdicts = verdicts
    diff = max(abs(a.prob - b.prob) for a, b in zip(shared_verdicts, naive_verdicts))
    summary = judge.summary(shared_verdicts)
    n = len(pairs) * args.repeats
    fast, slow = n / total[True], n / total[False]
    print(f"\n{'way':<34} {'tokens/pass':>12} {'pairs/s':>9}")
    print(f"{'shared prefix (one row per pair)':<34} {tokens[True]:>12} {fast:>9.2f}")
    print(f"{'two independent forwards':<34} {tokens[False]:>12} {slow:>9.2f}")
    print(f"speed-up {fast / slow:.2f}x; max |P(A) shared - naive| = {diff:.2e}")
    for line in summary.lines():
        print(line)
    print(f"({load_avg()})")
    consistency = 1.0 - summary.inconsistent_share if summary.inconsistent_share is not None else float("nan")
    print(result_line("judge", pairs_per_s=fast, naive_pairs_per_s=slow, ratio=fast / slow,
                      consistency=consistency))


if __name__ == "__main__":
    main()
