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
``RESULT name=rollout_vs_generate ours_tokens_per_s=<x> hf_tokens_per_s=<x> ratio=<x>``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import time
from dataclasses import replace

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from rlhfkit.models import load_causal_lm
from rlhfkit.paths import shared_data_dir
from rlhfkit.rollout import SamplingParams, encode_prompts, make_engine

TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_conversations(limit: int = 2000) -> list[list[dict]]:
    """HH transcripts cut before their last assistant turn, as chat messages."""
    path = shared_data_dir() / "hh-rlhf-harmless" / "train.jsonl.gz"
    if not path.exists():
        return []
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            parts = TURN.split(json.loads(line)["chosen"])[1:]  # role, text, role, text, ...
            turns = [{"role": "user" if r == "Human" else "assistant", "content": c.strip()}
                     for r, c in zip(parts[0::2], parts[1::2])]
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()
            if turns:
                out.append(turns)
            if len(out) >= limit:
                break
    return out


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


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul FLOP/s of this machine now (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


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
    repeats = 1 if args.quick else args.repeats

    model, tok = load_causal_lm(args.model)
    model.eval()
    prompts, source = make_prompts(tok, args.batch, args.prompt_tokens, args.prompt_spread)
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.new_tokens, stop_at_eos=args.stop_at_eos, seed=1234)
    n_params = sum(p.numel() for p in model.parameters())
    prompt_tokens = sum(len(p) for p in prompts)
    padding = 1 - prompt_tokens / (len(prompts) * max(map(len, prompts)))
    print(f"model={args.model} params={n_params / 1e6:.1f}M threads={torch.get_num_threads()} "
          f"batch={len(prompts)} new_tokens={args.new_tokens} prompts: {source}, "
          f"mean length {prompt_tokens / len(prompts):.1f} (min {min(map(len, prompts))}, "
          f"max {max(map(len, prompts))}, left padding {padding:.0%})")

    peak = matmul_peak()
    engines = {name: make_engine(name, model, tok) for name in ("hf", "fast")}
    timed = time_engines(engines, prompts, params, repeats)
    (hf_s, hf_all, hf_batch), (fast_s, fast_all, fast_batch) = timed["hf"], timed["fast"]
    new_tokens = int(fast_batch.response_lengths.sum())
    hf_new = int(hf_batch.response_lengths.sum())
    same = torch.equal(hf_batch.response_ids, fast_batch.response_ids)
    lp_diff = (hf_batch.logprobs - fast_batch.logprobs).abs().max().item() if same else float("nan")
    bound_s = 2 * n_params * (prompt_tokens + new_tokens) / peak

    ours, theirs = new_tokens / fast_s, hf_new / hf_s
    print(f"fp32 matmul peak (2048^2): {peak / 1e9:.0f} GFLOP/s")
    print(f"hf generate : {theirs:8.1f} new tokens/s  (median {hf_s:.2f} s of "
          f"{', '.join(f'{t:.2f}' for t in hf_all)})")
    print(f"fast engine : {ours:8.1f} new tokens/s  (median {fast_s:.2f} s of "
          f"{', '.join(f'{t:.2f}' for t in fast_all)})")
    print(f"arithmetic bound: {new_tokens / bound_s:8.1f} new tokens/s  "
          f"(2 * params * {prompt_tokens + new_tokens} processed tokens / peak = {bound_s:.2f} s); "
          f"fast engine at {100 * bound_s / fast_s:.0f}% of it, hf at {100 * bound_s / hf_s:.0f}%")
    print(f"identical samples (same seed): {same}; max |logprob diff| {lp_diff:.2e}")
    print(f"RESULT name=rollout_vs_generate ours_tokens_per_s={ours:.1f} "
          f"hf_tokens_per_s={theirs:.1f} ratio={ours / theirs:.2f}")


if __name__ == "__main__":
    main()
