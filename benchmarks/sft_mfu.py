"""SFT training throughput on the default model, with model-FLOPs utilisation.

Measures, in one run: the fp32 matmul peak of this machine; rlhfkit's SFT step (response-only LM
head, bucketed batches) and a plain transformers loop (``model(input_ids, labels=...)``, the way
most training scripts do it) on the same batches. MFU = 6 * params * tokens/s / peak, counting every
real (non-padding) token of the batch, for both.

    python benchmarks/sft_mfu.py            # 8 timed steps each
    python benchmarks/sft_mfu.py --quick    # 3 timed steps each (about 2 minutes)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_peak_gflops, median, result_line  # noqa: E402


def examples(tokenizer, max_length: int, n: int):
    from rlhfkit.data.readers import alpaca_seed_sft
    from rlhfkit.data.sources import load
    from rlhfkit.data.tokenize import encode_example
    from rlhfkit.paths import shared_data_dir

    seed = shared_data_dir() / "alpaca-seed-tasks" / "seed_tasks.jsonl"
    records = alpaca_seed_sft(seed) if seed.exists() else load("demo:sft", "sft").records
    while len(records) < n:
        records = records + records
    return [encode_example(tokenizer, r.prompt, r.response, max_length) for r in records[:n]]


def time_steps(step, batches, warmup: int) -> tuple[float, int]:
    """Median seconds per step and tokens per step over the timed batches."""
    times, tokens = [], []
    for i, (batch, n_tokens) in enumerate(batches):
        start = time.perf_counter()
        step(batch)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            tokens.append(n_tokens)
    return median(times), int(median(tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 timed steps instead of 8")
    parser.add_argument("--batch", type=int, default=8, help="examples per step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    import torch

    from rlhfkit.data.collate import bucketed_batches, collate_sft
    from rlhfkit.models import load_causal_lm
    from rlhfkit.stages.sft import sft_step

    steps = 3 if args.quick else 8
    peak = matmul_peak_gflops()
    model, tok = load_causal_lm(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    data = examples(tok, args.max_length, args.batch * (steps + 1) * 4)
    order = bucketed_batches([len(e) for e in data], args.batch, seed=0, epoch=0)
    # the longest buckets first: full-length batches like a real SFT run on long data
    order = sorted(order, key=lambda b: -sum(len(data[i]) for i in b))[: steps + 1]
    batches = []
    for b in order:
        batch = collate_sft([data[i] for i in b], tok.pad_token_id)
        batches.append((batch, int(batch["attention_mask"].sum())))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def ours(batch):
        out = sft_step(model, batch, "cpu")
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def plain(batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    plain_s, tokens = time_steps(plain, batches, warmup=1)
    ours_s, _ = time_steps(ours, batches, warmup=1)
    ours_tps, plain_tps = tokens / ours_s, tokens / plain_s
    mfu = 6 * n_params * ours_tps / (peak * 1e9)
    plain_mfu = 6 * n_params * plain_tps / (peak * 1e9)
    print(f"model {args.model}: {n_params / 1e6:.1f}M params; batch {args.batch} x <= {args.max_length} "
          f"tokens ({tokens} real tokens per step); fp32 matmul peak {peak:.0f} GFLOP/s")
    print(f"{'':24}{'tokens/s':>10}{'MFU':>8}")
    print(f"{'rlhfkit sft step':24}{ours_tps:>10.1f}{mfu:>8.1%}")
    print(f"{'plain transformers loop':24}{plain_tps:>10.1f}{plain_mfu:>8.1%}")
    print("(BASELINES.md, plain loop at batch 8 x 256: 163 tokens/s = 40% of peak)")
    print(result_line("sft_mfu", tokens_per_s=ours_tps, peak_gflops=peak, mfu=mfu,
                      plain_tokens_per_s=plain_tps))


if __name__ == "__main__":
    main()
