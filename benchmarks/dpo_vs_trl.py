"""DPO training throughput: rlhfkit's ``dpo`` stage vs TRL's DPOTrainer, same pairs, same run.

Both train SmolLM2-135M-Instruct (the embedded default) in fp32 without activation checkpointing,
micro-batch 8 pairs, max length 512, the same learning rate (linear decay, no warm-up), beta 0.1,
sigmoid loss, on the same HH-RLHF harmless pairs from ``rlhfkit.paths.shared_data_dir()``.

Same batches: the pairs are those that fit in max_length untruncated (so both trainers see the
same tokens), ordered as rlhfkit's length-bucketed batches, and TRL reads them with its sequential
sampler, so step k of both trains on the same 8 pairs and the loss curves can be compared step by
step. (This hands TRL rlhfkit's bucketing too: its own default is a random order with more
padding, so the ratio printed here is conservative.)

Reference model: rlhfkit precomputes the frozen reference's log-probs once before training (it is
a frozen model, so that is the same computation) and reports that time separately; its pairs/s is
training steps only, and ``ours_incl_ref_pairs_per_s`` charges the reference pass to the same
pairs. TRL (defaults: ``precompute_ref_log_probs=False``) runs the reference forward in every step.

Interleaved (default): the two trainers alternate step by step in one process (a TRL callback runs
one rlhfkit step after each TRL step, outside TRL's step timer), so a busy shared machine slows both
alike. rlhfkit's step there is the stage's own pieces (``dpo_step``, the loop's AdamW and schedule,
gradient clipping); ``--sequential`` instead runs the whole ``rlhfkit dpo`` stage, then TRL.
Throughput is the mean over steps after the first (warm-up). The load average is printed.

Work accounting (independent of machine noise): training FLOPs per pair from the actual token
counts, 6 * params * tokens for forward+backward and 2 * params * tokens for a forward (LM head and
decoder counted separately, since rlhfkit applies the head only at response positions), for the
rows each trainer builds: rlhfkit one packed row per pair, TRL two padded rows per pair plus a
reference forward over them.

    pip install trl==1.16.0            # benchmark only; never a dependency of rlhfkit
    python benchmarks/dpo_vs_trl.py --quick
    python benchmarks/dpo_vs_trl.py --steps 12

Writes ``<out>/loss_curves.png`` and ``<out>/results.json``. The last line is machine-readable:
``RESULT name=dpo_vs_trl ours_pairs_per_s=<x> trl_pairs_per_s=<x> ratio=<x> ...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_records, load_avg, trainer_step_timer  # noqa: E402


def select_pairs(tokenizer, n: int, max_length: int, micro: int, seed: int) -> tuple[list, list]:
    """The first ``n`` HH pairs that fit untruncated, in rlhfkit's bucketed batch order.

    Returns (records in batch order, encoded pairs in the same order)."""
    from rlhfkit.stages.dpo import PairBatches, encode_pair, orient

    records, _ = orient(hh_records("pairs"))
    chosen, encoded = [], []
    for record in records:
        enc = encode_pair(tokenizer, record, max_length)
        if not enc.truncated and enc.chosen_ids != enc.rejected_ids:
            chosen.append(record)
            encoded.append(enc)
        if len(chosen) == n:
            break
    order = [i for batch in PairBatches(encoded, micro, 0, seed, 0).order for i in batch]
    return [chosen[i] for i in order], [encoded[i] for i in order]


def run_ours(pairs_file: Path, args, out: Path) -> dict:
    from rlhfkit.config import load_config
    from rlhfkit.monitor.metrics import read_metrics
    from rlhfkit.stages import dpo

    cfg = load_config(dpo.DPOConfig, None, [
        "model=default", "dtype=float32", "device=cpu", f"max_length={args.max_length}",
        "loss=sigmoid", f"beta={args.beta}", f"data.train={pairs_file}", "data.dev_fraction=0",
        f"train.output_dir={out}", f"train.max_steps={args.steps}", f"train.micro_batch_size={args.batch}",
        "train.grad_accum=1", "train.log_every=1", "train.resume=never", "train.progress=false",
        f"train.seed={args.seed}", f"optim.lr={args.lr}", "optim.warmup_ratio=0", "optim.scheduler=linear",
        "optim.weight_decay=0", "samples.prompts=0"])
    print(f"[ours] start ({load_avg()})", flush=True)
    result = dpo.run(cfg)
    print(f"[ours] end ({load_avg()})", flush=True)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    step_s = [args.batch / r["examples_per_s"] for r in rows]
    return {"loss": [r["loss"] for r in rows], "step_seconds": step_s,
            "reference_seconds": result.reference_seconds, "pairs": result.train_pairs}


def run_trl(records: list, args, out: Path) -> dict:
    timer = trainer_step_timer()
    trainer = make_trl(records, args, out, [timer])
    print(f"[trl] start ({load_avg()})", flush=True)
    trainer.train()
    print(f"[trl] end ({load_avg()})", flush=True)
    return {"loss": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "step_seconds": timer.seconds}


def make_trl(records: list, args, out: Path, callbacks: list):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rlhfkit.data.tokenize import render_prompt
    from rlhfkit.models import load_causal_lm

    model, tokenizer = load_causal_lm("default", dtype="float32", device="cpu")
    # plain text (the chat-templated prompt, the response): TRL appends EOS to each response, so it
    # tokenizes what rlhfkit does
    data = Dataset.from_list([{"prompt": render_prompt(tokenizer, r.prompt), "chosen": r.chosen,
                               "rejected": r.rejected} for r in records])
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0,
        weight_decay=0.0, beta=args.beta, loss_type=["sigmoid"], max_length=args.max_length,
        bf16=False, fp16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no",
        report_to=[], train_sampling_strategy="sequential", dataloader_num_workers=0, use_cpu=True,
        seed=args.seed, disable_tqdm=True, max_grad_norm=1.0)
    return DPOTrainer(model=model, ref_model=None, args=config, train_dataset=data,
                      processing_class=tokenizer, callbacks=callbacks)


class OursStepper:
    """rlhfkit's DPO training step, one optimizer step per call, on fixed batches of 8 pairs."""

    def __init__(self, encoded: list, args):
        import torch

        from rlhfkit.models import load_causal_lm
        from rlhfkit.stages.dpo import DPOConfig, collate_pairs, reference_logps
        from rlhfkit.train.config import OptimConfig
        from rlhfkit.train.loop import make_optimizer, make_scheduler

        self.model, tokenizer = load_causal_lm("default", dtype="float32", device="cpu")
        pad_id = tokenizer.pad_token_id
        b = args.batch
        self.batches = [collate_pairs(encoded[i:i + b], pad_id, range(i, min(i + b, len(encoded))))
                        for i in range(0, len(encoded), b)]
        self.cfg = DPOConfig(beta=args.beta, loss="sigmoid", max_length=args.max_length)
        start = time.perf_counter()
        self.reference = reference_logps(self.model, encoded, pad_id, 16)
        self.reference_seconds = time.perf_counter() - start
        optim = OptimConfig(lr=args.lr, warmup_ratio=0.0, weight_decay=0.0, scheduler="linear")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, optim)
        self.scheduler = make_scheduler(self.optimizer, optim, args.steps)
        self.model.train()
        self.loss, self.step_seconds = [], []
        self.clip = torch.nn.utils.clip_grad_norm_

    def step(self, k: int) -> None:
        from rlhfkit.stages.dpo import dpo_step

        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        out = dpo_step(self.model, self.batches[k], self.reference, self.cfg, "cpu")
        out.loss.backward()
        self.clip(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step_seconds.append(time.perf_counter() - start)
        self.loss.append(float(out.loss.detach()))


def run_interleaved(records: list, encoded: list, args, out: Path) -> tuple[dict, dict]:
    from transformers import TrainerCallback

    ours = OursStepper(encoded, args)
    print(f"[ours] reference log-probs of {len(encoded)} pairs in {ours.reference_seconds:.1f}s "
          f"({load_avg()})", flush=True)

    class Alternate(TrainerCallback):
        def __init__(self):
            self.starts, self.seconds = [], []

        def on_step_begin(self, *a, **k):
            self.starts.append(time.perf_counter())

        def on_step_end(self, args_, state, *a, **k):
            self.seconds.append(time.perf_counter() - self.starts[-1])
            ours.step(state.global_step - 1)  # after TRL's timer stopped
            print(f"step {state.global_step}: trl {self.seconds[-1]:.1f}s, ours "
                  f"{ours.step_seconds[-1]:.1f}s ({load_avg()})", flush=True)

    timer = Alternate()
    trainer = make_trl(records, args, out / "trl", [timer])
    trainer.train()
    trl_loss = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return ({"loss": ours.loss, "step_seconds": ours.step_seconds,
             "reference_seconds": ours.reference_seconds, "pairs": len(encoded)},
            {"loss": trl_loss, "step_seconds": timer.seconds})


def work_per_pair(encoded: list, batch: int, model_params: int, head_params: int) -> tuple[float, float]:
    """GFLOP per pair (rlhfkit training step, TRL training step incl. its reference forward)."""
    body = model_params - head_params  # the decoder; the tied embedding lookup costs no matmul
    ours = trl = 0.0
    for i in range(0, len(encoded), batch):
        group = encoded[i:i + batch]
        packed = sum(len(p) for p in group)
        response = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in group)
        ours += 6 * body * packed + 6 * head_params * response
        width = max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in group)
        rows = 2 * len(group) * width  # chosen and rejected rows, padded to the widest
        trl += 6 * (body + head_params) * rows + 2 * (body + head_params) * rows
    return ours / len(encoded) / 1e9, trl / len(encoded) / 1e9


def rate(step_seconds: list, batch: int) -> float:
    timed = step_seconds[1:] if len(step_seconds) > 1 else step_seconds  # step 1 is warm-up
    return batch / statistics.mean(timed)


def plot(ours: list, trl: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(ours) + 1), ours, marker="o", label="rlhfkit dpo")
    ax.plot(range(1, len(trl) + 1), trl, marker="x", label="TRL DPOTrainer")
    ax.set_xlabel("optimizer step (same 8 pairs per step)")
    ax.set_ylabel("DPO loss")
    ax.set_title("DPO loss, SmolLM2-135M, HH-RLHF harmless")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 steps each (a few minutes)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per trainer")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (micro-batch, no accumulation)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequential", action="store_true",
                        help="run the whole `rlhfkit dpo` stage, then TRL (default: alternate steps)")
    parser.add_argument("--skip-trl", action="store_true", help="run the rlhfkit stage only (implies "
                        "--sequential)")
    parser.add_argument("--out", default="runs/bench/dpo_vs_trl", help="run folder")
    args = parser.parse_args()
    if args.quick:
        args.steps = 3
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from rlhfkit.data.readers import write_records
    from rlhfkit.models import load_tokenizer

    tokenizer = load_tokenizer("default")
    n_pairs = args.steps * args.batch
    records, encoded = select_pairs(tokenizer, n_pairs, args.max_length, args.batch, args.seed)
    tokens = sum(len(e) for e in encoded)
    print(f"{len(records)} HH pairs, {tokens / len(records):.0f} tokens per pair packed "
          f"(prompt {sum(len(e.prompt_ids) for e in encoded) / len(records):.0f}); torch threads "
          f"{torch.get_num_threads()}", flush=True)
    pairs_file = write_records(out / "pairs.jsonl", records)

    from rlhfkit.models import load_causal_lm

    probe, _ = load_causal_lm("default")
    n_params = sum(p.numel() for p in probe.parameters())
    n_head = probe.get_output_embeddings().weight.numel()
    del probe
    ours_gflop, trl_gflop = work_per_pair(encoded, args.batch, n_params, n_head)
    print(f"work per pair: ours {ours_gflop:.0f} GFLOP (reference precomputed: +"
          f"{2 * ours_gflop / 6:.0f}), TRL {trl_gflop:.0f} GFLOP incl. its reference forward: "
          f"{trl_gflop / ours_gflop:.2f}x more", flush=True)
    if args.sequential or args.skip_trl:
        ours = run_ours(pairs_file, args, out / "ours")
        trl = None if args.skip_trl else run_trl(records, args, out / "trl")
    else:
        ours, trl = run_interleaved(records, encoded, args, out)

    ours_rate = rate(ours["step_seconds"], args.batch)
    ref_per_pair = ours["reference_seconds"] / max(1, ours["pairs"])
    ours_incl = 1.0 / (1.0 / ours_rate + ref_per_pair)
    print(f"\n{'step':>4}  {'ours loss':>10}  {'trl loss':>10}  {'ours s':>7}  {'trl s':>7}")
    for i in range(args.steps):
        tl = f"{trl['loss'][i]:10.4f}" if trl and i < len(trl["loss"]) else f"{'-':>10}"
        ts = f"{trl['step_seconds'][i]:7.1f}" if trl and i < len(trl["step_seconds"]) else f"{'-':>7}"
        print(f"{i + 1:>4}  {ours['loss'][i]:10.4f}  {tl}  {ours['step_seconds'][i]:7.1f}  {ts}")
    print(f"\nours: {ours_rate:.3f} pairs/s training steps; reference log-probs precomputed once in "
          f"{ours['reference_seconds']:.1f}s ({ref_per_pair:.2f}s per pair) -> {ours_incl:.3f} pairs/s "
          "with the reference pass charged")
    summary = {"steps": args.steps, "batch": args.batch, "max_length": args.max_length, "lr": args.lr,
               "mode": "sequential" if args.sequential or args.skip_trl else "interleaved",
               "ours": ours, "ours_pairs_per_s": ours_rate, "ours_incl_ref_pairs_per_s": ours_incl,
               "ours_gflop_per_pair": ours_gflop, "trl_gflop_per_pair": trl_gflop}
    line = f"RESULT name=dpo_vs_trl ours_pairs_per_s={ours_rate:.4f}"
    tail = f" work_ratio={trl_gflop / ours_gflop:.2f}"
    if trl:
        trl_rate = rate(trl["step_seconds"], args.batch)
        print(f"TRL:  {trl_rate:.3f} pairs/s (reference forward inside every step)")
        print(f"ratio: {ours_rate / trl_rate:.2f}x training steps, {ours_incl / trl_rate:.2f}x with our "
              "reference pass charged")
        plot(ours["loss"], trl["loss"], out / "loss_curves.png")
        print(f"loss curves: {out / 'loss_curves.png'}")
        summary.update({"trl": trl, "trl_pairs_per_s": trl_rate})
        line += (f" trl_pairs_per_s={trl_rate:.4f} ratio={ours_rate / trl_rate:.2f}"
                 f" ours_incl_ref_pairs_per_s={ours_incl:.4f} ratio_incl_ref={ours_incl / trl_rate:.2f}")
        line += tail
    else:
        line += f" trl_pairs_per_s=nan ratio=nan ours_incl_ref_pairs_per_s={ours_incl:.4f}" + tail
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(line)


if __name__ == "__main__":
    main()
