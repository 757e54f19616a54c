"""``rlhfkit eval overopt``: reward-model over-optimisation under best-of-N (Gao et al. 2022).

Sample n responses per prompt once from the policy; score every one with the proxy reward (the one
a best-of-N / RL run would optimise) and the gold reward (trained on more data, an ensemble, or a
judge: never seen by the policy). For N = 1, 2, 4, ..., max_n the expected proxy and gold score of
the proxy's best of N follow exactly from the ranks (:func:`rlhfkit.eval.overopt.bon_expected`), and
best-of-N's KL to the policy is log N - (N-1)/N. Both gains over N = 1, in units of each reward's
standard deviation over all samples, are plotted against sqrt(KL) with the fitted
R(d) = d (alpha - beta d); the gold fit's peak says how hard the proxy can be pushed before the gold
score falls.

Writes ``overopt.json`` (the curve, the fits, the peak), ``overopt.png`` and ``samples.jsonl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rlhfkit.config import opt
from rlhfkit.eval.policies import EvalSampling
from rlhfkit.models.reward import Reduction

RESULT_FILE = "overopt.json"
PLOT_FILE = "overopt.png"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class OverOptConfig:
    RENAMED_KEYS: ClassVar[dict] = {"reduce": "ensemble_reduce"}  # old spelling until the next release
    policy: str = opt("default", "the policy that samples (run folder, HF folder, default, tiny)")
    proxy: str = opt("", "the proxy reward best-of-N selects by: reward-model or ensemble folder, or a "
                         "reward spec (contains:WORDS, regex:PATTERN, length[:N], python:...)")
    gold: str = opt("", "the gold reward that judges the selected responses (never seen by the policy)")
    ensemble_reduce: Reduction = opt("mean", "how an ensemble combines its members")
    prompts: str = opt("demo:prompts", "a file of any record kind (its prompts are used) or demo:prompts")
    max_prompts: int = opt(0, "use at most this many prompts (0 = all)")
    max_n: int = opt(64, "largest N of best-of-N (a power of 2); N = 1, 2, 4, ..., max_n")
    sampling: EvalSampling = opt(factory=lambda: EvalSampling(n=64), help="")
    reward_batch_size: int = opt(32, "responses per reward call")
    output_dir: str = opt("runs/overopt", "where overopt.json, overopt.png and samples.jsonl go")
    seed: int = opt(0, "sampling seed")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")

    def validate(self) -> None:
        if not self.proxy or not self.gold:
            raise ValueError("proxy and gold: both required (reward-model folders or reward specs)")
        if self.max_n < 1 or self.max_n & (self.max_n - 1):
            raise ValueError(f"max_n: must be a power of 2 (1, 2, 4, ..., 64), got {self.max_n}")
        if self.sampling.n < self.max_n:
            raise ValueError(f"sampling.n={self.sampling.n}: best-of-{self.max_n} needs at least "
                             f"{self.max_n} samples per prompt")


@dataclass
class OverOptResult:
    output_dir: Path
    summary: dict
    plot: Path


def bon_curve(proxy: list, gold: list, ns: list[int]) -> list[dict]:
    """Per N: KL, sqrt(KL) and the mean over prompts of the expected proxy and gold score of the
    proxy's best of N (``proxy``/``gold``: ``[P][n]`` scores)."""
    from rlhfkit.eval.overopt import bon_expected
    from rlhfkit.eval.stats import bon_kl

    rows = []
    for n in ns:
        p = sum(bon_expected(ps, ps, n) for ps in proxy) / len(proxy)
        g = sum(bon_expected(ps, gs, n) for ps, gs in zip(proxy, gold)) / len(proxy)
        rows.append({"n": n, "kl": bon_kl(n), "sqrt_kl": math.sqrt(bon_kl(n)), "proxy": p, "gold": g})
    return rows


def run(cfg: OverOptConfig) -> OverOptResult:
    from rlhfkit.eval.overopt import analyse_curve, pooled_std
    from rlhfkit.eval.plots import plot_overopt
    from rlhfkit.eval.policies import check_policies, load_named_reward, sample_policy
    from rlhfkit.data.sources import load_prompts
    from rlhfkit.run import prepare_output, resolve_device, say, seed_everything
    from rlhfkit.utils.io import write_json

    check_policies([cfg.policy])
    device = resolve_device(cfg.device)
    proxy, gold = (load_named_reward(cfg.proxy, "proxy", device, cfg.ensemble_reduce),
                   load_named_reward(cfg.gold, "gold", device, cfg.ensemble_reduce))
    out = prepare_output(cfg, cfg.output_dir)
    seed_everything(cfg.seed)
    prompts = load_prompts(cfg.prompts, cfg.max_prompts or None)
    say(f"overopt: sampling {len(prompts)} prompts x {cfg.sampling.n} from {cfg.policy}")
    samples = sample_policy(cfg.policy, prompts, cfg.sampling, cfg.seed, device, cfg.dtype)
    ps = [[float(x) for x in r] for r in proxy.score_groups(prompts, samples.texts, cfg.reward_batch_size)]
    gs = [[float(x) for x in r] for r in gold.score_groups(prompts, samples.texts, cfg.reward_batch_size)]
    curve = bon_curve(ps, gs, [2 ** k for k in range(int(math.log2(cfg.max_n)) + 1)])
    a = analyse_curve(curve, pooled_std(ps), pooled_std(gs), "bon")
    peak = a["gold_peak_fit"]
    plot = plot_overopt([r["sqrt_kl"] for r in curve], a["gains"], a["fit_objects"],
                        peak["sqrt_kl"] if peak else None, out / PLOT_FILE, "bon",
                        f"best-of-N over-optimisation: {Path(samples.path).name}, proxy {proxy.name}, "
                        f"gold {gold.name}"[:110])
    summary = {"policy": samples.path, "proxy": proxy.name, "gold": gold.name, "prompts": len(prompts),
               "samples_per_prompt": cfg.sampling.n, "curve": curve, "proxy_std": pooled_std(ps), "gold_std": pooled_std(gs),
               **{k: v for k, v in a.items() if k != "fit_objects"}}
    write_json(out / RESULT_FILE, summary)
    _write_samples(out / SAMPLES_FILE, prompts, samples.texts, ps, gs)
    return OverOptResult(out, summary, plot)


def _write_samples(path: Path, prompts: list, texts: list, proxy: list, gold: list) -> None:
    from rlhfkit.data.records import conversation_to_json
    from rlhfkit.utils.io import atomic_write_jsonl

    atomic_write_jsonl(path, ({"prompt_index": p, "prompt": conversation_to_json(prompt), "response": t,
                               "proxy": pr, "gold": gd}
                              for p, prompt in enumerate(prompts)
                              for t, pr, gd in zip(texts[p], proxy[p], gold[p])))


def report(result: OverOptResult) -> None:
    from rlhfkit.eval.overopt import describe_fits

    s = result.summary
    print(f"best-of-N over-optimisation on {s['prompts']} prompts x {s['samples_per_prompt']} samples; "
          f"proxy {s['proxy']}, gold {s['gold']}")
    print(f"{'N':>4} {'KL':>7} {'sqrt KL':>8} {'proxy':>9} {'gold':>9}")
    for r in s["curve"]:
        print(f"{r['n']:>4} {r['kl']:>7.3f} {r['sqrt_kl']:>8.3f} {r['proxy']:>9.4f} {r['gold']:>9.4f}")
    for line in describe_fits(s, "bon"):
        print(line)
    print(f"plot: {result.plot}\nresults: {result.output_dir / RESULT_FILE}")
