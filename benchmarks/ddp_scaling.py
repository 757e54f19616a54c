"""Data-parallel SFT scaling: N processes under torchrun (DDP, gloo on CPU) against one process at
the same global batch, in the same run.

Both runs train the same steps on the same data through the CLI (N x grad_accum 1 against 1 x
grad_accum N, one intra-op thread per process) and report tokens/s from their metrics.jsonl (global
tokens per second of each step, the median over the steps after the first). Efficiency is
tokens_per_s / (N x single_tokens_per_s): 1.0 is perfect scaling. On a 2-core CPU expect none: both
processes share the cores the single one had, so the number shows the overhead of the gradient
all-reduce and the extra collectives.

    python benchmarks/ddp_scaling.py --quick   # the tiny model, 6 steps (about a minute)
    python benchmarks/ddp_scaling.py           # the default model, 8 steps

Last line: ``RESULT name=ddp_scaling procs=2 tokens_per_s=<x> single_tokens_per_s=<x> efficiency=<x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_avg, median, result_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train(out: Path, procs: int, grad_accum: int, args: list[str]) -> float:
    """Run SFT in ``procs`` processes; returns the median tokens/s of its steps after the first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    head = ([sys.executable, "-m", "rlhfkit.cli"] if procs == 1 else
            [torchrun, "--standalone", f"--nproc_per_node={procs}", "-m", "rlhfkit.cli"])
    cmd = [*head, "--quiet", "sft", *args, f"train.grad_accum={grad_accum}", f"train.output_dir={out}"]
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"ddp_scaling: the {procs}-process run failed:\n{run.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return median([r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model, 6 steps")
    parser.add_argument("--procs", type=int, default=2, help="data-parallel processes")
    opts = parser.parse_args()
    model, steps, size = ("tiny", 6, 4) if opts.quick else ("default", 8, 4)
    args = [f"model={model}", f"train.max_steps={steps}", f"train.micro_batch_size={size}",
            "train.progress=false", "samples.prompts=0", "data.dev_fraction=0", "max_length=256",
            "train.log_every=1", "train.save_every=0"]
    print(f"SFT on {model}: {steps} steps at global batch {size * opts.procs} "
          f"({opts.procs} x {size} per process vs 1 x {size} x grad_accum {opts.procs}); {load_avg()}")
    with tempfile.TemporaryDirectory() as tmp:
        single = train(Path(tmp) / "one", 1, opts.procs, args)
        multi = train(Path(tmp) / "many", opts.procs, 1, args)
    efficiency = multi / (opts.procs * single)
    print(f"1 process: {single:.0f} tokens/s; {opts.procs} processes: {multi:.0f} tokens/s; "
          f"efficiency {efficiency:.2f}; {load_avg()}")
    print(result_line("ddp_scaling", procs=opts.procs, tokens_per_s=multi, single_tokens_per_s=single,
                      efficiency=efficiency))


if __name__ == "__main__":
    main()
