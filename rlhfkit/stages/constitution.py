"""``rlhfkit constitution``: Constitutional AI (Bai et al. 2022), both phases, from a constitution file.

Phases, in order; each writes under ``output_dir`` and is recorded in ``state.json`` when it ends, so a
rerun skips every finished phase (and refuses to reuse one whose settings changed since):

    revise           the base model answers each prompt, then k times critiques its latest answer
                     under a randomly drawn principle (seeded) and revises it
                     -> sl/sft_data.jsonl: SFT records (prompt, final revision); meta holds the
                        original answer and every step's principle, critique and revision
    revision_report  the AI judge compares (original, final revision) under each principle used
                     -> report/revision_winrate.json (share of revisions preferred, per principle)
    sl_train         the SFT stage on sl/sft_data.jsonl -> sl/sft/final (the SL-CAI model)
    rl_data          the SL-CAI model samples two responses per prompt; the judge picks one under a
                     drawn principle, both orders averaged (RLAIF soft labels)
                     -> rl/pairs.jsonl: preference records, label = the judge's P(chosen better)
    rl_reward        rl.method=ppo: the reward stage on rl/pairs.jsonl -> rl/rm/final
    rl_policy        the PPO stage against rl/rm/final, or the DPO stage on rl/pairs.jsonl
                     -> rl/ppo/final or rl/dpo/final

``until=sl`` stops after sl_train. The stages are called, not copied: every key of theirs can be set
with a prefix (``sl.sft.train.epochs=1``, ``rl.rm.train.max_steps=4``, ``rl.dpo.beta=0.2``); the model,
data and output paths that connect them are set here. Generation goes through the rollout engine,
batched across prompts; the judge is :func:`rlhfkit.judge.stage.build_judge` (local by default,
``judge.backend=http`` for an OpenAI-compatible server).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

from rlhfkit.config import opt
from rlhfkit.judge.config import JudgeConfig
from rlhfkit.stages import pipeline
from rlhfkit.stages.dpo import DPOConfig
from rlhfkit.stages.ppo import PPOConfig
from rlhfkit.stages.reward import RewardConfig
from rlhfkit.stages.sft import SFTConfig

SFT_DATA = "sl/sft_data.jsonl"
WINRATE_FILE = "report/revision_winrate.json"
REVISION_VERDICTS = "report/revision_verdicts.jsonl"
PAIRS_FILE = "rl/pairs.jsonl"
RL_VERDICTS = "rl/verdicts.jsonl"
RL_SUMMARY = "rl/judge_summary.json"


def rl_reward_model() -> RewardConfig:
    """The pipeline's demo reward model, trained with binary cross-entropy on the soft labels."""
    cfg = pipeline.demo_rm()
    cfg.objective.pairwise = "bce"
    return cfg


def rl_dpo() -> DPOConfig:
    """The pipeline's demo DPO, trained on the judge's soft labels (per-pair cDPO targets)."""
    cfg = pipeline.demo_dpo()
    cfg.soft_labels = True
    return cfg


@dataclass
class SLConfig:
    revisions: int = opt(1, "k: critique-and-revision steps per prompt, each under a freshly drawn "
                            "principle (Bai et al. 2022 used up to 4)")
    temperature: float = opt(0.7, "sampling temperature of answers, critiques and revisions (0 = greedy)")
    answer_tokens: int = opt(96, "length limit of the first answer")
    critique_tokens: int = opt(64, "length limit of a critique")
    revision_tokens: int = opt(96, "length limit of a revision")
    report: bool = opt(True, "judge each (original, final revision) pair under the principles used: the "
                             "share of revisions the judge prefers, per principle")
    sft: SFTConfig = opt(factory=pipeline.demo_sft, help="")

    def validate(self) -> None:
        if self.revisions < 1 or min(self.answer_tokens, self.critique_tokens, self.revision_tokens) < 1:
            raise ValueError("revisions and the *_tokens limits must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")


@dataclass
class RLConfig:
    method: Literal["ppo", "dpo"] = opt("ppo", "ppo: reward model on the AI preferences, then PPO against "
                                               "it; dpo: DPO on the AI preferences directly")
    prompts: str = opt("", "prompts for the AI preference pairs and PPO ('' = the top-level prompts "
                           "and max_prompts)")
    max_prompts: int = opt(0, "with rl.prompts: use at most this many (0 = all)")
    temperature: float = opt(1.0, "sampling temperature of the two responses per prompt")
    max_new_tokens: int = opt(64, "length limit of those responses")
    rm: RewardConfig = opt(factory=rl_reward_model, help="")
    ppo: PPOConfig = opt(factory=pipeline.demo_ppo, help="")
    dpo: DPOConfig = opt(factory=rl_dpo, help="")

    def validate(self) -> None:
        if self.temperature <= 0 or self.max_new_tokens < 1 or self.max_prompts < 0:
            raise ValueError("temperature must be > 0 (two different samples are needed), "
                             "max_new_tokens >= 1 and max_prompts >= 0")


@dataclass
class ConstitutionConfig:
    model: str = opt("default", "base model that answers, critiques and revises, then is fine-tuned: "
                                "default (SmolLM2-135M-Instruct), tiny or a Hugging Face folder")
    dtype: str = opt("float32", "float32 (right on CPU), bfloat16, or auto")
    device: str = opt("auto", "auto (cuda when available), cpu or cuda")
    constitution: str = opt("default", "constitution YAML (principles with name, principle, critique and "
                                       "revision); default = rlhfkit/resources/constitution.yaml")
    prompts: str = opt("demo:prompts", "red-team or instruction prompts: any file rlhfkit reads (its "
                                       "prompts are used) or demo:prompts")
    max_prompts: int = opt(0, "use at most this many prompts (0 = all)")
    output_dir: str = opt("runs/constitution", "run folder: every phase's outputs and state.json")
    until: Literal["sl", "rl"] = opt("rl", "last phase to run: sl (revisions, their win rate, SFT) or rl "
                                           "(then AI preferences and PPO or DPO)")
    seed: int = opt(0, "seed of the principle draws and of sampling")
    engine: Literal["fast", "hf"] = opt("fast", "rollout engine: fast (static KV cache, Llama) or hf")
    batch_size: int = opt(16, "sequences per generate call (prompts are batched together)")
    judge: JudgeConfig = opt(factory=lambda: JudgeConfig(model="", output_dir=""),
                             help="the AI judge (keys of rlhfkit judge; judge.model '' = model, the "
                                  "base model; pairs and output_dir are set here)")
    sl: SLConfig = opt(factory=SLConfig, help="")
    rl: RLConfig = opt(factory=RLConfig, help="")

    def validate(self) -> None:
        if self.judge.studio_project:
            raise ValueError("judge.studio_project: the constitution judges its own pairs, "
                             "not a studio project")
        if self.batch_size < 1 or self.max_prompts < 0:
            raise ValueError("batch_size must be >= 1 and max_prompts >= 0")


@dataclass
class ConstitutionResult:
    output_dir: Path
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # phase -> what it wrote (paths relative to output_dir)
    win_rates: dict | None = None
    stage_results: dict = field(default_factory=dict)  # sub-stage name -> its result (this run only)


# ----------------------------------------------------------------------------------------------
# Run state: which phases are finished, with the settings they used (rlhfkit/stages/phases.py)


def phase_keys(cfg: ConstitutionConfig) -> dict[str, tuple]:
    """The config keys each phase's output depends on (a finished phase is reused only while they
    stay the same)."""
    return {
        "revise": ("model", "dtype", "constitution", "prompts", "max_prompts", "seed", "engine",
                   "batch_size", "sl.revisions", "sl.temperature", "sl.answer_tokens",
                   "sl.critique_tokens", "sl.revision_tokens"),
        "revision_report": ("judge",),
        "sl_train": ("sl.sft",),
        "rl_data": ("rl.prompts", "rl.max_prompts", "rl.temperature", "rl.max_new_tokens", "judge"),
        "rl_reward": ("rl.rm",),
        "rl_policy": ("rl.method", f"rl.{cfg.rl.method}"),
    }


def fingerprint(cfg: ConstitutionConfig, phase: str, constitution: Any) -> dict:
    """The values of the phase's keys; the revise phase also records the constitution file's hash."""
    from rlhfkit.stages.phases import pick_keys

    out = pick_keys(cfg, phase_keys(cfg)[phase])
    if phase == "revise":
        import hashlib

        out["constitution_sha256"] = hashlib.sha256(Path(constitution.source).read_bytes()).hexdigest()
    return out


@dataclass
class Context:
    """What every phase gets: the config, the run folder, the constitution, finished outputs."""

    cfg: ConstitutionConfig
    out: Path
    constitution: Any
    state: Any  # PhaseState
    stage_results: dict = field(default_factory=dict)

    def path(self, phase: str, key: str) -> Path:
        return self.out / self.state.output(phase, key)


# ----------------------------------------------------------------------------------------------
# Generation: batched across prompts through the rollout engine


def read_prompts(spec: str, limit: int, key: str) -> list:
    from rlhfkit.data.sources import load_prompts

    return list(load_prompts(spec, limit or None, key))


def generate(engine: Any, tokenizer: Any, convos: list, temperature: float, max_new_tokens: int,
             batch_size: int, seed: int, stream: str) -> list[str]:
    """One response per conversation, ``batch_size`` conversations per engine call; chunk i samples
    with a seed drawn from (seed, stream, i), so a rerun samples the same texts."""
    from rlhfkit.rollout import SamplingParams, generate_texts
    from rlhfkit.run import say

    texts: list[str] = []
    for i, start in enumerate(range(0, len(convos), batch_size)):
        params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens,
                                seed=random.Random(f"{seed}:{stream}:{i}").randrange(2 ** 31))
        chunk, _ = generate_texts(engine, tokenizer, convos[start:start + batch_size], params)
        texts.extend(t.strip() for t in chunk)
        say(f"  {stream}: {len(texts)}/{len(convos)} generated")
    return texts


def load_generator(cfg: ConstitutionConfig, model_name: str) -> tuple:
    """(engine, tokenizer) of ``model_name`` for sampling."""
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.rollout import make_engine
    from rlhfkit.run import resolve_device

    model, tokenizer = load_causal_lm(model_name, dtype=cfg.dtype, device=resolve_device(cfg.device))
    model.eval()
    return make_engine(cfg.engine, model, tokenizer), tokenizer


# ----------------------------------------------------------------------------------------------
# Supervised phase: critique and revise, then SFT on the final revisions


@dataclass
class RevisionChain:
    """One prompt's answer and its critique-and-revision steps (``steps``: dicts with principle,
    critique, revision; an empty revision keeps the previous response and is marked ``empty``)."""

    prompt: Any
    original: str
    steps: list = field(default_factory=list)

    @property
    def final(self) -> str:
        return self.steps[-1]["response"] if self.steps else self.original

    def add(self, principle: str, critique: str, revision: str) -> None:
        step = {"principle": principle, "critique": critique, "revision": revision,
                "response": revision or self.final}
        if not revision:
            step["empty"] = True
        self.steps.append(step)

    def provenance(self) -> dict:
        return {"original": self.original, "principles": [s["principle"] for s in self.steps],
                "steps": [{k: v for k, v in s.items() if k != "response"} for s in self.steps]}


def critique_and_revise(engine: Any, tokenizer: Any, prompts: list, constitution: Any,
                        cfg: ConstitutionConfig) -> list[RevisionChain]:
    """Answer every prompt, then ``sl.revisions`` times: critique the latest response under a drawn
    principle and revise it (each step one batched generation over all prompts)."""
    from rlhfkit.judge.constitution import clean_revision, critique_messages, revision_messages
    from rlhfkit.run import say

    sl = cfg.sl
    gen = lambda convos, tokens, stream: generate(  # noqa: E731
        engine, tokenizer, convos, sl.temperature, tokens, cfg.batch_size, cfg.seed, stream)
    chains = [RevisionChain(p, a) for p, a in zip(prompts, gen(list(prompts), sl.answer_tokens, "answer"))]
    drawn = constitution.draw(len(prompts), sl.revisions, cfg.seed, "revise")
    for step in range(sl.revisions):
        principles = [d[step] for d in drawn]
        say(f"critique and revision step {step + 1}/{sl.revisions} on {len(chains)} prompts")
        critiques = gen([critique_messages(c.prompt, c.final, p) for c, p in zip(chains, principles)],
                        sl.critique_tokens, f"critique{step}")
        revisions = gen([revision_messages(c.prompt, c.final, p, k)
                         for c, p, k in zip(chains, principles, critiques)],
                        sl.revision_tokens, f"revision{step}")
        for chain, p, k, r in zip(chains, principles, critiques, revisions):
            chain.add(p.name, k, clean_revision(r))
    return chains


def phase_revise(ctx: Context) -> dict:
    from rlhfkit.data.readers import write_records
    from rlhfkit.data.records import SFTExample, no_usable
    from rlhfkit.run import warn

    cfg = ctx.cfg
    prompts = read_prompts(cfg.prompts, cfg.max_prompts, "prompts")
    engine, tokenizer = load_generator(cfg, cfg.model)
    chains = critique_and_revise(engine, tokenizer, prompts, ctx.constitution, cfg)
    records = [SFTExample(c.prompt, c.final, meta={"constitution": c.provenance()})
               for c in chains if c.final]
    if not records:
        raise no_usable("prompts", cfg.prompts, "revisions", "every final revision was empty")
    if len(records) < len(chains):
        warn(f"{len(chains) - len(records)} of {len(chains)} prompts ended with an empty revision: left out")
    write_records(ctx.out / SFT_DATA, records)
    empty = sum(1 for c in chains for s in c.steps if s.get("empty"))
    return {"sft_data": SFT_DATA, "prompts": len(chains), "records": len(records), "empty_revisions": empty,
            "changed": sum(c.final != c.original for c in chains)}


def phase_sl_train(ctx: Context) -> dict:
    from rlhfkit.stages import sft

    cfg, base = ctx.cfg, ctx.cfg.sl.sft
    sft_cfg = replace(base, model=cfg.model, dtype=cfg.dtype, device=cfg.device,
                      data=replace(base.data, train=str(ctx.path("revise", "sft_data"))),
                      train=replace(base.train, output_dir=str(ctx.out / "sl" / "sft")))
    result = sft.run(sft_cfg)
    ctx.stage_results["sft"] = result
    return {"model": _relative(result.model_dir, ctx.out), "steps": result.steps}


# ----------------------------------------------------------------------------------------------
# The judge: revision win rates, and AI preference labels


def build_judge(ctx: Context, folder: str):
    from rlhfkit.judge.stage import build_judge as judge_from_config

    jcfg = replace(ctx.cfg.judge, model=ctx.cfg.judge.model or ctx.cfg.model)
    return judge_from_config(jcfg, ctx.out / folder)


def judged(judge: Any, pairs: list) -> list:
    """Verdicts of ``pairs``, the backend closed afterwards."""
    from rlhfkit.run import say

    try:
        say(f"judging {len(pairs)} pairs in both orders with {judge.annotator}")
        return judge.compare_many(pairs, progress=lambda n: say(f"  {n}/{len(pairs)} pairs judged"))
    finally:
        if hasattr(judge.backend, "close"):
            judge.backend.close()


def revision_pairs(records: list, constitution: Any) -> tuple[list, int]:
    """(original = A, final revision = B) under each distinct principle of the record's steps;
    label 0.0 (B better) so the judge summary's accuracy is the share of revisions preferred.
    Returns (pairs, records whose revision equals the original: not judged)."""
    from rlhfkit.judge.judge import JudgePair

    by_name = {p.name: p for p in constitution.principles}
    pairs, unchanged = [], 0
    for i, rec in enumerate(records):
        prov = rec.meta["constitution"]
        if rec.response == prov["original"]:
            unchanged += 1
            continue
        for name in dict.fromkeys(prov["principles"]):
            pairs.append(JudgePair(rec.prompt, prov["original"], rec.response, label=0.0,
                                   principle=by_name[name].principle,
                                   meta={"record": i, "principle_name": name}))
    return pairs, unchanged


def win_rates(pairs: list, verdicts: list, names: list[str], min_confidence: float = 0.0) -> dict:
    """Per principle (and ``all``): pairs, ok verdicts, revisions preferred, their share (a 0.5 verdict
    counts half) and the mean P(revision better)."""
    from rlhfkit.judge.verdict import summarize

    def block(vs: list) -> dict:
        s = summarize(vs, min_confidence)
        ok = [v for v in vs if v.ok]
        mean = (1 - sum(v.prob for v in ok) / len(ok)) if ok else None
        return {"pairs": s.pairs, "ok": s.ok, "revision_preferred": sum(v.prob < 0.5 for v in ok),
                "share": s.accuracy, "mean_p_revision": mean, "inconsistent": s.inconsistent}

    groups: dict = {name: [] for name in names}
    for p, v in zip(pairs, verdicts):
        groups[p.meta["principle_name"]].append(v)
    return {"all": block(verdicts), "per_principle": {n: block(vs) for n, vs in groups.items() if vs}}


def phase_revision_report(ctx: Context) -> dict:
    from rlhfkit.data.sources import load
    from rlhfkit.utils.io import atomic_write_jsonl, write_json

    records = load(str(ctx.path("revise", "sft_data")), "sft").records
    pairs, unchanged = revision_pairs(records, ctx.constitution)
    judge = build_judge(ctx, "report")
    verdicts = judged(judge, pairs) if pairs else []
    atomic_write_jsonl(ctx.out / REVISION_VERDICTS, (
        {"record": p.meta["record"], "principle": p.meta["principle_name"], "p_revision": _flip(v.prob),
         **v.to_json()} for p, v in zip(pairs, verdicts)))
    report = {"judge": judge.annotator, "constitution": ctx.constitution.source, "records": len(records),
              "unchanged": unchanged, **win_rates(pairs, verdicts, ctx.constitution.names())}
    write_json(ctx.out / WINRATE_FILE, report)
    return {"report": WINRATE_FILE, "verdicts": REVISION_VERDICTS}


def _flip(prob: float | None) -> float | None:
    return None if prob is None else round(1.0 - prob, 6)


def rl_prompt_source(cfg: ConstitutionConfig) -> tuple[str, int, str]:
    """(spec, limit, config key) of the RL phase's prompts."""
    if cfg.rl.prompts:
        return cfg.rl.prompts, cfg.rl.max_prompts, "rl.prompts"
    return cfg.prompts, cfg.max_prompts, "prompts"


def preference_pairs(ctx: Context, prompts: list, texts: list) -> tuple[list, int]:
    """A JudgePair per prompt whose two samples differ, under a principle drawn per prompt."""
    from rlhfkit.judge.judge import JudgePair

    drawn = ctx.constitution.draw(len(prompts), 1, ctx.cfg.seed, "rl")
    pairs, same = [], 0
    for i, prompt in enumerate(prompts):
        a, b = texts[2 * i], texts[2 * i + 1]
        if not a or not b or a == b:
            same += 1
            continue
        p = drawn[i][0]
        pairs.append(JudgePair(prompt, a, b, principle=p.principle, meta={"principle_name": p.name}))
    return pairs, same


def phase_rl_data(ctx: Context) -> dict:
    import gc

    from rlhfkit.data.readers import write_records
    from rlhfkit.data.records import no_usable
    from rlhfkit.judge.judge import verdict_to_pair
    from rlhfkit.utils.io import atomic_write_jsonl, write_json

    cfg = ctx.cfg
    spec, limit, key = rl_prompt_source(cfg)
    prompts = read_prompts(spec, limit, key)
    engine, tokenizer = load_generator(cfg, str(ctx.path("sl_train", "model")))
    texts = generate(engine, tokenizer, [p for p in prompts for _ in range(2)], cfg.rl.temperature,
                     cfg.rl.max_new_tokens, cfg.batch_size, cfg.seed, "rl")
    del engine
    gc.collect()
    pairs, same = preference_pairs(ctx, prompts, texts)
    judge = build_judge(ctx, "rl")
    verdicts = judged(judge, pairs) if pairs else []
    kept = judge.kept(verdicts)
    labelled = [verdict_to_pair(p, v, judge.annotator) for p, v, k in zip(pairs, verdicts, kept) if k]
    labelled = [p for p in labelled if p is not None]  # an exact 0.5 has no preferred side
    atomic_write_jsonl(ctx.out / RL_VERDICTS, ({"principle": p.meta["principle_name"], **v.to_json()}
                                               for p, v in zip(pairs, verdicts)))
    write_json(ctx.out / RL_SUMMARY, {"judge": judge.annotator, "prompts": len(prompts),
                                      "identical_samples": same, **judge.summary(verdicts).to_json(),
                                      "preference_pairs": len(labelled)})
    if not labelled:
        raise no_usable(key, spec, "AI preference pairs",
                        "the judge kept no pair: check judge.min_confidence, or use more prompts")
    write_records(ctx.out / PAIRS_FILE, labelled)
    return {"pairs": PAIRS_FILE, "summary": RL_SUMMARY, "preference_pairs": len(labelled), "identical": same}


# ----------------------------------------------------------------------------------------------
# RL phase: reward model + PPO, or DPO, on the AI preferences


def phase_rl_reward(ctx: Context) -> dict:
    from rlhfkit.stages import reward

    cfg, base = ctx.cfg, ctx.cfg.rl.rm
    rm_cfg = replace(base, model=str(ctx.path("sl_train", "model")), dtype=cfg.dtype, device=cfg.device,
                     data=replace(base.data, train=str(ctx.path("rl_data", "pairs"))),
                     train=replace(base.train, output_dir=str(ctx.out / "rl" / "rm")))
    result = reward.run(rm_cfg)
    ctx.stage_results["rm"] = result
    return {"model": _relative(result.model_dir, ctx.out), "dev": result.dev_after}


def phase_rl_policy(ctx: Context) -> dict:
    from rlhfkit.stages import dpo, ppo

    cfg, sl_model = ctx.cfg, str(ctx.path("sl_train", "model"))
    if cfg.rl.method == "dpo":
        base = cfg.rl.dpo
        run_cfg = replace(base, model=sl_model, dtype=cfg.dtype, device=cfg.device,
                          data=replace(base.data, train=str(ctx.path("rl_data", "pairs"))),
                          train=replace(base.train, output_dir=str(ctx.out / "rl" / "dpo")))
        result = dpo.run(run_cfg)
    else:
        base = cfg.rl.ppo
        spec, limit, _ = rl_prompt_source(cfg)
        run_cfg = replace(base, model=sl_model, reward=str(ctx.path("rl_reward", "model")), dtype=cfg.dtype,
                          device=cfg.device, data=replace(base.data, prompts=spec, max_prompts=limit),
                          train=replace(base.train, output_dir=str(ctx.out / "rl" / "ppo")))
        result = ppo.run(run_cfg)
    ctx.stage_results[cfg.rl.method] = result
    return {"model": _relative(result.model_dir, ctx.out), "method": cfg.rl.method}


def _relative(path: Path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------------
# The recipe


PHASES: dict[str, Callable[[Context], dict]] = {
    "revise": phase_revise, "revision_report": phase_revision_report, "sl_train": phase_sl_train,
    "rl_data": phase_rl_data, "rl_reward": phase_rl_reward, "rl_policy": phase_rl_policy,
}


def phases_to_run(cfg: ConstitutionConfig) -> list[str]:
    names = ["revise"] + (["revision_report"] if cfg.sl.report else []) + ["sl_train"]
    if cfg.until == "rl":
        names += ["rl_data"] + (["rl_reward"] if cfg.rl.method == "ppo" else []) + ["rl_policy"]
    return names


def run(cfg: ConstitutionConfig) -> ConstitutionResult:
    from rlhfkit.judge.constitution import load_constitution
    from rlhfkit.run import prepare_output, say, seed_everything
    from rlhfkit.stages.phases import PhaseState

    constitution = load_constitution(cfg.constitution)  # a bad file fails before any model loads
    out = prepare_output(cfg, cfg.output_dir)
    state = PhaseState.load(out)
    state.check({phase: fingerprint(cfg, phase, constitution) for phase in PHASES})
    ctx = Context(cfg, out, constitution, state)
    result = ConstitutionResult(out, stage_results=ctx.stage_results)
    say(f"constitution {constitution.source}: {len(constitution)} principles "
        f"({', '.join(constitution.names())})")
    for phase in phases_to_run(cfg):
        if state.done(phase):
            say(f"== {phase}: finished before, skipped ==")
            result.skipped.append(phase)
            continue
        say(f"== {phase} ==")
        seed_everything(cfg.seed)
        start = time.time()
        outputs = PHASES[phase](ctx)
        state.finish(phase, fingerprint(cfg, phase, constitution), outputs, time.time() - start)
        result.ran.append(phase)
    result.outputs = {k: v["outputs"] for k, v in state.phases.items()}
    if "revision_report" in state.phases:
        import json

        result.win_rates = json.loads(ctx.path("revision_report", "report").read_text())
    return result


def win_rate_lines(report: dict) -> list[str]:
    """The revision win-rate table: one line per principle, then all."""
    def line(name: str, b: dict) -> str:
        share = "n/a" if b["share"] is None else f"{b['share']:.1%}"
        mean = "n/a" if b["mean_p_revision"] is None else f"{b['mean_p_revision']:.3f}"
        return f"  {name:<18} {b['revision_preferred']:>4}/{b['ok']:<4} {share:>7}   {mean}"

    lines = [f"revisions preferred over the originals by {report['judge']} "
             f"({report['unchanged']} of {report['records']} revisions equal their original, not judged):",
             f"  {'principle':<18} {'won/ok':>9} {'share':>7}   mean P(revision)"]
    lines += [line(name, b) for name, b in report["per_principle"].items()]
    return lines + [line("all", report["all"])]


def report(result: ConstitutionResult) -> None:
    print(f"constitution run {result.output_dir}: ran {', '.join(result.ran) or 'nothing'}"
          + (f"; skipped (finished before) {', '.join(result.skipped)}" if result.skipped else ""))
    outs = result.outputs
    if "revise" in outs:
        r = outs["revise"]
        print(f"SFT data: {result.output_dir / r['sft_data']} ({r['records']} records, "
              f"{r['changed']} revised away from the original answer)")
    if result.win_rates:
        for line in win_rate_lines(result.win_rates):
            print(line)
        print(f"win rates: {result.output_dir / WINRATE_FILE}")
    if "sl_train" in outs:
        print(f"SL-CAI model: {result.output_dir / outs['sl_train']['model']}")
    if "rl_data" in outs:
        print(f"AI preference pairs: {result.output_dir / outs['rl_data']['pairs']} "
              f"({outs['rl_data']['preference_pairs']} pairs, soft labels)")
    if "rl_reward" in outs:
        print(f"reward model: {result.output_dir / outs['rl_reward']['model']}")
    if "rl_policy" in outs:
        policy = outs["rl_policy"]
        print(f"RL-CAI model ({policy['method']}): {result.output_dir / policy['model']}")
