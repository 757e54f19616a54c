"""``rlhfkit eval frontier``: the reward-vs-KL frontier across the checkpoints of an RL run, and the
over-optimisation curve of RL (Gao et al. 2022).

For the start policy (the run's ``model``), every ``checkpoints/step-*/policy`` and ``final/`` of a
PPO / GRPO / RLOO run folder: sample K responses per prompt, measure the KL of the checkpoint to the
run's reference on those samples, and score them with the proxy (by default the reward the run
optimised) and a gold reward the policy never saw. KL per response is a sum over its tokens of a
per-token estimate from the sampled tokens (:func:`rlhfkit.losses.ppo.kl_penalty`, Schulman 2020),
r_t = log pi_ref(y_t | x, y_<t) - log pi(y_t | x, y_<t), y ~ pi:

    k3 (default): sum_t [exp(r_t) - 1 - r_t]   unbiased and never negative (low variance)
    k1:           sum_t [-r_t]                 unbiased, can be negative on few samples

with both log-probs from a plain forward pass at the sampling temperature (as the PPO stage
computes them; top_p / top_k filtering would make it approximate, so keep them off). The gains over
the start, in std units, are fitted with R(d) = d (alpha - beta log d), d = sqrt(KL), and the gold
fit's peak says how far the run can go before the gold score falls.

Writes ``frontier.json``, ``frontier.png`` and ``samples.jsonl``. A LoRA run's checkpoints hold the
adapter only: it is applied to the run's ``model`` and merged.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from rlhfkit.config import opt
from rlhfkit.eval.policies import EvalSampling
from rlhfkit.models.reward import Reduction

RESULT_FILE = "frontier.json"
PLOT_FILE = "frontier.png"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class FrontierConfig:
    RENAMED_KEYS: ClassVar[dict] = {"reduce": "ensemble_reduce"}  # old spelling until the next release
    run: str = opt("", "an RL run folder (rlhfkit ppo / grpo / rloo): its config.yaml, checkpoints/ and final/")
    gold: str = opt("", "the gold reward (reward-model or ensemble folder, or a reward spec) the run never saw")
    proxy: str = opt("", "the proxy reward ('' = the reward the run optimised, from its config.yaml)")
    ensemble_reduce: Reduction = opt("mean", "how an ensemble combines its members")
    prompts: str = opt("demo:prompts", "a file of any record kind (its prompts are used), ideally held out")
    max_prompts: int = opt(32, "use at most this many prompts (0 = all)")
    sampling: EvalSampling = opt(factory=lambda: EvalSampling(n=2), help="")
    kl_estimator: Literal["k1", "k3"] = opt("k3", "per-token KL estimate summed over a response: k3 "
                                                  "(unbiased, never negative) or k1 (log-ratio)")
    reward_batch_size: int = opt(32, "responses per reward call")
    output_dir: str = opt("", "where frontier.json, frontier.png and samples.jsonl go ('' = RUN/frontier)")
    seed: int = opt(0, "sampling seed (the same for every checkpoint)")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")

    def validate(self) -> None:
        if not self.run or not self.gold:
            raise ValueError("run and gold: both required (e.g. run=runs/ppo gold=runs/gold_rm/final)")


@dataclass
class Point:
    label: str  # start, step N, final
    step: int
    path: Path  # a model folder, or an adapter folder applied to the run's model


@dataclass
class FrontierResult:
    output_dir: Path
    summary: dict
    plot: Path


def read_run(run: Path) -> dict:
    """``model``, ``reference`` and ``reward`` of an RL run's config.yaml (errors name the file)."""
    from rlhfkit.config import ConfigError, read_yaml

    data = read_yaml(run / "config.yaml")
    if not data.get("model") or "reward" not in data:
        raise ConfigError(f"{run / 'config.yaml'}: model/reward: missing (not an rlhfkit RL run folder)")
    return {"model": str(data["model"]), "reference": str(data.get("reference") or data["model"]),
            "reward": str(data["reward"])}


def _last_step(run: Path) -> int | None:
    from rlhfkit.monitor.metrics import read_metrics

    path = run / "metrics.jsonl"
    steps = [r["step"] for r in read_metrics(path) if isinstance(r.get("step"), int)] if path.exists() else []
    return max(steps, default=None)


def find_points(run: Path, model: str) -> list[Point]:
    """The start, each checkpoint's policy (by step) and final/; a checkpoint at the final step is
    skipped (final/ holds the same weights)."""
    points = [Point("start", 0, Path(model))]
    last = _last_step(run)
    for folder in sorted((run / "checkpoints").glob("step-*/policy")):
        step = int(folder.parent.name.split("-")[1])
        if (run / "final").exists() and step == last:
            continue
        points.append(Point(f"step {step}", step, folder))
    if (run / "final" / "config.json").exists():
        points.append(Point("final", last if last is not None else len(points), run / "final"))
    return points


def load_point(point: Point, base: str, dtype: str, device: str):
    """(model, tokenizer) of a point: a model folder, or an adapter folder merged into ``base``."""
    from rlhfkit.models.loading import load_causal_lm

    if not (point.path / "adapter_config.json").exists():
        return load_causal_lm(str(point.path), dtype=dtype, device=device)
    from peft import PeftModel

    model, tokenizer = load_causal_lm(base, dtype=dtype, device=device)
    return PeftModel.from_pretrained(model, str(point.path)).merge_and_unload(), tokenizer


def sample_with_kl(model: Any, reference: Any, tokenizer: Any, prompts: list, s: EvalSampling, seed: int,
                   estimator: str = "k3"):
    """K responses per prompt from ``model`` and each one's sampled KL to ``reference``:
    (texts ``[P][K]``, kl ``[P][K]``). Chunk c of sampling.batch_size rows uses seed ``seed + c``."""
    import torch

    from rlhfkit.losses.ppo import kl_penalty
    from rlhfkit.losses.utils import masked_sum
    from rlhfkit.rl.forward import build_sequences, token_logprobs
    from rlhfkit.rollout import encode_prompts, make_engine
    from rlhfkit.rollout.types import SamplingParams

    ids = encode_prompts(tokenizer, prompts)
    flat = [p for p in range(len(prompts)) for _ in range(s.n)]  # prompt-major
    engine = make_engine(s.engine, model, tokenizer)
    texts: list[list[str]] = [[] for _ in prompts]
    kls: list[list[float]] = [[] for _ in prompts]
    for c, at in enumerate(range(0, len(flat), s.batch_size)):
        chunk = flat[at:at + s.batch_size]
        params = SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_new_tokens=s.max_new_tokens, seed=seed + c)
        batch = engine.generate([ids[p] for p in chunk], params)
        seq = build_sequences(batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
        with torch.no_grad():
            logp = token_logprobs(model, seq, batch.response_ids, params.logprob_temperature)[0]  # [B, T]
            ref = token_logprobs(reference, seq, batch.response_ids, params.logprob_temperature)[0]
        mask = batch.response_mask[:, :seq.length]
        kl = masked_sum(kl_penalty(logp, ref, estimator), mask, dim=1)  # [B]: sum over the response's tokens
        for p, text, value in zip(chunk, batch.decode(tokenizer), kl.tolist()):
            texts[p].append(text)
            kls[p].append(value)
    return texts, kls


def measure(points: list[Point], run_cfg: dict, prompts: list, cfg: FrontierConfig, device: str) -> list[dict]:
    """Samples and KL of every point (the reference stays loaded; one policy at a time)."""
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.run import say

    reference, _ = load_causal_lm(run_cfg["reference"], dtype=cfg.dtype, device=device)
    reference.eval()
    rows = []
    for point in points:
        model, tokenizer = load_point(point, run_cfg["model"], cfg.dtype, device)
        model.eval()
        texts, kls = sample_with_kl(model, reference, tokenizer, prompts, cfg.sampling, cfg.seed, cfg.kl_estimator)
        flat = [k for row in kls for k in row]
        rows.append({"label": point.label, "step": point.step, "path": str(point.path), "texts": texts,
                     "kl_per_response": kls, "kl": sum(flat) / len(flat)})
        say(f"frontier: {point.label}: KL {rows[-1]['kl']:.4f} nats")
        del model
        gc.collect()
    return rows


def run(cfg: FrontierConfig) -> FrontierResult:
    from rlhfkit.eval.overopt import analyse_curve, pooled_std
    from rlhfkit.eval.plots import plot_overopt
    from rlhfkit.eval.policies import load_named_reward
    from rlhfkit.data.sources import load_prompts
    from rlhfkit.run import prepare_output, resolve_device, seed_everything
    from rlhfkit.utils.io import write_json

    run_dir = Path(cfg.run).expanduser()
    run_cfg = read_run(run_dir)
    device = resolve_device(cfg.device)
    proxy = load_named_reward(cfg.proxy or run_cfg["reward"], "proxy", device, cfg.ensemble_reduce)
    gold = load_named_reward(cfg.gold, "gold", device, cfg.ensemble_reduce)
    out = prepare_output(cfg, cfg.output_dir or str(run_dir / "frontier"))
    seed_everything(cfg.seed)
    prompts = load_prompts(cfg.prompts, cfg.max_prompts or None)
    rows = measure(find_points(run_dir, run_cfg["model"]), run_cfg, prompts, cfg, device)
    ps = [[[float(x) for x in r] for r in proxy.score_groups(prompts, row["texts"], cfg.reward_batch_size)]
          for row in rows]
    gs = [[[float(x) for x in r] for r in gold.score_groups(prompts, row["texts"], cfg.reward_batch_size)]
          for row in rows]
    curve = [{"label": r["label"], "step": r["step"], "path": r["path"], "kl": r["kl"],
              "sqrt_kl": math.sqrt(max(r["kl"], 0.0)), "proxy": _mean(p), "gold": _mean(g)}
             for r, p, g in zip(rows, ps, gs)]
    a = analyse_curve(curve, pooled_std(ps[0]), pooled_std(gs[0]), "rl")
    peak = a["gold_peak_fit"]
    plot = plot_overopt([r["sqrt_kl"] for r in curve], a["gains"], a["fit_objects"],
                        peak["sqrt_kl"] if peak else None, out / PLOT_FILE, "rl",
                        f"RL over-optimisation: {run_dir.name}, proxy {proxy.name}, gold {gold.name}"[:110])
    summary = {"run": str(run_dir), "proxy": proxy.name, "gold": gold.name, "prompts": len(prompts),
               "samples_per_prompt": cfg.sampling.n, "curve": curve, "proxy_std": pooled_std(ps[0]),
               "gold_std": pooled_std(gs[0]), **{k: v for k, v in a.items() if k != "fit_objects"}}
    write_json(out / RESULT_FILE, summary)
    _write_samples(out / SAMPLES_FILE, prompts, rows, ps, gs)
    return FrontierResult(out, summary, plot)


def _mean(scores: list) -> float:
    flat = [s for row in scores for s in row]
    return sum(flat) / len(flat)


def _write_samples(path: Path, prompts: list, rows: list, proxy: list, gold: list) -> None:
    from rlhfkit.data.records import conversation_to_json
    from rlhfkit.utils.io import atomic_write_jsonl

    atomic_write_jsonl(path, ({"point": row["label"], "step": row["step"], "prompt_index": p,
                               "prompt": conversation_to_json(prompts[p]), "response": t, "kl": kl,
                               "proxy": pr, "gold": gd}
                              for row, prx, gld in zip(rows, proxy, gold)
                              for p in range(len(prompts))
                              for t, kl, pr, gd in zip(row["texts"][p], row["kl_per_response"][p], prx[p], gld[p])))


def report(result: FrontierResult) -> None:
    from rlhfkit.eval.overopt import describe_fits

    s = result.summary
    print(f"reward vs KL across {len(s['curve'])} points of {s['run']} ({s['prompts']} prompts x "
          f"{s['samples_per_prompt']} samples); proxy {s['proxy']}, gold {s['gold']}")
    print(f"{'point':<12} {'step':>6} {'KL':>8} {'sqrt KL':>8} {'proxy':>9} {'gold':>9}")
    for r in s["curve"]:
        print(f"{r['label']:<12} {r['step']:>6} {r['kl']:>8.4f} {r['sqrt_kl']:>8.3f} {r['proxy']:>9.4f} {r['gold']:>9.4f}")
    for line in describe_fits(s, "rl"):
        print(line)
    print(f"plot: {result.plot}\nresults: {result.output_dir / RESULT_FILE}")
