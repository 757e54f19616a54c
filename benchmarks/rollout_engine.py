"""Rollout throughput: transformers ``generate`` (the ``hf`` engine) vs rlhfkit's ``fast`` engine.

Both engines sample the same batch with the same seed in the same run (warm-up first, then the
median of a few timed repeats each), so they draw the same tokens; the script checks that and prints
new tokens per second for each, the ratio, and an arithmetic bound: 2 * params * processed tokens
(prompt tokens + new tokens) at the fp32 matmul peak measured here by timing a 2048^2 matmul.

    python benchmarks/rollout_engine.py --quick
    python benchmarks/rollout_engine.py --batch 32 --new-tokens 64 --prompt-tokens 150

Prompts: HH-RLHF harmless prompts (chat template applied) from ``rlhfkit.paths.shared_data_dir()``
whose length is closest to ``--prompt-tokens``; synthetic token prompts when the data is absent.
The last line is machine-readable:
``RESULT name=rollout ours_tokens_per_s=<x> generate_tokens_per_s=<x> ratio=<x>``.
``compare_engines`` / ``report_lines`` / ``rollout_result`` are reused by benchmarks/ppo_iteration.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from benchmarks.common import hh_file, hh_records, matmul_peak_gflops, result_line  # noqa: E402
from rlhfkit.models import load_causal_lm
from rlhfkit.rollout import SamplingParams, encode_prompts, make_engine

def hh_conversations(limit: int = 2000) -> list:
    """HH transcripts cut before their last assistant turn (rlhfkit's HH reader); [] without the data."""
    return hh_records("prompts", limit=limit) if hh_file(required=False) else []


def make_prompts(tokenizer, batch: int, target: int, spread: float,
                 seed: int = 0) -> tuple[list[list[int]], str]:
    """``batch`` prompts of mean length near ``target``: drawn at random (seeded) among those with
    length in target * (1 +- spread), or the ``batch`` closest to ``target`` when spread is 0."""
    gen = torch.Generator().manual_seed(seed)
    convs = hh_conversations()
    if convs:
        ids = encode_prompts(tokenizer, convs)
        lo, hi = target * (1 - spread), target * (1 + spread)
        pool = [p for p in ids if lo <= len(p) <= hi]
        if spread > 0 and len(pool) >= batch:
            pick = torch.randperm(len(pool), generator=gen)[:batch].tolist()
            return [pool[i] for i in pick], f"hh-rlhf-harmless prompts, lengths {lo:.0f}-{hi:.0f}"
        ids.sort(key=lambda p: abs(len(p) - target))
        return ids[:batch], "hh-rlhf-harmless prompts closest to the target length"
    vocab = len(tokenizer)
    lo, hi = int(target * (1 - spread)), int(target * (1 + spread)) + 1
    lengths = torch.randint(lo, hi, (batch,), generator=gen)
    prompts = [torch.randint(3, vocab, (int(n),), generator=gen).tolist() for n in lengths]
    return prompts, "synthetic prompts (shared data absent)"


def time_engines(engines: dict, prompts, params, repeats: int):
    """Warm every engine up, then time them in turn (interleaved, so load drifts hit both alike).
    Returns {name: (median seconds, all seconds, last batch)}."""
    for engine in engines.values():
        engine.generate(prompts, replace(params, max_new_tokens=4))
    times = {name: [] for name in engines}
    batches = {}
    for _ in range(repeats):
        for name, engine in engines.items():
            start = time.perf_counter()
            batches[name] = engine.generate(prompts, params)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), t, batches[name]) for name, t in times.items()}


def compare_engines(model, tok, *, batch: int = 32, new_tokens: int = 64, prompt_tokens: int = 150,
                    spread: float = 0.5, repeats: int = 3, temperature: float = 1.0,
                    top_p: float = 1.0, stop_at_eos: bool = False) -> dict:
    """Time ``generate`` (the hf engine) and the fast engine on the same HH prompts and seed in one
    run, beside the fp32 matmul peak measured now. Returns the figures ``report_lines`` prints."""
    was_training = model.training
    model.eval()
    prompts, source = make_prompts(tok, batch, prompt_tokens, spread)
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=new_tokens,
                            stop_at_eos=stop_at_eos, seed=1234)
    n_params = sum(p.numel() for p in model.parameters())
    n_prompt = sum(len(p) for p in prompts)
    peak = matmul_peak_gflops() * 1e9
    engines = {name: make_engine(name, model, tok) for name in ("hf", "fast")}
    timed = time_engines(engines, prompts, params, repeats)
    model.train(was_training)
    (hf_s, hf_all, hf_batch), (fast_s, fast_all, fast_batch) = timed["hf"], timed["fast"]
    new = int(fast_batch.response_lengths.sum())
    same = torch.equal(hf_batch.response_ids, fast_batch.response_ids)
    return {
        "params": n_params, "threads": torch.get_num_threads(), "batch": len(prompts),
        "new_tokens": new_tokens, "source": source, "prompt_tokens": n_prompt,
        "min_len": min(map(len, prompts)), "max_len": max(map(len, prompts)),
        "padding": 1 - n_prompt / (len(prompts) * max(map(len, prompts))),
        "peak": peak, "hf_s": hf_s, "hf_all": hf_all, "fast_s": fast_s, "fast_all": fast_all,
        "fast_new": new, "hf_new": int(hf_batch.response_lengths.sum()),
        "bound_s": 2 * n_params * (n_prompt + new) / peak, "same": same,
        "lp_diff": (hf_batch.logprobs - fast_batch.logprobs).abs().max().item() if same else float("nan"),
    }


def report_lines(r: dict) -> list[str]:
    """Human-readable lines: setup, peak, both engines side by side, the arithmetic bound."""
    ours, theirs = r["fast_new"] / r["fast_s"], r["hf_new"] / r["hf_s"]
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    return [
        f"params={r['params'] / 1e6:.1f}M threads={r['threads']} batch={r['batch']} "
        f"new_tokens={r['new_tokens']} prompts: {r['source']}, mean length "
        f"{r['prompt_tokens'] / r['batch']:.1f} (min {r['min_len']}, max {r['max_len']}, "
        f"left padding {r['padding']:.0%})",
        f"fp32 matmul peak (2048^2): {r['peak'] / 1e9:.0f} GFLOP/s",
        f"hf generate : {theirs:8.1f} new tokens/s  (median {r['hf_s']:.2f} s of {fmt(r['hf_all'])})",
        f"fast engine : {ours:8.1f} new tokens/s  (median {r['fast_s']:.2f} s of {fmt(r['fast_all'])})",
        f"arithmetic bound: {r['fast_new'] / r['bound_s']:8.1f} new tokens/s  (2 * params * "
        f"{r['prompt_tokens'] + r['fast_new']} processed tokens / peak = {r['bound_s']:.2f} s); "
        f"fast engine at {100 * r['bound_s'] / r['fast_s']:.0f}% of it, "
        f"hf at {100 * r['bound_s'] / r['hf_s']:.0f}%",
        f"identical samples (same seed): {r['same']}; max |logprob diff| {r['lp_diff']:.2e}",
    ]


def rollout_result(r: dict) -> str:
    """``RESULT name=rollout ours_tokens_per_s=<x> generate_tokens_per_s=<x> ratio=<x>``."""
    ours, theirs = r["fast_new"] / r["fast_s"], r["hf_new"] / r["hf_s"]
    return result_line("rollout", ours_tokens_per_s=round(ours, 1),
                       generate_tokens_per_s=round(theirs, 1), ratio=round(ours / theirs, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=150)
    ap.add_argument("--prompt-spread", type=float, default=0.5,
                    help="prompt lengths within prompt-tokens * (1 +- spread), as rollouts see them "
                         "(0 = the prompts closest to --prompt-tokens, almost no padding)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--stop-at-eos", action="store_true",
                    help="stop rows at EOS (default: always sample --new-tokens, a fixed workload)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--quick", action="store_true", help="one timed repeat per engine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_causal_lm(args.model)
    r = compare_engines(model, tok, batch=args.batch, new_tokens=args.new_tokens,
                        prompt_tokens=args.prompt_tokens, spread=args.prompt_spread,
                        repeats=1 if args.quick else args.repeats, temperature=args.temperature,
                        top_p=args.top_p, stop_at_eos=args.stop_at_eos)
    lines = report_lines(r)
    print(f"model={args.model} " + lines[0])
    print("\n".join(lines[1:]))
    print(rollout_result(r))


if __name__ == "__main__":
    main()
