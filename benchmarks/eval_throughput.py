"""Judging throughput of ``rlhfkit eval``: N responses per prompt scored by a reward model with the
prompt computed once (``RewardSource.score_groups``: one shared-prefix row per prompt, the path
``rlhfkit eval``, ``eval overopt`` and best-of-N take) vs naive (every (prompt, response) pair as
its own sequence, ``RewardModel.score`` in chunks), in the same run on the same texts.

Texts: HH-RLHF harmless pairs from the shared data (their prompts, and N responses per prompt drawn
from all chosen/rejected answers); the package's demo pairs when the data is absent. The reward
model is ``--reward`` (a folder) or a fresh reward head on ``--model`` (throughput does not depend
on what the head learned). Both paths are timed interleaved (warm-up first, then ``--repeats``
rounds, the median round of each counts) and their scores are checked to agree.

    python benchmarks/eval_throughput.py --quick          # tiny model, seconds
    python benchmarks/eval_throughput.py                  # default model, 32 prompts x 16

Last line: ``RESULT name=eval responses_per_s=<x> naive_responses_per_s=<x> ratio=<x>``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_file, hh_records, load_avg, median, result_line  # noqa: E402


def texts(n_prompts: int, n: int, seed: int = 0) -> tuple[list, list[list[str]], str]:
    """(prompts, ``[prompt][n]`` responses, where they came from)."""
    from rlhfkit.data.sources import load

    if hh_file(required=False):
        pairs, source = hh_records("pairs", limit=max(200, n_prompts)), "HH-RLHF harmless train"
    else:
        pairs, source = list(load("demo:pairs", "pairs").records), "demo:pairs (shared data absent)"
    pool = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    rng = random.Random(seed)
    chosen = pairs[:n_prompts]
    return [p.prompt for p in chosen], [rng.sample(pool, n) for _ in chosen], source


def reward_model(args):
    from rlhfkit.models.reward import RewardModel, init_reward_model, load_reward_model

    if args.reward:
        return load_reward_model(args.reward)
    model, tok = init_reward_model(args.model)
    model.eval()
    return RewardModel(model, tok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="backbone of the fresh reward head")
    parser.add_argument("--reward", default="", help="a reward-model folder instead of a fresh head")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=16, help="responses per prompt")
    parser.add_argument("--batch-size", type=int, default=32, help="responses per forward pass (both paths)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 prompts x 4 (a smoke test: "
                                                             "tiny-model timings are mostly overhead)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.prompts, args.n = "tiny", 4, 4

    import torch

    from rlhfkit.rewards import RewardSource

    prompts, groups, source = texts(args.prompts, args.n)
    rm = reward_model(args)
    once = RewardSource(fn=rm.score, name="prompt once", model=rm)
    naive = RewardSource(fn=lambda p, r: rm.score(p, r, batch_size=args.batch_size), name="naive")
    total = sum(len(g) for g in groups)
    print(f"{len(prompts)} prompts x {args.n} responses ({source}), reward model on {args.model or args.reward}, "
          f"{torch.get_num_threads()} threads; {load_avg()}")
    scores = {}
    for path in (once, naive):  # warm-up, and the scores to compare
        scores[path.name] = torch.tensor(path.score_groups(prompts, groups, args.batch_size))
    diff = float((scores["prompt once"] - scores["naive"]).abs().max())
    seconds: dict[str, list[float]] = {"prompt once": [], "naive": []}
    for _ in range(args.repeats):  # interleaved, so load drifts on the shared machine hit both alike
        for path in (once, naive):
            start = time.perf_counter()
            path.score_groups(prompts, groups, args.batch_size)
            seconds[path.name].append(time.perf_counter() - start)
    rate = {k: total / median(v) for k, v in seconds.items()}  # the median repeat of each
    print(f"prompt once: {rate['prompt once']:.1f} responses/s; naive: {rate['naive']:.1f} responses/s; "
          f"max |score difference| {diff:.2e}; {load_avg()}")
    print(result_line("eval", responses_per_s=rate["prompt once"], naive_responses_per_s=rate["naive"],
                      ratio=rate["prompt once"] / rate["naive"]))


if __name__ == "__main__":
    main()
