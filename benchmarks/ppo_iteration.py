"""Seconds per PPO iteration of rlhfkit's ``ppo`` stage, with the time split, beside TRL's figure;
and rollout tokens/s of the fast engine vs transformers ``generate``, measured in the same run.

Shape (BASELINES.md): SmolLM2-135M-Instruct (the embedded default) in fp32, 16 HH-RLHF harmless
prompts of at most 128 tokens (chat template included) per rollout batch, up to 64 new tokens,
2 minibatches of 8, 4 PPO epochs (TRL's default ``num_ppo_epochs``; ``--epochs``), a separate value model
initialised from the reward model, a frozen reference and a frozen reward model (four models).

Reward model: ``--reward FOLDER`` (e.g. one trained with ``rlhfkit rm train``); by default a
reward model is built from the default model with a freshly drawn head (same architecture, so the
same compute as a trained one; its scores are meaningless, which does not matter for timing).

The peer: TRL removed PPO after 0.12 (the last ``PPOTrainer``); it cannot be installed beside
transformers 5 / TRL 1.16. Its figure here is the one measured on this kind of machine and recorded
in BASELINES.md (58 s per iteration, same shape), printed and labelled as such.

The iteration time is the median over iterations after the first (warm-up). rlhfkit stops a
response at EOS, so shorter answers mean less work: the mean response length is printed too.

Rollout: after the PPO iterations, the policy model samples batch 32 x 64 new tokens from HH
prompts with the fast engine and with ``generate`` (same prompts, same seed; the functions of
benchmarks/rollout_engine.py), beside the arithmetic bound at the fp32 matmul peak measured then.

    python benchmarks/ppo_iteration.py --quick          # 1 warm-up + 1 timed iteration, 1 rollout repeat
    python benchmarks/ppo_iteration.py --iterations 4 --value head

The last two lines are machine-readable:
``RESULT name=rollout ours_tokens_per_s=<x> generate_tokens_per_s=<x> ratio=<x>``
``RESULT name=ppo_iteration seconds=<x> rollout_s=<x> scoring_s=<x> update_s=<x>`` (medians).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_file, load_avg, result_line  # noqa: E402
from benchmarks.rollout_engine import compare_engines, report_lines, rollout_result  # noqa: E402

TRL_PPO_SECONDS = 58.0  # BASELINES.md: TRL 1.12 experimental PPOTrainer, same shape, this machine type
TRL_SPLIT = "generation 20%, ref/value/reward forwards 19%, update 60%; peak memory 11.6 GiB"


def build_reward_model(folder: Path, model_name: str) -> Path:
    from rlhfkit.models.reward import RewardModel, init_reward_model

    if not (folder / "config.json").exists():
        model, tok = init_reward_model(model_name, seed=0)
        RewardModel(model, tok).save(folder)
    return folder


def run_ours(args, out: Path, reward: Path, prompts: str) -> list[dict]:
    from rlhfkit.config import load_config
    from rlhfkit.monitor.metrics import read_metrics
    from rlhfkit.stages import ppo

    overrides = [
        f"model={args.model}", "dtype=float32", "device=cpu", f"reward={reward}", f"value_model={args.value}",
        f"data.prompts={prompts}", "data.max_prompts=400", "data.max_prompt_length=128",
        "data.eval_prompts=0", "samples.prompts=0", f"rollout.engine={args.engine}",
        "rollout.max_new_tokens=64", "rollout.temperature=0.7", "ppo.prompts_per_batch=16",
        f"ppo.epochs={args.epochs}", f"train.micro_batch_size={args.micro}", f"train.grad_accum={8 // args.micro}",
        f"train.max_steps={args.iterations}", f"train.output_dir={out}", "train.resume=never",
        "train.save_every=0", "train.progress=false", "optim.lr=1e-6", "hacking.enabled=false",
    ]
    if args.lora:
        overrides += ["lora.enabled=true", "optim.lr=1e-4"]
    cfg = load_config(ppo.PPOConfig, None, overrides)
    print(f"[ours] start ({load_avg()})", flush=True)
    ppo.run(cfg)
    print(f"[ours] end ({load_avg()})", flush=True)
    return [r for r in read_metrics(out / "metrics.jsonl") if "time_iteration" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 1 timed iteration")
    parser.add_argument("--iterations", type=int, default=4, help="PPO iterations (the first is warm-up)")
    parser.add_argument("--epochs", type=int, default=4,
                        help="PPO epochs per iteration (4 = TRL's default; BASELINES' ~7 TFLOP per iteration "
                             "is one pass of policy and value over the batch)")
    parser.add_argument("--value", choices=["reward", "policy", "head"], default="reward",
                        help="value model: separate from the RM (as TRL), from the policy, or a head")
    parser.add_argument("--lora", action="store_true", help="LoRA policy (reference = adapter off)")
    parser.add_argument("--engine", choices=["fast", "hf"], default="fast")
    parser.add_argument("--micro", type=int, default=8, choices=[1, 2, 4, 8], help="micro-batch size")
    parser.add_argument("--model", default="default", help="policy (default; tiny for a smoke test)")
    parser.add_argument("--reward", default="", help="reward-model folder (default: built, random head)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    parser.add_argument("--out", default="runs/bench/ppo_iteration", help="run folder")
    parser.add_argument("--rollout-batch", type=int, default=32, help="rollout comparison batch")
    parser.add_argument("--rollout-repeats", type=int, default=3,
                        help="timed repeats per engine in the rollout comparison (1 with --quick)")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.iterations = 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    hh = hh_file(required=False)
    prompts = str(hh) if hh else "demo:prompts"
    if not hh:
        print("note: the shared HH data is absent; using the demo prompts (shorter than HH prompts)")
    reward = Path(args.reward) if args.reward else build_reward_model(out / f"reward_model_{args.model}", args.model)
    t0 = time.time()
    rows = run_ours(args, out / "run", reward, prompts)
    timed = rows[1:] or rows
    med = {k: statistics.median(r[k] for r in timed)
           for k in ("time_iteration", "time_rollout", "time_scoring", "time_update", "response_length")}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    it = med["time_iteration"]
    print(f"\nPPO iteration, {'SmolLM2-135M' if args.model == 'default' else args.model} fp32 on CPU ({torch.get_num_threads()} threads), 16 prompts "
          f"<= 128 tokens, <= 64 new tokens, 2 minibatches of 8, {args.epochs} epoch(s), value model: {args.value}"
          f"{', LoRA' if args.lora else ''}; engine {args.engine}; {len(timed)} timed iteration(s)")
    print(f"  rlhfkit: {it:7.1f} s/iteration  (rollout {med['time_rollout']:.1f} s = "
          f"{med['time_rollout'] / it:.0%}, reward/ref/value forwards {med['time_scoring']:.1f} s = "
          f"{med['time_scoring'] / it:.0%}, update {med['time_update']:.1f} s = {med['time_update'] / it:.0%}); "
          f"mean response {med['response_length']:.1f} tokens; peak RSS {peak:.1f} GiB")
    print(f"  TRL 1.12 PPOTrainer: {TRL_PPO_SECONDS:7.1f} s/iteration  (from the shared BASELINES.md, "
          f"not rerun here: {TRL_SPLIT})")
    print(f"  speed-up {TRL_PPO_SECONDS / it:.2f}x ({load_avg()})")

    from rlhfkit.models import load_causal_lm

    model, tok = load_causal_lm(args.model)
    roll = compare_engines(model, tok, batch=args.rollout_batch, new_tokens=64,
                           repeats=1 if args.quick else args.rollout_repeats)
    print(f"\nRollout, fast engine vs transformers generate in this run ({args.model}, fp32, "
          f"{roll['batch']} x 64 new tokens, no EOS stop, same seed):")
    print("\n".join("  " + line for line in report_lines(roll)))
    print(f"whole benchmark {time.time() - t0:.0f} s ({load_avg()})")
    print(rollout_result(roll))
    print(result_line("ppo_iteration", seconds=round(it, 2), rollout_s=round(med["time_rollout"], 2),
                      scoring_s=round(med["time_scoring"], 2), update_s=round(med["time_update"], 2)))


if __name__ == "__main__":
    main()
