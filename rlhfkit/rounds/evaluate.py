"""The eval step of a round: policy r against policy r-1 and against the SFT policy, on the held-out
eval prompts, judged by ``eval_judge`` (a reward model or spec, or ``ai:MODEL``), never by what made
the training labels.

Every policy samples ``eval_sampling.n`` responses per eval prompt with the same seeds; each
policy's samples are kept in its round folder (the SFT policy's in the run folder), so policy r-1 and
the SFT policy are sampled once for the whole run. Win rates are rlhfkit.eval's: a reward judge
compares all K x K (policy, baseline) responses of a prompt (:func:`rlhfkit.eval.compare.compare_scores`);
an AI judge compares response k of the policy with response k of the baseline, both orders averaged,
P(policy better) above 0.5 + tie_eps a win, below 0.5 - tie_eps a loss, else a tie. CIs: percentile
bootstrap over prompts. KL: the k3 estimate summed over each response's tokens, of policy r to its
reference, averaged over the eval samples.
"""

from __future__ import annotations

import gc
import json
from typing import Any

EVAL_SEED = 7  # added to cfg.seed: every policy samples the eval prompts with the same seeds


def sample_with_kl(policy: str, reference: str, prompts: list, sampling: Any, seed: int, device: str,
                   dtype: str) -> tuple[list, list]:
    """(texts ``[P][K]``, KL ``[P][K]``) of ``policy`` against ``reference``."""
    from rlhfkit.eval.frontier import sample_with_kl as sample_kl
    from rlhfkit.models.loading import load_causal_lm

    model, tokenizer = load_causal_lm(policy, dtype=dtype, device=device)
    ref, _ = load_causal_lm(reference, dtype=dtype, device=device)
    model.eval()
    ref.eval()
    texts, kl = sample_kl(model, ref, tokenizer, prompts, sampling, seed, estimator="k3")
    del model, ref
    gc.collect()
    return texts, kl


def samples_of(run: Any, k: int) -> list:
    """Eval samples ``[P][K]`` of policy k (0 = SFT: sampled on first use and kept)."""
    from rlhfkit.eval.policies import sample_policy
    from rlhfkit.rounds.stage import EVAL_SAMPLES_FILE, SFT_EVAL_FILE
    from rlhfkit.utils.io import write_json

    if k >= 1:
        return json.loads((run.round_dir(k) / EVAL_SAMPLES_FILE).read_text())["texts"]
    path = run.out / SFT_EVAL_FILE
    if not path.exists():
        cfg = run.cfg
        s = sample_policy(cfg.model, run.eval_prompts, cfg.eval_sampling, cfg.seed + EVAL_SEED, run.device, cfg.dtype)
        write_json(path, {"policy": cfg.model, "texts": s.texts})
    return json.loads(path.read_text())["texts"]


class RewardJudge:
    """A reward model or spec as the eval judge: K x K score comparisons per prompt."""

    def __init__(self, spec: str, device: str):
        from rlhfkit.eval.policies import load_named_reward

        self.source = load_named_reward(spec, "eval_judge", device)
        self.name = self.source.name

    def win_rate(self, prompts: list, policy: list, baseline: list, cfg: Any) -> dict:
        from rlhfkit.eval.compare import compare_scores
        from rlhfkit.eval.diversity import words

        pol, base = (self._scores(prompts, t) for t in (policy, baseline))
        lengths = [[[len(words(t)) for t in g] for g in texts] for texts in (policy, baseline)]
        out = compare_scores(pol, base, lengths[0], lengths[1], cfg.tie_eps, cfg.bootstrap, cfg.confidence, cfg.seed)
        return {k: out[k] for k in ("win_rate", "win_rate_ci", "wins", "ties", "losses")}

    def _scores(self, prompts: list, texts: list) -> list:
        return [[float(x) for x in row] for row in self.source.score_groups(prompts, texts)]

    def close(self) -> None:
        del self.source
        gc.collect()


class AIJudge:
    """A local AI judge as the eval judge: response k of the policy vs response k of the baseline."""

    def __init__(self, model: str, cfg: Any):
        from rlhfkit.judge.config import JudgeConfig
        from rlhfkit.judge.stage import build_judge

        self.judge = build_judge(JudgeConfig(model=model, dtype=cfg.dtype, device=cfg.device, output_dir=""))
        self.name = self.judge.annotator

    def win_rate(self, prompts: list, policy: list, baseline: list, cfg: Any) -> dict:
        import numpy as np

        from rlhfkit.eval.stats import bootstrap_ci, win_rate
        from rlhfkit.judge.judge import JudgePair

        k = min(len(policy[0]), len(baseline[0]))
        pairs = [JudgePair(p, a[i], b[i]) for p, a, b in zip(prompts, policy, baseline) for i in range(k)]
        probs = [v.prob for v in self.judge.compare_many(pairs)]
        v = np.array([0.5 if p is None else judge_verdict(p, cfg.tie_eps) for p in probs]).reshape(len(prompts), k)
        wr = win_rate(v.ravel())
        ci = bootstrap_ci(len(v), lambda idx: v[idx].mean(), cfg.bootstrap, cfg.confidence, cfg.seed)
        return {"win_rate": wr.rate, "win_rate_ci": list(ci), "wins": wr.wins, "ties": wr.ties, "losses": wr.losses}

    def close(self) -> None:
        del self.judge
        gc.collect()


def judge_verdict(p_policy: float, tie_eps: float = 0.0) -> float:
    """1 (policy better), 0 (baseline better) or 0.5 (a tie) from the judge's P(policy better)."""
    return 1.0 if p_policy > 0.5 + tie_eps else 0.0 if p_policy < 0.5 - tie_eps else 0.5


def evaluate_round(run: Any, r: int) -> dict:
    from rlhfkit.rounds.stage import EVAL_SAMPLES_FILE, reference_of
    from rlhfkit.run import say
    from rlhfkit.utils.io import write_json

    cfg, prompts = run.cfg, run.eval_prompts
    reference = reference_of(run, r)
    texts, kl = sample_with_kl(run.policy(r), reference, prompts, cfg.eval_sampling, cfg.seed + EVAL_SEED,
                               run.device, cfg.dtype)
    flat_kl = [x for row in kl for x in row]
    write_json(run.round_dir(r) / EVAL_SAMPLES_FILE, {"policy": run.policy(r), "texts": texts, "kl": kl})
    prev, sft = samples_of(run, r - 1), samples_of(run, 0)
    spec = cfg.eval_judge
    judge = AIJudge(spec[3:], cfg) if spec.startswith("ai:") else RewardJudge(spec, run.device)
    try:
        vs_prev = judge.win_rate(prompts, texts, prev, cfg)
        vs_sft = vs_prev if r == 1 else judge.win_rate(prompts, texts, sft, cfg)
    finally:
        judge.close()
    info = {"judge": judge.name, "prompts": len(prompts), "samples_per_prompt": cfg.eval_sampling.n,
            "vs_previous": vs_prev, "vs_sft": vs_sft, "kl_to_reference": sum(flat_kl) / len(flat_kl),
            "reference": reference, "confidence": cfg.confidence}
    write_json(run.round_dir(r) / "eval.json", info)
    say(f"round {r}: win rate {vs_prev['win_rate']:.3f} vs round {r - 1}, {vs_sft['win_rate']:.3f} vs SFT "
        f"({judge.name}); KL to the reference {info['kl_to_reference']:.3f} nats")
    return info
