"""``rlhfkit eval``: compare policies against a baseline policy on a prompt set (SPEC section 8).

Each policy (and the baseline) samples K responses per prompt; a judge (a reward-model or ensemble
folder, or any reward spec :func:`rlhfkit.rewards.load_reward` accepts; never the reward the policy
was optimised against, or the comparison measures the optimisation, not the quality) scores every
response, each prompt computed once for its K responses where the judge supports it
(:meth:`RewardSource.score_groups`). For each policy:

* win rate against the baseline over all K x K (policy, baseline) response pairs of each prompt, a
  tie (|score difference| <= tie_eps) counting one half; percentile bootstrap CI over prompts;
* the length-controlled win rate: logistic regression of the verdict on the word-length difference,
  reported at equal length (sigmoid of the intercept), with its bootstrap CI;
* mean judge score; diversity (distinct-1/2, self-BLEU, hidden-state cosine, refusals, openings,
  lengths) and a mode-collapse verdict with its thresholds.

Writes ``eval.json`` and ``samples.jsonl`` (every response with its score) atomically, prints a table.
Recipe: setup -> sample each policy -> score -> compare -> write -> report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhfkit.config import opt
from rlhfkit.eval.diversity import CollapseThresholds
from rlhfkit.eval.policies import EvalSampling
from rlhfkit.models.reward import Reduction

EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.jsonl"
SEED_STRIDE = 100_003  # policy i samples with seeds seed + (i+1) * stride + chunk: never the baseline's


@dataclass
class EvalConfig:
    RENAMED_KEYS: ClassVar[dict] = {"judge_reduce": "ensemble_reduce"}  # old spelling until the next release
    policies: list[str] = opt(factory=list, help="policies to evaluate: run folders (their final/), HF "
                                                 "folders, default or tiny; e.g. policies=[runs/ppo]")
    baseline: str = opt("", "the policy every other is compared against (the SFT policy or the reference)")
    judge: str = opt("", "reward-model or ensemble folder that scores the responses (not the one the policy "
                         "was optimised against), or contains:WORDS, regex:PATTERN, length[:N], python:...")
    ensemble_reduce: Reduction = opt("mean", "how an ensemble judge combines members")
    judge_batch_size: int = opt(32, "responses per judge call")
    prompts: str = opt("demo:prompts", "a file of any record kind (its prompts are used) or demo:prompts")
    max_prompts: int = opt(0, "use at most this many prompts (0 = all)")
    sampling: EvalSampling = opt(factory=EvalSampling, help="")
    tie_eps: float = opt(0.0, "judge-score differences up to this count as ties (a tie counts one half)")
    bootstrap: int = opt(1000, "bootstrap resamples of the prompts for the confidence intervals")
    confidence: float = opt(0.95, "confidence level of the intervals (percentile bootstrap)")
    embed: bool = opt(True, "cosine similarity of each policy's mean-pooled hidden states over its own "
                            "responses (one extra forward pass per response)")
    collapse: CollapseThresholds = opt(factory=CollapseThresholds, help="")
    people_pairs: int = opt(0, "also write up to this many (policy, baseline) answer pairs per policy to "
                               "people_pairs.jsonl for a pairwise studio project (then: rlhfkit eval people)")
    output_dir: str = opt("runs/eval", "where eval.json and samples.jsonl go")
    seed: int = opt(0, "sampling and bootstrap seed")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto (bf16 on CUDA)")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")

    def validate(self) -> None:
        if not self.policies:
            raise ValueError("policies: required, a list such as policies=[runs/ppo] or policies=[tiny]")
        if not self.baseline:
            raise ValueError("baseline: required (the policy to compare against, e.g. runs/sft)")
        if not self.judge:
            raise ValueError("judge: required (a reward-model or ensemble folder, or a reward spec)")
        if self.bootstrap < 1 or self.judge_batch_size < 1:
            raise ValueError("bootstrap and judge_batch_size must be >= 1")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence: must be in (0, 1), got {self.confidence}")


@dataclass
class EvalResult:
    output_dir: Path
    summary: dict  # what eval.json holds
    examples: list = field(default_factory=list)  # (policy, prompt, policy answer, baseline answer)


# ----------------------------------------------------------------------------------------------
# Compare one policy with the baseline (pure: scores and lengths in, numbers out)


def pair_arrays(pol_scores: list, base_scores: list, pol_len: list, base_len: list, tie_eps: float):
    """Verdicts and length differences of every (policy sample, baseline sample) pair per prompt:
    two ``[P, K_pol * K_base]`` arrays."""
    import numpy as np

    from rlhfkit.eval.stats import verdicts

    v, dl = [], []
    for ps, bs, pl, bl in zip(pol_scores, base_scores, pol_len, base_len):
        a, b = np.meshgrid(ps, bs, indexing="ij")  # [K_pol, K_base]
        la, lb = np.meshgrid(pl, bl, indexing="ij")
        v.append(verdicts(a.ravel(), b.ravel(), tie_eps))
        dl.append((la - lb).ravel().astype(float))
    return np.stack(v), np.stack(dl)


def compare_scores(pol_scores: list, base_scores: list, pol_len: list, base_len: list, tie_eps: float = 0.0,
                   n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Win rate (ties one half) and length-controlled win rate of a policy over the baseline, each
    with a percentile bootstrap CI over prompts. Inputs are ``[P][K]`` scores and word lengths."""
    from rlhfkit.eval.stats import bootstrap_ci, length_controlled_win_rate, win_rate

    v, dl = pair_arrays(pol_scores, base_scores, pol_len, base_len, tie_eps)
    wr = win_rate(v.ravel())
    lc = lambda idx: length_controlled_win_rate(v[idx].ravel(), dl[idx].ravel())  # noqa: E731
    return {
        "win_rate": wr.rate, "win_rate_ci": list(bootstrap_ci(len(v), lambda idx: v[idx].mean(), n_boot,
                                                               confidence, seed)),
        "wins": wr.wins, "ties": wr.ties, "losses": wr.losses,
        "lc_win_rate": length_controlled_win_rate(v.ravel(), dl.ravel()),
        "lc_win_rate_ci": list(bootstrap_ci(len(v), lc, n_boot, confidence, seed)),
        "mean_length_diff": float(dl.mean()),
    }


def policy_summary(samples: Any, scores: list, thresholds: CollapseThresholds, baseline: dict | None) -> dict:
    """Mean score, diversity metrics and the mode-collapse verdict of one policy's samples."""
    from rlhfkit.eval.diversity import diversity_metrics, mode_collapse_verdict

    flat = [s for row in scores for s in row]
    div = diversity_metrics(samples.texts, samples.embeddings)
    reasons = mode_collapse_verdict(div, thresholds, baseline["diversity"] if baseline else None)
    finished = [f for row in samples.finished for f in row]
    return {"name": samples.name, "path": samples.path, "mean_score": sum(flat) / len(flat),
            "finished_share": sum(finished) / len(finished), "diversity": div,
            "mode_collapse": {"collapsed": bool(reasons), "reasons": reasons},
            "tokens_per_s": samples.tokens_per_s, "sample_seconds": samples.seconds}


# ----------------------------------------------------------------------------------------------
# The command


def _sample_rows(index: int, prompts: list, samples: Any, scores: list):
    """samples.jsonl rows of one policy (``policy_index`` 0 = the baseline, i = policies[i-1])."""
    from rlhfkit.data.records import conversation_to_json
    from rlhfkit.eval.diversity import words

    for p, (prompt, texts, done, row) in enumerate(zip(prompts, samples.texts, samples.finished, scores)):
        for k, (text, fin, score) in enumerate(zip(texts, done, row)):
            yield {"policy": samples.name, "policy_index": index, "prompt_index": p, "sample": k,
                   "prompt": conversation_to_json(prompt),
                   "response": text, "score": score, "finished": fin, "words": len(words(text))}


def run(cfg: EvalConfig) -> EvalResult:
    from rlhfkit.eval.diversity import words
    from rlhfkit.eval.policies import check_policies, load_named_reward, sample_policy
    from rlhfkit.data.sources import load_prompts
    from rlhfkit.run import prepare_output, resolve_device, say, seed_everything
    from rlhfkit.utils.io import atomic_write_jsonl, write_json

    names = [cfg.baseline] + list(cfg.policies)
    check_policies(names)  # before any model is loaded
    device = resolve_device(cfg.device)
    judge = load_named_reward(cfg.judge, "judge", device, cfg.ensemble_reduce)
    out = prepare_output(cfg, cfg.output_dir)
    seed_everything(cfg.seed)
    prompts = load_prompts(cfg.prompts, cfg.max_prompts or None)
    samples, scores = [], []
    for i, name in enumerate(names):
        say(f"eval: sampling {len(prompts)} prompts x {cfg.sampling.n} from {name}")
        s = sample_policy(name, prompts, cfg.sampling, cfg.seed + i * SEED_STRIDE, device, cfg.dtype, cfg.embed)
        samples.append(s)
        scores.append([[float(x) for x in row] for row in judge.score_groups(prompts, s.texts, cfg.judge_batch_size)])
    lengths = [[[len(words(t)) for t in g] for g in s.texts] for s in samples]
    base = policy_summary(samples[0], scores[0], cfg.collapse, None)
    rows = []
    for s, sc, ln in zip(samples[1:], scores[1:], lengths[1:]):
        row = policy_summary(s, sc, cfg.collapse, base)
        row.update(compare_scores(sc, scores[0], ln, lengths[0], cfg.tie_eps, cfg.bootstrap, cfg.confidence,
                                  cfg.seed))
        rows.append(row)
    summary = {"baseline": base, "policies": rows, "judge": judge.name, "prompts": len(prompts),
               "samples_per_prompt": cfg.sampling.n, "comparisons_per_policy": len(prompts) * cfg.sampling.n ** 2,
               "tie_eps": cfg.tie_eps, "confidence": cfg.confidence, "bootstrap": cfg.bootstrap,
               "collapse_thresholds": asdict(cfg.collapse)}
    if cfg.people_pairs:
        from rlhfkit.eval.people import PAIRS_FILE, write_people_pairs

        summary["people_pairs"] = write_people_pairs(out / PAIRS_FILE, samples, prompts, cfg.people_pairs, cfg.seed)
    write_json(out / EVAL_FILE, summary)
    atomic_write_jsonl(out / SAMPLES_FILE, (r for i, (s, sc) in enumerate(zip(samples, scores))
                                            for r in _sample_rows(i, prompts, s, sc)))
    examples = [(s.name, prompts[0], s.texts[0][0], samples[0].texts[0][0]) for s in samples[1:]]
    return EvalResult(out, summary, examples)


def _fmt_ci(ci: list) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def report(result: EvalResult) -> None:
    """The comparison table, the mode-collapse verdicts and where the files are."""
    s = result.summary
    conf = f"{s['confidence']:.0%}"
    print(f"judge {s['judge']}: {s['prompts']} prompts x {s['samples_per_prompt']} samples per policy, "
          f"{s['comparisons_per_policy']} comparisons per policy against the baseline {s['baseline']['name']}")
    head = f"{'policy':<28} {'win rate':>8} {conf + ' CI':>18} {'W/T/L':>13} {'LC win':>7} {conf + ' CI':>18} " \
           f"{'score':>8} {'dist-2':>6} {'sBLEU':>6} collapse"
    print(head)
    base = s["baseline"]
    rows = [(base, None)] + [(r, r) for r in s["policies"]]
    for r, cmp in rows:
        name = (r["name"] if cmp else r["name"] + " (baseline)")[-28:]
        d = r["diversity"]
        sb = "" if d["self_bleu_within"] is None else f"{d['self_bleu_within']:.3f}"
        left = (f"{cmp['win_rate']:>8.3f} {_fmt_ci(cmp['win_rate_ci']):>18} "
                f"{cmp['wins']:>4}/{cmp['ties']}/{cmp['losses']:<4} {cmp['lc_win_rate']:>7.3f} "
                f"{_fmt_ci(cmp['lc_win_rate_ci']):>18}") if cmp else f"{'':>8} {'':>18} {'':>13} {'':>7} {'':>18}"
        print(f"{name:<28} {left} {r['mean_score']:>8.4f} {d['distinct_2']:>6.3f} {sb:>6} "
              f"{'YES' if r['mode_collapse']['collapsed'] else 'no'}")
    for r in [base] + s["policies"]:
        for reason in r["mode_collapse"]["reasons"]:
            print(f"mode collapse? {r['name']}: {reason}")
    t = s["collapse_thresholds"]
    print(f"(mode collapse = within-prompt self-BLEU >= {t['max_self_bleu']}, distinct-2 <= {t['min_distinct_2']}, "
          f"one opening in >= {t['max_top_opening']:.0%} of answers, or distinct-2 <= {t['min_distinct_ratio']} x "
          "the baseline's)")
    for name, prompt, answer, base_answer in result.examples:
        question = prompt[-1].content if isinstance(prompt, tuple) else str(prompt)
        print(f"\n  prompt: {question}\n  {name}: {answer.strip()[:300]}\n  baseline: {base_answer.strip()[:300]}")
    print(f"\nresults: {result.output_dir / EVAL_FILE}\nsamples: {result.output_dir / SAMPLES_FILE}")
    if s.get("people_pairs"):
        print(f"{s['people_pairs']} answer pairs for people: {result.output_dir / 'people_pairs.jsonl'} "
              "(rlhfkit studio import PROJECT FILE; then rlhfkit eval people pairs=... labels=...)")
