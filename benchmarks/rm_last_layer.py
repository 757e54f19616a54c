"""Reward-model training step: the last decoder layer at the read positions only vs the full forward.

A reward is read at one position per response, so the last layer's queries, attention output and
MLP are needed only there (``rlhfkit.models.forward.final_hidden_at``). This script times one
training step (forward + backward, Bradley-Terry loss, no optimizer) both ways on the same HH pair
batches (8 pairs per shared-prefix row batch, default model, fp32), interleaved so load drifts hit
both alike, in two settings:

* full fine-tuning (30 layers trained: the saving is at most one layer in 30);
* the HH recipe (configs/rm/hh_default.yaml): top 4 layers trained on the cached output of the
  26 frozen ones, where the last layer is a quarter of the work.

    python benchmarks/rm_last_layer.py            # ~3 minutes

Last line: ``RESULT name=rm_last_layer full_ft_speedup=<x> top4_cached_speedup=<x>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import load_avg, result_line  # noqa: E402
from benchmarks.rm_vs_trl import select_pairs  # noqa: E402


def step_seconds(model, batch) -> float:
    import torch.nn.functional as F

    from rlhfkit.models.reward import group_rewards

    start = time.perf_counter()
    rewards = group_rewards(model, batch)
    (-F.logsigmoid(rewards[:, 0] - rewards[:, 1]).mean()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def compare(model, batches: list, repeats: int) -> dict:
    """Total seconds over ``repeats`` passes of ``batches``, partial and full last layer interleaved."""
    from rlhfkit.models import forward

    plain = forward._PLAIN_LAYERS
    step_seconds(model, batches[0])  # warm-up
    total = {"full": 0.0, "partial": 0.0}
    try:
        for _ in range(repeats):
            for batch in batches:
                for mode in total:
                    forward._PLAIN_LAYERS = plain if mode == "partial" else ()  # () = every decoder falls back
                    total[mode] += step_seconds(model, batch)
    finally:
        forward._PLAIN_LAYERS = plain
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32, help="HH train pairs (batches of 8)")
    parser.add_argument("--repeats", type=int, default=3, help="passes in the top-4 setting (1 for full)")
    args = parser.parse_args()

    from rlhfkit.data.collate import bucketed_batches
    from rlhfkit.models.loading import load_tokenizer
    from rlhfkit.data.collate import collate_shared_prefix
    from rlhfkit.models.reward import encode_group, init_reward_model, lower_hidden
    from rlhfkit.stages.reward import freeze_lower_layers

    tok = load_tokenizer("default")
    groups = [encode_group(tok, r.prompt, [r.chosen, r.rejected], 512)[:2]
              for r in select_pairs(tok, "train", args.pairs, 512)]
    lengths = [len(p) + sum(map(len, rs)) for p, rs in groups]
    batches = [collate_shared_prefix([groups[i] for i in b], tok.pad_token_id)
               for b in bucketed_batches(lengths, 8, 0, 0)]
    model, _ = init_reward_model("default")
    model.train()
    print(f"{len(groups)} HH pairs in {len(batches)} batches of 8, {sum(lengths)} tokens ({load_avg()})")

    full = compare(model, batches, 1)
    freeze_lower_layers(model, 26)
    cached = [{**b, "hidden_in": lower_hidden(model, b, 26), "start_layer": 26} for b in batches]
    top4 = compare(model, cached, args.repeats)
    print(f"\n{'setting':<40} {'full last layer':>16} {'read positions':>15} {'speed-up':>9}")
    for name, t in (("full fine-tuning (30 layers)", full), ("top 4 layers on cached 26 frozen", top4)):
        print(f"{name:<40} {t['full']:15.2f}s {t['partial']:14.2f}s {t['full'] / t['partial']:8.2f}x")
    print(f"({load_avg()})")
    print(result_line("rm_last_layer", full_ft_speedup=full["full"] / full["partial"],
                      top4_cached_speedup=top4["full"] / top4["partial"]))


if __name__ == "__main__":
    main()
