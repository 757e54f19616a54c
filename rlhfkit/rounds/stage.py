"""``rlhfkit rounds``: iterated RLHF (SPEC sections 6 and 8). Round r, step by step:

    sample   policy r-1 (round 1: the SFT model) samples K responses to each of the round's prompts
             (the rollout engine, whole prompt groups per call)                   round-r/samples.jsonl
    select   candidate pairs = every two distinct responses of a prompt; the label budget goes to the
             pairs the reward-model ensemble of round r-1 disagrees on most (or the least confident
             ones, or random: rlhfkit.rounds.select)                            round-r/selected.jsonl
    label    an AI judge (rlhfkit.judge) labels them in both orders, or people do in a studio
             project of the round (rlhfkit.rounds.studio; the command stops until they are done):
             soft labels P(chosen better); a share is held out   round-r/labels.jsonl, heldout.jsonl
    rm       the reward stage trains reward model r on all labels so far, warm-started from r-1's
             (member i from member i), measured on the held-out slice                 round-r/rm/
    policy   the DPO stage on the soft labels (or PPO against reward model r) continues from policy
             r-1; the reference is policy r-1 (refresh) or the SFT model (kept)    round-r/policy/
    eval     policy r against policy r-1 and against the SFT policy on held-out prompts, judged by
             ``eval_judge`` (never the labeller): win rate with a bootstrap CI (rlhfkit.eval), and
             the KL of policy r to its reference                       round-r/eval.json

``state.json`` records each finished step (rlhfkit.rounds.state): rerunning the command resumes at
the first unfinished step and never redoes a finished one. ``rounds.json`` and ``rounds.png`` hold
the round table, rewritten after every evaluation.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rlhfkit.config import ConfigError
from rlhfkit.rounds.config import RoundsConfig  # noqa: F401  (the CLI reads the config class here)
from rlhfkit.rounds.state import STEPS, RoundsState

SFT_EVAL_FILE = "sft_eval_samples.json"
EVAL_SAMPLES_FILE = "eval_samples.json"
SEED_STRIDE = 1000  # round r samples with seeds seed + r * stride + chunk


@dataclass
class Run:
    """What every step reads: the config, the run folder, the state, the prompt split."""

    cfg: RoundsConfig
    out: Path
    state: RoundsState
    device: str
    train_prompts: list
    eval_prompts: list

    def round_dir(self, r: int) -> Path:
        return self.out / f"round-{r}"

    def policy(self, r: int) -> str:
        """The policy after round r (round 0: the SFT model)."""
        return self.cfg.model if r == 0 else self.state.info(r, "policy")["model_dir"]

    def reward_model(self, r: int) -> str | None:
        return self.state.info(r, "rm").get("model_dir") if r >= 1 else None

    def round_prompts(self, r: int) -> list:
        """The round's training prompts, taken in turn from the pool (wrapping around)."""
        n, pool = self.cfg.prompts_per_round, self.train_prompts
        start = ((r - 1) * n) % len(pool)
        return [pool[(start + k) % len(pool)] for k in range(min(n, len(pool)))]


@dataclass
class RoundsResult:
    output_dir: Path
    table: list = field(default_factory=list)
    ran: list = field(default_factory=list)  # (round, step) run by this invocation
    png: Path | None = None
    waiting: str = ""  # why the run stopped before the end (labels still missing in the studio)


# ----------------------------------------------------------------------------------------------
# setup


def open_run(cfg: RoundsConfig) -> Run:
    """Run folder (a rerun must keep the config, apart from ``rounds``), state, prompt split."""
    import random

    from rlhfkit.data.sources import load_prompts
    from rlhfkit.run import resolve_device

    from rlhfkit.run import prepare_output

    check_eval_judge(cfg)
    out = Path(cfg.output_dir)
    state = RoundsState.load(out)
    check_same_config(cfg, out, state)
    prepare_output(cfg, cfg.output_dir)
    prompts = load_prompts(cfg.prompts, cfg.max_prompts or None)
    order = list(range(len(prompts)))
    random.Random(cfg.seed).shuffle(order)
    n_eval = cfg.eval_prompts
    if len(prompts) <= n_eval:
        raise ConfigError(f"eval_prompts={n_eval}: the prompt pool {cfg.prompts} has only {len(prompts)} "
                          "prompts; lower eval_prompts or use a larger pool")
    return Run(cfg, out, state, resolve_device(cfg.device), [prompts[i] for i in order[n_eval:]],
               [prompts[i] for i in order[:n_eval]])


def check_eval_judge(cfg: RoundsConfig) -> None:
    """An ``ai:`` eval judge must be another model than the labelling judge (compared as folders)."""
    from rlhfkit.models.loading import resolve_model_path

    if cfg.labels != "judge" or not cfg.eval_judge.startswith("ai:") or cfg.judge.backend != "local":
        return
    same = Path(resolve_model_path(cfg.eval_judge[3:])).resolve() == Path(resolve_model_path(cfg.judge.model)).resolve()
    if same:
        raise ConfigError(f"eval_judge={cfg.eval_judge}: the same model as the labelling judge "
                          f"(judge.model={cfg.judge.model}); evaluate with a judge the labels did not come from")


def check_same_config(cfg: RoundsConfig, out: Path, state: RoundsState) -> None:
    """A run with finished steps continues only under its own config (``rounds`` may grow)."""
    import yaml

    from rlhfkit.config import read_yaml, to_dict
    from rlhfkit.run import config_changes

    if not state.done or not (out / "config.yaml").exists():
        return
    now = yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    changes = [c for c in config_changes(read_yaml(out / "config.yaml"), now) if not c.startswith("rounds:")]
    if changes:
        raise ConfigError(f"output_dir={out} holds a rounds run with another config ({'; '.join(changes[:4])}): "
                          "rerun with its config (only rounds may change), or use a new output_dir")


# ----------------------------------------------------------------------------------------------
# steps: each returns the info recorded in state.json


def step_sample(run: Run, r: int) -> dict:
    from rlhfkit.data.records import conversation_to_json
    from rlhfkit.eval.policies import sample_policy
    from rlhfkit.utils.io import atomic_write_jsonl

    prompts = run.round_prompts(r)
    policy = run.policy(r - 1)
    s = sample_policy(policy, prompts, run.cfg.sampling, run.cfg.seed + r * SEED_STRIDE, run.device, run.cfg.dtype)
    atomic_write_jsonl(run.round_dir(r) / "samples.jsonl",
                       ({"prompt_index": p, "prompt": conversation_to_json(prompt), "responses": texts,
                         "finished": done} for p, (prompt, texts, done) in enumerate(zip(prompts, s.texts, s.finished))))
    return {"policy": policy, "prompts": len(prompts), "responses": sum(map(len, s.texts))}


def read_samples(run: Run, r: int) -> tuple[list, list]:
    """(prompts, texts ``[P][K]``) of round r's samples."""
    from rlhfkit.data.records import as_conversation

    rows = [json.loads(line) for line in (run.round_dir(r) / "samples.jsonl").read_text().splitlines() if line]
    return [as_conversation(row["prompt"]) for row in rows], [row["responses"] for row in rows]


def member_rewards(rm_dir: str, prompts: list, texts: list, device: str, dtype: str):
    """``[M, P, K]`` scores of every sample by every member of a reward model (M = 1 for one model)."""
    import gc

    import numpy as np

    from rlhfkit.models.reward import RewardEnsemble, load_reward_model

    rm = load_reward_model(rm_dir, device=device, dtype=dtype)
    members = rm.members if isinstance(rm, RewardEnsemble) else [rm]
    out = np.array([[[float(x) for x in row] for row in m.score_candidates(prompts, texts)] for m in members])
    del rm, members
    gc.collect()
    return out


def step_select(run: Run, r: int) -> dict:
    from rlhfkit.rounds.select import candidate_pairs, rank_pairs
    from rlhfkit.utils.io import atomic_write_jsonl

    prompts, texts = read_samples(run, r)
    pairs = candidate_pairs(texts)
    strategy, rewards = run.cfg.selection, None
    prev_rm = run.reward_model(r - 1)
    if strategy != "random" and prev_rm is None:
        strategy = "random"  # round 1: no reward model yet
    elif strategy != "random":
        rewards = member_rewards(prev_rm, prompts, texts, run.device, run.cfg.dtype)
    order = rank_pairs(pairs, strategy, rewards, run.cfg.seed + r)[:run.cfg.budget]
    rows = []
    for rank, k in enumerate(order):
        c = pairs[k]
        row = {"rank": rank, "prompt_index": c.prompt, "i": c.i, "j": c.j}
        if rewards is not None:
            d = rewards[:, c.prompt, c.i] - rewards[:, c.prompt, c.j]
            row.update(reward_diff_mean=float(d.mean()), reward_diff_std=float(d.std()))
        rows.append(row)
    atomic_write_jsonl(run.round_dir(r) / "selected.jsonl", rows)
    return {"strategy": strategy, "candidates": len(pairs), "selected": len(rows), "scored_by": prev_rm}


def selected_pairs(run: Run, r: int) -> list:
    """The round's selected pairs as JudgePairs (response A = sample i, B = sample j)."""
    from rlhfkit.judge.judge import JudgePair

    prompts, texts = read_samples(run, r)
    rows = [json.loads(line) for line in (run.round_dir(r) / "selected.jsonl").read_text().splitlines() if line]
    return [JudgePair(prompts[s["prompt_index"]], texts[s["prompt_index"]][s["i"]], texts[s["prompt_index"]][s["j"]],
                      meta={"round": r, "prompt_index": s["prompt_index"], "i": s["i"], "j": s["j"]})
            for s in rows]


def judge_labels(run: Run, r: int, pairs: list) -> tuple[list, dict]:
    """The AI judge's soft-labelled pairs (kept verdicts only) and what to record about them."""
    from rlhfkit.judge.judge import verdict_to_pair
    from rlhfkit.judge.stage import build_judge
    from rlhfkit.run import say
    from rlhfkit.utils.io import atomic_write_jsonl

    judge = build_judge(run.cfg.judge, run.round_dir(r))
    try:
        say(f"round {r}: {judge.annotator} labels {len(pairs)} pairs in both orders")
        verdicts = judge.compare_many(pairs)
    finally:
        if hasattr(judge.backend, "close"):
            judge.backend.close()
    atomic_write_jsonl(run.round_dir(r) / "verdicts.jsonl", (v.to_json() for v in verdicts))
    kept = [verdict_to_pair(p, v, judge.annotator) for p, v, k in zip(pairs, verdicts, judge.kept(verdicts)) if k]
    return [p for p in kept if p is not None], {
        "source": judge.annotator, "position_inconsistent": judge.summary(verdicts).inconsistent_share}


def step_label(run: Run, r: int) -> dict:
    """Labels for the selected pairs (AI judge or studio); a share is held out for the RM's accuracy."""
    from rlhfkit.data.readers import write_records
    from rlhfkit.data.sources import split_dev

    pairs = selected_pairs(run, r)
    if run.cfg.labels == "studio":
        from rlhfkit.rounds.studio import studio_labels

        labelled, p = studio_labels(run.cfg, run.out, r, pairs)
        extra = {"source": f"studio:{p.project}", "studio_labels": p.labels}
    else:
        labelled, extra = judge_labels(run, r, pairs)
    if len(labelled) < 2:
        raise RoundsError(f"round {r}: only {len(labelled)} usable labels of {len(pairs)} pairs (at least 2 are "
                          "needed: one to train on, one held out); raise budget or lower judge.min_confidence")
    train, heldout = split_dev(labelled, run.cfg.heldout_fraction, run.cfg.seed + r)
    write_records(run.round_dir(r) / "labels.jsonl", train)
    write_records(run.round_dir(r) / "heldout.jsonl", heldout)
    return {**extra, "labels": len(labelled), "train": len(train), "heldout": len(heldout),
            "not_kept": len(pairs) - len(labelled)}


def label_files(run: Run, upto: int) -> str:
    """The reward stage's data.train: every round's labels up to ``upto`` (comma-separated)."""
    return ",".join(str(run.round_dir(k) / "labels.jsonl") for k in range(1, upto + 1))


def step_rm(run: Run, r: int) -> dict:
    from rlhfkit.stages import reward

    cfg = run.cfg
    rcfg = dataclasses.replace(
        cfg.rm, model=run.reward_model(r - 1) or cfg.model, device=cfg.device, dtype=cfg.dtype,
        data=dataclasses.replace(cfg.rm.data, train=label_files(run, r), dev=str(run.round_dir(r) / "heldout.jsonl")),
        train=dataclasses.replace(cfg.rm.train, output_dir=str(run.round_dir(r) / "rm")))
    result = reward.run(rcfg)
    dev = result.dev_after or {}
    return {"model_dir": str(result.model_dir), "warm_start": run.reward_model(r - 1),
            "heldout_accuracy": dev.get("accuracy"), "heldout_pairs": dev.get("pairs"), "steps": result.steps}


def reference_of(run: Run, r: int) -> str:
    """Round r's reference: policy r-1 (refresh) or the SFT model (kept)."""
    return run.cfg.model if run.cfg.reference == "sft" else run.policy(r - 1)


def dpo_pairs_file(run: Run, r: int) -> str:
    """DPO's training file: round r's labels, or (dpo_data=all) every round's so far in one file."""
    from rlhfkit.utils.io import atomic_write_text

    if run.cfg.dpo_data == "round":
        return str(run.round_dir(r) / "labels.jsonl")
    path = run.round_dir(r) / "dpo_pairs.jsonl"
    atomic_write_text(path, "".join((run.round_dir(k) / "labels.jsonl").read_text() for k in range(1, r + 1)))
    return str(path)


def step_policy(run: Run, r: int) -> dict:
    cfg, out = run.cfg, str(run.round_dir(r) / "policy")
    start, ref = run.policy(r - 1), reference_of(run, r)
    if cfg.policy == "dpo":
        from rlhfkit.stages import dpo

        pcfg = dataclasses.replace(
            cfg.dpo, model=start, reference="" if ref == start else ref, device=cfg.device, dtype=cfg.dtype,
            data=dataclasses.replace(cfg.dpo.data, train=dpo_pairs_file(run, r),
                                     dev=str(run.round_dir(r) / "heldout.jsonl")),
            train=dataclasses.replace(cfg.dpo.train, output_dir=out))
        result = dpo.run(pcfg)
    else:
        from rlhfkit.data.readers import write_records
        from rlhfkit.stages import ppo

        prompts_file = write_records(run.round_dir(r) / "prompts.jsonl", run.round_prompts(r))
        pcfg = dataclasses.replace(
            cfg.ppo, model=start, reference="" if ref == start else ref, reward=run.reward_model(r),
            device=cfg.device, dtype=cfg.dtype, data=dataclasses.replace(cfg.ppo.data, prompts=str(prompts_file)),
            train=dataclasses.replace(cfg.ppo.train, output_dir=out))
        result = ppo.run(pcfg)
    return {"model_dir": str(result.model_dir), "method": cfg.policy, "start": start, "reference": ref,
            "steps": result.steps}


def step_eval(run: Run, r: int) -> dict:
    from rlhfkit.rounds.evaluate import evaluate_round

    return evaluate_round(run, r)


STEP_FUNCS: dict[str, Callable[[Run, int], dict]] = {
    "sample": step_sample, "select": step_select, "label": step_label, "rm": step_rm,
    "policy": step_policy, "eval": step_eval,
}


class RoundsError(ConfigError):
    """A round cannot go on for a reason the user can fix (too few labels ...)."""


# ----------------------------------------------------------------------------------------------
# the command


def run(cfg: RoundsConfig, stop_after: tuple[int, str] | None = None) -> RoundsResult:
    """Run (or resume) every unfinished step of rounds 1..cfg.rounds; ``stop_after`` = (round, step)
    ends the call after that step (as if the process had been stopped there)."""
    from rlhfkit.rounds.studio import WaitingForLabels
    from rlhfkit.rounds.table import round_table, write_table
    from rlhfkit.run import say

    rn = open_run(cfg)
    ran, waiting = [], ""
    done_before = sum(len(s) for s in rn.state.done.values())
    if done_before:
        say(f"resuming {rn.out}: {done_before} steps already finished")
    while (nxt := rn.state.next_step(cfg.rounds)) is not None:
        r, step = nxt
        say(f"round {r}/{cfg.rounds}: {step} (step {STEPS.index(step) + 1}/{len(STEPS)})")
        try:
            info = STEP_FUNCS[step](rn, r)
        except WaitingForLabels as wait:
            waiting = str(wait)
            break
        rn.state.mark(r, step, info)
        rn.state.save(rn.out)
        ran.append((r, step))
        if step == "eval":
            write_table(rn.out, round_table(rn.state))
        if stop_after == (r, step):
            break
    table = round_table(rn.state)
    png = write_table(rn.out, table)
    return RoundsResult(rn.out, table, ran, png, waiting)


def report(result: RoundsResult) -> None:
    from rlhfkit.rounds.table import format_table

    if result.waiting:
        print(result.waiting)
    elif not result.ran:
        print("every step of every round was already finished (raise rounds to add rounds)")
    for line in format_table(result.table):
        print(line)
    print(f"round table: {result.output_dir / 'rounds.json'}" + (f", {result.png}" if result.png else ""))
