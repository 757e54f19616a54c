"""Seconds per GRPO step: rlhfkit's ``grpo`` stage vs TRL 1.16 ``GRPOTrainer``, same run.

Shape (BASELINES.md): SmolLM2-135M-Instruct (the embedded default) in fp32, 16 HH-RLHF harmless
prompts (at most 128 tokens with the chat template) x 4 samples each, up to 64 new tokens at
temperature 1, beta 0 (no reference model), one optimizer step per rollout (64 completions,
micro-batches of 8, 8 accumulated), the same learning rate, the same rule-based reward
(:func:`word_reward`, free to compute, so the time is sampling + the update). Both stop a
completion at EOS; the mean completion length of each is printed.

TRL runs with fp32 and without activation checkpointing (its defaults turn checkpointing on, which
only costs time at this size); ``--trl-defaults`` keeps its defaults instead. The step time is the
median over steps after the first (warm-up) of each trainer. The machine may be shared: the load
average is printed around each run.

    pip install trl==1.16.0            # benchmark only; never a dependency of rlhfkit
    python benchmarks/grpo_step.py --quick
    python benchmarks/grpo_step.py --steps 4 --skip-trl

The last line is machine-readable:
``RESULT name=grpo_step ours_s=<x> trl_s=<x> ratio=<x>`` (ratio = TRL seconds / ours).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_file, load_avg, result_line, trainer_step_timer  # noqa: E402

TRL_BASELINE_S = 148.0  # BASELINES.md, TRL 1.16 GRPOTrainer defaults, same shape
PROMPTS, GROUP, NEW_TOKENS, LR = 16, 4, 64, 1e-6


def word_reward(prompts, responses):
    """Rule reward for the benchmark: words in the response / 20, capped at 1 (rlhfkit contract)."""
    return [min(1.0, len(r.split()) / 20) for r in responses]


def select_prompts(n: int) -> list:
    """The first ``n`` HH prompts whose chat-template encoding fits in 128 tokens (demo prompts
    when the shared data is absent)."""
    from rlhfkit.data.sources import load
    from rlhfkit.data.tokenize import encode_prompt
    from rlhfkit.models import load_tokenizer

    path = hh_file(required=False)
    spec = str(path) if path else "demo:prompts"
    tok = load_tokenizer("default")
    out = []
    for conv in load(spec, "prompts", limit=2000).records:
        if len(encode_prompt(tok, conv)) <= 128:
            out.append(conv)
        if len(out) == n:
            break
    return out


def write_prompts(prompts: list, path: Path) -> None:
    from rlhfkit.data.records import conversation_to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": conversation_to_json(p)}) + "\n" for p in prompts))


def run_ours(prompts_file: Path, args, out: Path) -> dict:
    from rlhfkit.config import load_config
    from rlhfkit.monitor.metrics import read_metrics
    from rlhfkit.stages import grpo

    cfg = load_config(grpo.GRPOConfig, None, [
        f"model={args.model}", "dtype=float32", "device=cpu", f"reward={Path(__file__).resolve()}:word_reward",
        f"data.prompts={prompts_file}", "data.max_prompt_length=128", "data.eval_prompts=0",
        "samples.prompts=0", "rollout.temperature=1.0", f"rollout.max_new_tokens={NEW_TOKENS}",
        "rollout.missing_eos=keep", f"grpo.prompts_per_batch={PROMPTS}", f"grpo.group_size={GROUP}",
        "grpo.epochs=1", "kl.coef=0", "train.micro_batch_size=8", "train.grad_accum=8",
        f"train.max_steps={args.steps}", f"train.output_dir={out}", "train.resume=never",
        "train.save_every=0", "train.progress=false", f"optim.lr={LR}", "optim.warmup_ratio=0",
        "hacking.enabled=false",
    ])
    print(f"[ours] start ({load_avg()})", flush=True)
    grpo.run(cfg)
    print(f"[ours] end ({load_avg()})", flush=True)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "time_iteration" in r]
    timed = rows[1:] or rows
    return {"step_s": statistics.median(r["time_iteration"] for r in timed),
            "rollout_s": statistics.median(r["time_rollout"] for r in timed),
            "update_s": statistics.median(r["time_update"] for r in timed),
            "length": statistics.mean(r["response_length"] for r in timed), "steps": len(timed)}


def run_trl(prompts: list, args, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from rlhfkit.models.loading import load_tokenizer, resolve_model_path

    path = resolve_model_path(args.model)
    tok = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(path)
    rows = [{"prompt": [{"role": m.role, "content": m.content} for m in p]} for p in prompts]
    data = Dataset.from_list(rows * (args.steps + 1))
    lengths: list[float] = []

    def reward(completions, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        ids = kwargs.get("completion_ids")
        if ids is not None:  # TRL passes the sampled ids (EOS included, padding removed)
            lengths.extend(len(x) for x in ids)
        else:
            lengths.extend(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
        return word_reward(None, texts)

    extra = {} if args.trl_defaults else {"gradient_checkpointing": False, "bf16": False}
    config = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=8, gradient_accumulation_steps=8,
        num_generations=GROUP, max_completion_length=NEW_TOKENS, temperature=1.0, beta=0.0,
        learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, max_steps=args.steps,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, shuffle_dataset=False,
        seed=0, disable_dropout=True, **extra)

    timer = trainer_step_timer()
    times = timer.seconds
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=data,
                          processing_class=tok, callbacks=[timer])
    print(f"[trl] start ({load_avg()})", flush=True)
    trainer.train()
    print(f"[trl] end ({load_avg()})", flush=True)
    timed = times[1:] or times
    return {"step_s": statistics.median(timed), "length": statistics.mean(lengths) if lengths else float("nan"),
            "steps": len(timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 steps each (1 warm-up + 1 timed)")
    parser.add_argument("--steps", type=int, default=3, help="steps per trainer (the first is warm-up)")
    parser.add_argument("--skip-trl", action="store_true", help="rlhfkit only (prints the BASELINES figure)")
    parser.add_argument("--trl-defaults", action="store_true",
                        help="TRL with its defaults (activation checkpointing, bf16 where available)")
    parser.add_argument("--model", default="default", help="policy (default; tiny for a smoke test)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    parser.add_argument("--out", default="runs/bench/grpo_step", help="run folder")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.steps = 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    prompts = select_prompts(PROMPTS * (args.steps + 1))
    write_prompts(prompts, out / "prompts.jsonl")
    ours = run_ours(out / "prompts.jsonl", args, out / "ours")
    trl = None
    if not args.skip_trl:
        try:
            import trl as _trl  # noqa: F401
        except ImportError:
            print("TRL is not installed (pip install trl==1.16.0); printing the BASELINES.md figure")
        else:
            trl = run_trl(prompts, args, out / "trl")
    print(f"\nGRPO step, {'SmolLM2-135M' if args.model == 'default' else args.model} fp32 on CPU ({torch.get_num_threads()} threads): {PROMPTS} prompts x "
          f"{GROUP} samples x <= {NEW_TOKENS} tokens, beta 0, one optimizer step of 64 completions")
    print(f"  rlhfkit grpo:      {ours['step_s']:7.1f} s/step (sampling {ours['rollout_s']:.1f} s, update "
          f"{ours['update_s']:.1f} s); mean completion {ours['length']:.1f} tokens; {ours['steps']} timed")
    if trl:
        print(f"  TRL GRPOTrainer:   {trl['step_s']:7.1f} s/step; mean completion {trl['length']:.1f} tokens; "
              f"{trl['steps']} timed ({'its defaults' if args.trl_defaults else 'fp32, no activation checkpointing'})")
        trl_s = trl["step_s"]
    else:
        print(f"  TRL GRPOTrainer:   {TRL_BASELINE_S:7.1f} s/step (from BASELINES.md, not rerun here)")
        trl_s = TRL_BASELINE_S
    print(f"  speed-up {trl_s / ours['step_s']:.2f}x ({load_avg()})")
    print(result_line("grpo_step", ours_s=round(ours["step_s"], 2), trl_s=round(trl_s, 2),
                      ratio=round(trl_s / ours["step_s"], 2)))


if __name__ == "__main__":
    main()
