"""Reward-model training throughput: rlhfkit's ``rm train`` vs TRL's RewardTrainer, same pairs, same run.

Both train SmolLM2-135M-Instruct (the embedded default) as a 1-output sequence classifier in fp32
without activation checkpointing, micro-batch 8 pairs, max length 512, the same learning rate
(linear decay to zero, no warm-up), plain Bradley-Terry loss, on the same HH-RLHF harmless pairs
from ``rlhfkit.paths.shared_data_dir()``. TRL gets rlhfkit's exact token ids (chat-templated prompt
+ response + EOS, pre-tokenized ``chosen_ids``/``rejected_ids``), so both see the same tokens; only
pairs whose two sequences fit in max_length untruncated are used.

What differs is how the work is done, and that is what is measured:

* TRL (its usual settings apart from fp32/no checkpointing): one padded row per sequence (chosen
  and rejected stacked), random order, so rows are padded to the batch's longest sequence; the
  full backbone runs for every sequence, prompt included twice.
* rlhfkit: each pair is one row ``[prompt | chosen | rejected]`` with a tree attention mask (the
  prompt is computed once, forward and backward), rows bucketed by length (little padding).

Headline numbers are full fine-tuning for both. ``--freeze-layers N`` adds a third run, rlhfkit
with the embeddings and lowest N layers frozen (no backward through them; a one-epoch run like
this one gains nothing from the frozen-layer cache, so it is not used here), reported separately
and never as the headline ratio.

Throughput is pairs per second of training steps after the first (warm-up), from each trainer's
own step timing. Dev accuracy (r_chosen > r_rejected) of both trained models is measured by the
same scoring code on the same dev pairs. The machine may be shared: the load average is printed
around each run; ``--threads`` sets torch's thread count for all runs.

    pip install trl==1.16.0            # benchmark only; never a dependency of rlhfkit
    python benchmarks/rm_vs_trl.py --quick
    python benchmarks/rm_vs_trl.py --steps 50 --freeze-layers -4 --frozen-lr 2e-5   # ~50 min

The last line is machine-readable:
``RESULT name=rm_vs_trl ours_pairs_per_s=<x> trl_pairs_per_s=<x> ratio=<x> ours_dev_acc=<x> trl_dev_acc=<x>``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_records, load_avg, trainer_step_timer  # noqa: E402


def select_pairs(tokenizer, split: str, n: int, max_length: int) -> list:
    """The first ``n`` HH pairs of ``split`` whose prompt+chosen and prompt+rejected both fit."""
    from rlhfkit.data.tokenize import encode_prompt, encode_response

    out = []
    for record in hh_records("pairs", split):
        p = len(encode_prompt(tokenizer, record.prompt))
        if p + max(len(encode_response(tokenizer, record.chosen)),
                   len(encode_response(tokenizer, record.rejected))) <= max_length:
            out.append(record)
        if len(out) == n:
            break
    return out


def write_pairs(records: list, path: Path) -> None:
    from rlhfkit.data.records import record_to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record_to_json(r)) + "\n" for r in records))


def run_ours(train_file: Path, args, out: Path, freeze_layers: int, lr: float) -> dict:
    """The rlhfkit stage itself (run(cfg)), timing from its metrics (one row per optimizer step)."""
    from rlhfkit.config import load_config
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.monitor.metrics import read_metrics
    from rlhfkit.stages.reward import run
    from rlhfkit.stages.reward_config import RewardConfig

    cfg = load_config(RewardConfig, None, [
        "model=default", f"data.train={train_file}", "data.dev_fraction=0", f"max_length={args.max_length}",
        f"train.output_dir={out}", f"train.max_steps={args.steps}", f"train.micro_batch_size={args.batch}",
        "train.grad_accum=1", "train.eval_every=0", "train.early_stopping_patience=0", "train.resume=never",
        "train.progress=false", f"train.seed={args.seed}", f"optim.lr={lr}", "optim.warmup_ratio=0",
        "optim.weight_decay=0", "optim.max_grad_norm=1.0", "normalize.reference=none",
        f"freeze_layers={freeze_layers}", "cache_frozen=false"])
    print(f"[ours freeze_layers={freeze_layers}] start ({load_avg()})", flush=True)
    result = run(cfg)
    print(f"[ours freeze_layers={freeze_layers}] end ({load_avg()})", flush=True)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "examples_per_s" in r]
    seconds = [r["examples_per_s"] and args.batch / r["examples_per_s"] for r in rows]
    return {"step_seconds": seconds, "loss": [r["loss"] for r in rows],
            "model": load_reward_model(result.model_dir)}


def run_trl(records: list, args, out: Path) -> dict:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from rlhfkit.data.tokenize import encode_prompt, encode_response
    from rlhfkit.models.loading import load_tokenizer, resolve_model_path
    from rlhfkit.models.reward import RewardInfo, RewardModel

    path = resolve_model_path("default")
    tokenizer = load_tokenizer(path)
    rows = []
    for r in records:
        prompt = encode_prompt(tokenizer, r.prompt)
        rows.append({"chosen_ids": prompt + encode_response(tokenizer, r.chosen),
                     "rejected_ids": prompt + encode_response(tokenizer, r.rejected)})
    config = RewardConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0,
        weight_decay=0.0, max_length=args.max_length, bf16=False, fp16=False, gradient_checkpointing=False,
        logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True,
        seed=args.seed, disable_tqdm=True, max_grad_norm=1.0)

    timer = trainer_step_timer()
    trainer = RewardTrainer(model=path, args=config, train_dataset=Dataset.from_list(rows),
                            processing_class=tokenizer, callbacks=[timer])
    print(f"[trl] start ({load_avg()})", flush=True)
    trainer.train()
    print(f"[trl] end ({load_avg()})", flush=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model = trainer.model.eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    return {"step_seconds": timer.seconds, "loss": losses,
            "model": RewardModel(model, tokenizer, RewardInfo(max_length=args.max_length))}


def dev_accuracy(rm, records: list, batch: int) -> float:
    """Accuracy r_chosen > r_rejected, the same scoring code for every model (rlhfkit's evaluation:
    each dev pair one row, prompt shared, no grad)."""
    from rlhfkit.models.reward import encode_group
    from rlhfkit.stages.reward_eval import EvalSettings, compute_group_rewards
    from rlhfkit.stages.reward_groups import Group

    groups = [Group("pair", *encode_group(rm.tokenizer, r.prompt, [r.chosen, r.rejected], rm.max_length)[:2])
              for r in records]
    rewards = compute_group_rewards(rm.model, groups, EvalSettings(eval_batch_size=batch),
                                    rm.tokenizer.pad_token_id, "cpu")
    return sum(r[0] > r[1] for r in rewards) / len(rewards)


def rate(step_seconds: list, batch: int) -> float:
    timed = step_seconds[1:] if len(step_seconds) > 1 else step_seconds  # step 1 is warm-up
    return batch / statistics.mean(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 steps each, 64 dev pairs (a few minutes)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per trainer")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (micro-batch, no accumulation)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--dev-pairs", type=int, default=300, help="dev pairs scored after training")
    parser.add_argument("--freeze-layers", type=int, default=0,
                        help="also run rlhfkit with the lowest N layers frozen (N < 0: all but the top "
                             "|N|), reported separately")
    parser.add_argument("--frozen-lr", type=float, default=0.0,
                        help="learning rate of the frozen-layers run (0 = --lr; configs/rm/hh_default.yaml uses 2e-5)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-trl", action="store_true", help="run rlhfkit only")
    parser.add_argument("--out", default="runs/bench/rm_vs_trl", help="run folder")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.dev_pairs = 4, 64
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rlhfkit.models.loading import load_tokenizer

    out = Path(args.out)
    tokenizer = load_tokenizer("default")
    train = select_pairs(tokenizer, "train", args.steps * args.batch, args.max_length)
    dev = select_pairs(tokenizer, "dev", args.dev_pairs, args.max_length)
    write_pairs(train, out / "train_pairs.jsonl")
    print(f"{len(train)} train pairs, {len(dev)} dev pairs (all fit in {args.max_length} tokens); "
          f"batch {args.batch}, {args.steps} steps, lr {args.lr}, fp32, torch threads {torch.get_num_threads()}")

    runs = {"ours": run_ours(out / "train_pairs.jsonl", args, out / "ours", 0, args.lr)}
    if args.freeze_layers:
        runs["ours_frozen"] = run_ours(out / "train_pairs.jsonl", args, out / "ours_frozen", args.freeze_layers,
                                       args.frozen_lr or args.lr)
    if not args.skip_trl:
        runs["trl"] = run_trl(train, args, out / "trl")
    summary = {}
    for name, r in runs.items():
        summary[name] = {"pairs_per_s": rate(r["step_seconds"], args.batch),
                         "dev_acc": dev_accuracy(r["model"], dev, 16), "loss": r["loss"],
                         "step_seconds": r["step_seconds"]}
    frozen = (f"top {-args.freeze_layers} layers trained" if args.freeze_layers < 0
              else f"lowest {args.freeze_layers} layers frozen")
    labels = {"ours": "rlhfkit, full fine-tuning", "trl": "TRL RewardTrainer, full fine-tuning",
              "ours_frozen": f"rlhfkit, {frozen}, lr {args.frozen_lr or args.lr:g}"}
    print(f"\n{'run':<42} {'pairs/s':>8} {'dev acc':>8} {'first loss':>10} {'last loss':>10}")
    for name, s in summary.items():
        print(f"{labels[name]:<42} {s['pairs_per_s']:8.3f} {s['dev_acc']:8.3f} {s['loss'][0]:10.4f} "
              f"{s['loss'][-1]:10.4f}")
    ours = summary["ours"]
    trl = summary.get("trl")
    ratio = ours["pairs_per_s"] / trl["pairs_per_s"] if trl else float("nan")
    if trl:
        print(f"ratio (full fine-tuning, same settings): {ratio:.2f}x")
    if "ours_frozen" in summary and trl:
        print(f"ratio with {args.freeze_layers} frozen layers (not the same work): "
              f"{summary['ours_frozen']['pairs_per_s'] / trl['pairs_per_s']:.2f}x")
    (out / "results.json").write_text(json.dumps({"args": vars(args), **summary}, indent=2))
    line = (f"RESULT name=rm_vs_trl ours_pairs_per_s={ours['pairs_per_s']:.4f} "
            f"trl_pairs_per_s={trl['pairs_per_s'] if trl else float('nan'):.4f} ratio={ratio:.2f} "
            f"ours_dev_acc={ours['dev_acc']:.4f} trl_dev_acc={trl['dev_acc'] if trl else float('nan'):.4f}")
    if "ours_frozen" in summary:
        f = summary["ours_frozen"]
        line += f" ours_frozen_pairs_per_s={f['pairs_per_s']:.4f} ours_frozen_dev_acc={f['dev_acc']:.4f}"
    print(line)


if __name__ == "__main__":
    main()
