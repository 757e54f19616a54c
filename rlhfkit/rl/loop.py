"""Set-up, iteration step, evaluation and final save shared by the RL stages.

A stage (PPO, GRPO, RLOO) supplies ``iteration(step) -> stats`` (rollout, advantages, update);
:func:`run_iterations` runs it as the step function of the one training loop
(:func:`rlhfkit.train.runner.run_loop`, shared with SFT, RM and DPO), which owns exact resume from the
newest valid checkpoint, periodic evaluation and checkpoints (policy and value HF folders +
``training_state.pt`` with optimizer, scheduler, RNG, KL controller, score normaliser, hacking-monitor
state and the step, written atomically), Ctrl-C/SIGTERM, metrics JSONL (+ TensorBoard) and the
progress bar; a reward-hacking stop ends the run cleanly and is kept in the saved state.

Determinism: the prompts of iteration ``step`` are a pure function of (seed, step), sampling is
seeded with (seed, step), and so is the minibatch shuffling; a resumed run therefore takes exactly
the step the uninterrupted run would have taken.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rlhfkit.run import say, warn

GiB = 1024 ** 3


@dataclass
class RLSetup:
    """Everything an RL stage has loaded before its first iteration."""

    out: Path
    device: str
    roles: Any
    reward: Any
    engine: Any
    train_prompts: list
    train_ids: list
    eval_prompts: list
    eval_ids: list
    logger: Any
    monitor: Any
    shaper: Any
    hacking_log: Path


def load_reward_source(spec: Any, device: str, reduce: str) -> Any:
    """The reward of the run: a spec string (config key ``reward``) or a Python callable
    ``reward_fn(prompts, responses) -> rewards`` (see rlhfkit.rewards)."""
    from rlhfkit.config import ConfigError
    from rlhfkit.rewards import RewardError, load_reward

    if callable(spec):
        return load_reward(spec)
    if not spec:
        raise ConfigError("reward: required: a reward-model folder, contains:WORD, regex:PATTERN, "
                          "length[:N] or python:module:function")
    try:
        return load_reward(spec, device=device, reduce=reduce)
    except RewardError as err:
        raise ConfigError(f"reward: {err}") from err


def load_prompts(data: Any, tokenizer: Any, seed: int) -> tuple[list, list, list, list]:
    """Read prompts, drop over-long ones (counted), hold out ``eval_prompts``:
    (train conversations, train ids, eval conversations, eval ids)."""
    from rlhfkit.data.sources import load
    from rlhfkit.rl.experience import encode_prompt_set

    result = load(data.prompts, "prompts", limit=data.max_prompts or None)
    say(result.report())
    kept, ids, dropped = encode_prompt_set(tokenizer, list(result.records), data.max_prompt_length)
    if dropped:
        (warn if dropped > 0.05 * max(1, len(result.records)) else say)(
            f"{dropped} of {len(result.records)} prompts are longer than max_prompt_length="
            f"{data.max_prompt_length} tokens and were dropped")
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    n_eval = min(data.eval_prompts, max(0, len(kept) - 1))
    ev, tr = order[:n_eval], order[n_eval:]
    if not tr:
        from rlhfkit.data.records import no_usable

        why = (f"all {dropped} are longer than data.max_prompt_length={data.max_prompt_length} tokens"
               if dropped else "")
        raise no_usable("data.prompts", data.prompts, "prompts", why)
    return [kept[i] for i in tr], [ids[i] for i in tr], [kept[i] for i in ev], [ids[i] for i in ev]


def setup(cfg: Any, *, value_mode: str, stage: str, need_reference: bool = True,
          reward_fn: Any = None) -> RLSetup:
    """Output folder, seeds, reward, roles, prompts, engine, logger, monitor (in that order).
    ``reward_fn`` (a callable) takes the place of the ``reward`` config key."""
    from rlhfkit.monitor.hacking import HackingMonitor
    from rlhfkit.monitor.metrics import MetricLogger
    from rlhfkit.rl.experience import ScoreShaper
    from rlhfkit.rl.roles import build_roles
    from rlhfkit.rollout import make_engine
    from rlhfkit.run import prepare_output, resolve_device, seed_everything

    device = resolve_device(cfg.device)
    reward = load_reward_source(reward_fn or cfg.reward, device, cfg.score.ensemble_reduce)
    out = prepare_output(cfg, cfg.train.output_dir)
    seed_everything(cfg.train.seed)
    roles = build_roles(model=cfg.model, reference=cfg.reference, reward=reward, value_mode=value_mode,
                        lora=cfg.lora, dtype=cfg.dtype, device=device, need_reference=need_reference)
    tr, tr_ids, ev, ev_ids = load_prompts(cfg.data, roles.tokenizer, cfg.train.seed)
    engine = make_engine(cfg.rollout.engine, roles.policy, roles.tokenizer)
    hacking_log = out / "hacking.jsonl"

    def sink(step: int, finding: Any) -> None:
        with hacking_log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(finding.to_json(step)) + "\n")

    monitor = HackingMonitor(cfg.hacking, reward.calibration_range, sink=sink)
    logger = MetricLogger.for_run(out, cfg.train, cfg)
    ref = ("the policy with its LoRA adapter off" if roles.lora else (cfg.reference or cfg.model)
           if roles.has_reference else "none (no KL term)")
    say(f"{stage}: policy {cfg.model}; reference {ref}; reward {reward.name}; value {roles.value_mode}; "
        f"rollout engine {engine.name}; device {device}")
    return RLSetup(out, device, roles, reward, engine, tr, tr_ids, ev, ev_ids, logger, monitor,
                   ScoreShaper(cfg.score.normalize, cfg.score.clip), hacking_log)


def prompt_indices(n: int, step: int, per_batch: int, seed: int) -> list[int]:
    """Prompts of iteration ``step`` (0-based): consecutive slices of a per-epoch shuffle of
    ``range(n)``; a pure function of its arguments (exact resume). Wraps into the next epoch."""
    out = []
    position = step * per_batch
    while len(out) < per_batch:
        epoch, offset = divmod(position, n)
        order = list(range(n))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        take = order[offset: offset + per_batch - len(out)]
        out.extend(take)
        position += len(take)
    return out


def sampling_params(rollout: Any, seed: int, step: int) -> Any:
    """Sampling settings of iteration ``step``, seeded by (seed, step) for exact resume."""
    from rlhfkit.rollout import SamplingParams

    return SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p,
                          max_new_tokens=rollout.max_new_tokens, seed=seed * 1_000_003 + step)


def describe_rl_batches(*, prompts_per_batch: int, samples_per_prompt: int, micro: int, accum: int,
                        epochs: int, iterations: int, n_prompts: int) -> str:
    responses = prompts_per_batch * samples_per_prompt
    minibatch = micro * accum
    per_iter = epochs * math.ceil(responses / minibatch)
    return (f"batch: rollout = prompts_per_batch={prompts_per_batch} x samples_per_prompt={samples_per_prompt} "
            f"= {responses} responses per iteration; minibatch = micro_batch_size={micro} x "
            f"grad_accum={accum} = {minibatch} responses per optimizer step; epochs={epochs} -> "
            f"{per_iter} optimizer steps per iteration; {iterations} iterations = {iterations * per_iter} "
            f"optimizer steps; {n_prompts} training prompts (one pass = "
            f"{math.ceil(n_prompts / prompts_per_batch)} iterations)")


def iterations_for(train: Any, n_prompts: int, prompts_per_batch: int) -> int:
    if train.max_steps > 0:
        return train.max_steps
    return max(1, math.ceil(train.epochs * n_prompts / prompts_per_batch))


def memory_report(roles: Any, reward: Any, micro: int, seq_len: int, device: str) -> None:
    """Print (or warn about) the peak memory of the run: trainable roles with grads and AdamW,
    frozen copies (reference, reward model) as weights only."""
    from rlhfkit.train.report import available_memory, estimate_training_memory

    def weight_bytes(module: Any) -> int:
        return sum(p.numel() * p.element_size() for p in module.parameters())

    frozen = weight_bytes(roles.reference) if roles.reference is not None else 0
    rm = getattr(reward, "model", None)
    for member in getattr(rm, "members", None) or ([rm] if rm is not None else []):
        if getattr(member, "model", None) is not None:
            frozen += weight_bytes(member.model)
    est = estimate_training_memory(roles.policy, micro, seq_len, device=device)
    total = est.total + frozen
    parts = [f"policy {est.total / GiB:.2f}"]
    if roles.value is not None:
        v = estimate_training_memory(roles.value, micro, seq_len, device=device)
        vocab = getattr(roles.value.config, "vocab_size", 0)
        bytes_per = next(roles.value.parameters()).element_size()
        v_total = v.total - 3 * micro * seq_len * vocab * bytes_per  # a value model has no LM-head logits
        total += v_total
        parts.append(f"value {v_total / GiB:.2f}")
    if frozen:
        parts.append(f"frozen reference/reward weights {frozen / GiB:.2f}")
    avail = available_memory(device)
    text = (f"memory estimate: {total / GiB:.1f} GiB peak ({', '.join(parts)}; micro-batch "
            f"{micro} x {seq_len} tokens) of {avail / GiB:.1f} GiB available")
    if total > 0.9 * avail:
        warn(text + ": likely to run out of memory; lower train.micro_batch_size or "
             "rollout.max_new_tokens, or use lora.enabled=true and value_model=head")
    else:
        say(text)


@dataclass
class RLResult:
    """What an RL stage returns (PPO, GRPO, RLOO); :func:`print_report` prints it."""

    model_dir: Path
    steps: int
    before: dict  # held-out prompts: score, kl, response_length, eos_frac
    after: dict
    samples: list = field(default_factory=list)  # (prompt, before, after)
    metrics_file: Path | None = None
    plot_file: Path | None = None
    hacking: dict = field(default_factory=dict)  # detector name -> times fired
    stopped_by: str | None = None
    seconds: float = 0.0
    last_stats: dict = field(default_factory=dict)
    stage: str = "rl"


def train_rl(cfg: Any, *, stage: str, value_mode: str, need_reference: bool, prompts_per_batch: int,
             samples_per_prompt: int, epochs: int, build_iteration: Callable, target_kl: float | None = None,
             reward_fn: Any = None) -> RLResult:
    """The frame of an RL stage: set-up, the start-of-run report (batch vocabulary, memory),
    optimizer and schedule, before/after evaluation and samples, the iteration loop, final save
    and curves. ``build_iteration(setup, optimizer, scheduler, params)`` returns the stage's
    ``(iteration(step) -> stats, {name: stateful object})``."""
    from rlhfkit.monitor.plots import plot_rl_curves
    from rlhfkit.train.checkpoint import resume_target
    from rlhfkit.train.loop import make_optimizer, make_scheduler

    s = setup(cfg, value_mode=value_mode, stage=stage, need_reference=need_reference, reward_fn=reward_fn)
    train = cfg.train
    iterations = iterations_for(train, len(s.train_prompts), prompts_per_batch)
    responses = prompts_per_batch * samples_per_prompt
    minibatch = train.micro_batch_size * train.grad_accum
    say(describe_rl_batches(prompts_per_batch=prompts_per_batch, samples_per_prompt=samples_per_prompt,
                            micro=train.micro_batch_size, accum=train.grad_accum, epochs=epochs,
                            iterations=iterations, n_prompts=len(s.train_prompts)))
    params = s.roles.trainable_parameters()
    say(f"trainable parameters: {sum(p.numel() for p in params):,}")
    memory_report(s.roles, s.reward, train.micro_batch_size,
                  cfg.data.max_prompt_length + cfg.rollout.max_new_tokens, s.device)
    optimizer = make_optimizer(params, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim, iterations * epochs * math.ceil(responses / minibatch))
    iteration, stateful = build_iteration(s, optimizer, scheduler, params)

    def evaluate() -> dict:
        return evaluate_policy(s, s.eval_prompts, s.eval_ids, cfg.rollout, train.seed, train.micro_batch_size,
                               samples=cfg.data.eval_samples)

    n_show = cfg.samples.prompts
    show, show_ids = s.eval_prompts[:n_show], s.eval_ids[:n_show]
    before_samples = greedy_samples(s, show, show_ids, cfg.samples.max_new_tokens)
    before = evaluate() if resume_target(train) is None else {}
    result = run_iterations(setup=s, train=train, iterations=iterations, iteration=iteration,
                            optimizer=optimizer, scheduler=scheduler,
                            stateful={**stateful, "score_shaper": s.shaper, "hacking": s.monitor},
                            evaluate=evaluate if s.eval_prompts else None, desc=stage, initial_eval=before)
    after = {k: v for k, v in result.eval_history[-1].items() if k != "step"} if s.eval_prompts else {}
    after_samples = greedy_samples(s, show, show_ids, cfg.samples.max_new_tokens)
    s.logger.close()
    final_dir = save_final(s.roles, s.out)
    plot = plot_rl_curves(s.logger.path, s.out / "curves.png", target_kl=target_kl, title=stage.upper())
    return RLResult(model_dir=final_dir, steps=result.steps, before=before, after=after,
                    samples=list(zip(show, before_samples, after_samples)), metrics_file=s.logger.path,
                    plot_file=plot, hacking=dict(s.monitor.counts), stopped_by=result.stopped_by,
                    seconds=result.seconds, last_stats=result.last_stats, stage=stage)


@dataclass
class LoopResult:
    steps: int
    final_dir: Path
    last_stats: dict
    eval_history: list
    resumed_from: Path | None
    stopped_by: str | None
    seconds: float


def _trim_findings(path: Path, resumed_step: int | None) -> None:
    """hacking.jsonl like metrics.jsonl: a fresh run starts empty, a resumed one keeps the findings
    of the iterations before its resume point (iteration k logs its findings as step k)."""
    from rlhfkit.utils.io import atomic_write_text

    if not path.exists():
        return
    keep = []
    if resumed_step is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= resumed_step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def run_iterations(*, setup: RLSetup, train: Any, iterations: int, iteration: Callable[[int], dict],
                   optimizer: Any, scheduler: Any, stateful: dict, evaluate: Callable[[], dict] | None,
                   desc: str, initial_eval: dict | None = None) -> LoopResult:
    """Run ``iteration(step)`` for step = resumed step .. iterations - 1 in the one training loop
    (:func:`rlhfkit.train.runner.run_loop`: resume, logging, evaluation, checkpoints, interrupts),
    stopping cleanly when the reward-hacking watch says so. ``stateful`` maps names to objects with
    ``state_dict``/``load_state_dict`` (KL controller, score shaper, monitor) that checkpoints keep."""
    from rlhfkit.monitor.hacking import RewardHackingStop
    from rlhfkit.train.runner import EvalSpec, StepResult, StopRun, run_loop

    def step_fn(step: int) -> StepResult:
        t0 = time.time()
        try:
            stats = iteration(step)
        except RewardHackingStop as stop:
            warn(f"stopping at iteration {step}: {stop}")
            raise StopRun(f"{stop.finding.name}: {stop.finding.message}") from None
        stats["time_iteration"] = time.time() - t0
        return StepResult(current=stats)

    outcome = run_loop(
        train=train, total=iterations, step_fn=step_fn, save_model=setup.roles.save,
        load_model=setup.roles.load, stateful={"optimizer": optimizer, "scheduler": scheduler, **stateful},
        logger=setup.logger, evaluate=EvalSpec(evaluate, "score", True) if evaluate is not None else None,
        params=setup.roles.trainable_parameters(), desc=desc, initial_eval=initial_eval,
        postfix=lambda s: {k: f"{s.get(k, float('nan')):.3f}" for k in ("score", "kl")},
        on_resume=lambda step: _trim_findings(setup.hacking_log, step))
    return LoopResult(steps=outcome.steps, final_dir=setup.out / "final", last_stats=outcome.last_stats,
                      eval_history=outcome.eval_history, resumed_from=outcome.resumed_from,
                      stopped_by=outcome.stopped, seconds=outcome.seconds)


def save_final(roles: Any, out: Path) -> Path:
    """``final/``: the policy as a plain HF folder (LoRA: merged, the adapter in ``final/adapter``),
    the value function in ``final/value`` (when there is one). Written atomically."""
    from rlhfkit.models.lora import write_merged
    from rlhfkit.train.checkpoint import atomic_save_folder, save_hf_folder

    def write(folder: Path) -> None:
        if roles.lora:
            write_merged(roles.policy, roles.tokenizer, folder)
        else:
            save_hf_folder(roles.policy, roles.tokenizer, folder)
        if roles.value is not None or roles.value_head is not None:
            roles.save_value(folder / "value")

    return atomic_save_folder(out / "final", write)


# ---------------------------------------------------------------------------------------------
# Evaluation and samples


def evaluate_policy(setup: RLSetup, prompts: list, ids: list, rollout: Any, seed: int,
                    micro: int, samples: int = 1) -> dict:
    """Sample ``samples`` responses per held-out prompt (fixed seed, training temperature), score
    them, and measure KL(pi || pi_ref) per response (sum over tokens of log pi - log pi_ref, the k1
    estimate). Returns score, kl, response_length (means over all responses)."""

    from rlhfkit.rl.experience import Experience, detach_batch, forward_pass

    if not prompts:
        return {}
    params = sampling_params(rollout, seed, 10_000_019)
    if samples < 1:
        from rlhfkit.config import ConfigError

        raise ConfigError(f"data.eval_samples: must be >= 1, got {samples}")
    prompts = [p for p in prompts for _ in range(samples)]
    ids = [i for i in ids for _ in range(samples)]
    setup.roles.train(False)
    batch = detach_batch(setup.engine.generate(ids, params))
    texts = batch.decode(setup.roles.tokenizer)
    scores = setup.reward(prompts, texts)
    mask = batch.response_mask.float()
    exp = Experience(prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask,
                     response_ids=batch.response_ids, real_mask=mask, mask=mask,
                     logprobs=batch.logprobs.float(), finished=batch.finished, raw_scores=scores,
                     scores=scores)
    out = {"score": float(scores.mean()), "response_length": float(mask.sum(1).mean()),
           "eos_frac": float(batch.finished.float().mean())}
    if setup.roles.has_reference:
        ref, _ = forward_pass(setup.roles, exp, params.temperature, micro, reference=True, values=False)
        out["kl"] = float(((exp.logprobs - ref) * mask).sum(1).mean())
    return out


def greedy_samples(setup: RLSetup, prompts: list, ids: list, max_new_tokens: int) -> list[str]:
    from rlhfkit.rollout import SamplingParams

    if not prompts:
        return []
    setup.roles.train(False)
    batch = setup.engine.generate(ids, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))
    return batch.decode(setup.roles.tokenizer)


def print_report(result: RLResult) -> None:
    """Print what a person wants to see at the end of an RL run (PPO, GRPO, RLOO)."""
    print(f"{result.stage.upper()} finished: {result.steps} iterations in {result.seconds:.0f} s; "
          f"policy saved to {result.model_dir}")
    if result.stopped_by:
        print(f"stopped early by the reward-hacking watch: {result.stopped_by}")
    b, a = result.before, result.after
    if a:
        def fmt(d: dict, key: str, spec: str) -> str:
            return format(d[key], spec) if key in d else "n/a"

        print(f"held-out prompts: reward {fmt(b, 'score', '.4f')} -> {fmt(a, 'score', '.4f')}; "
              f"KL to reference {fmt(b, 'kl', '.3f')} -> {fmt(a, 'kl', '.3f')} nats per response; "
              f"response length {fmt(b, 'response_length', '.1f')} -> {fmt(a, 'response_length', '.1f')} tokens")
    if result.hacking:
        fired = ", ".join(f"{k} x{v}" for k, v in sorted(result.hacking.items()))
        print(f"reward-hacking warnings: {fired} (details in hacking.jsonl)")
    for prompt, before, after in result.samples:
        question = prompt[-1].content if isinstance(prompt, tuple) else str(prompt)
        print(f"\n  prompt: {question}\n  before: {before.strip()}\n  after:  {after.strip()}")
    print(f"metrics: {result.metrics_file}")
    if result.plot_file:
        print(f"curves: {result.plot_file}")
