"""What each stage's unit of work costs, phase by phase, from its own config (the formulas live in
rlhfkit/eval/cost.py; ``rlhfkit plan`` in rlhfkit/eval/plan_cli.py reads configs and models and prints).

Every function here is pure: a stage config, the model shapes and the assumed token lengths in,
a :class:`rlhfkit.eval.cost.Plan` out. Lengths are means over the data (prompt and response tokens,
chat template included); the caps of the config are the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhfkit.eval.cost import (ModelShape, Phase, Plan, Work, decode_pairs, pass_flops, row, shared_prompt,
                          steps_for)


@dataclass(frozen=True)
class Lengths:
    prompt: float
    response: float

    def describe(self) -> str:
        return f"prompt {self.prompt:g} + response {self.response:g} tokens per sequence"


def train_phases(name: str, role: str, shape: ModelShape, w: Work, grad: str,
                 trainable_layers: int | None = None, note: str = "") -> list[Phase]:
    """A training pass as two phases: its forward and its backward."""
    forward = pass_flops(shape, w)
    total = pass_flops(shape, w, grad, trainable_layers)
    return [Phase(f"{name} forward", role, forward, note), Phase(f"{name} backward", role, total - forward, note)]


def _grad(lora: Any) -> str:
    return "lora" if lora.enabled else "full"


def plan_sft(cfg: Any, policy: ModelShape, lengths: Lengths, examples: int | None = None) -> Plan:
    """One optimizer step: micro_batch_size x grad_accum examples; logits at response positions."""
    batch = cfg.train.micro_batch_size * cfg.train.grad_accum
    w = row(lengths.prompt, lengths.response) * batch
    units = steps_for(examples, batch, cfg.train.epochs, cfg.train.max_steps)
    return Plan("sft", "optimizer step", train_phases("update", "policy", policy, w, _grad(cfg.lora)), units)


def rm_trainable_layers(freeze_layers: int, layers: int) -> int:
    """``freeze_layers`` N of the RM stage: N < 0 trains the top |N| layers, N > 0 freezes the
    lowest N, 0 trains all."""
    if freeze_layers < 0:
        return min(-freeze_layers, layers)
    return max(layers - freeze_layers, 0) if freeze_layers else layers


def plan_rm(cfg: Any, reward: ModelShape, lengths: Lengths, examples: int | None = None) -> Plan:
    """One optimizer step over pairs (chosen and rejected behind one shared prompt when
    prefix_sharing). Frozen bottom layers run forward only; with cache_frozen they run once per
    pair for the whole run, charged here as forward / epochs."""
    batch = cfg.train.micro_batch_size * cfg.train.grad_accum
    p, r = lengths.prompt, lengths.response
    per_pair = shared_prompt(p, [r, r], logits=False) if cfg.prefix_sharing else row(p, r, 0) * 2
    w = per_pair * batch
    k = reward.layers if cfg.lora.enabled else rm_trainable_layers(cfg.freeze_layers, reward.layers)
    frozen = pass_flops(reward, w) * (reward.layers - k) / reward.layers
    top = pass_flops(reward, w, _grad(cfg.lora), k) - frozen
    phases = [Phase("trained layers forward+backward", "reward", top)]
    if frozen:
        cached = cfg.cache_frozen and not cfg.lora.enabled
        share = 1 / max(cfg.train.epochs, 1.0) if cached else 1.0
        phases.insert(0, Phase("frozen layers forward", "reward", frozen * share,
                               "cached: once per pair, spread over the epochs" if cached else ""))
    units = steps_for(examples, batch, cfg.train.epochs, cfg.train.max_steps)
    members = cfg.ensemble.members
    return Plan("rm", "optimizer step", phases, None if units is None else units * members,
                [f"{reward.layers - k} of {reward.layers} layers frozen"] +
                ([f"ensemble of {members}: {members} runs"] if members > 1 else []))


def plan_dpo(cfg: Any, policy: ModelShape, lengths: Lengths, examples: int | None = None) -> Plan:
    """One optimizer step over pairs, chosen and rejected behind one shared prompt; reference
    log-probs computed once per pair and cached (none for simpo/orpo), charged as forward / epochs."""
    batch = cfg.train.micro_batch_size * cfg.train.grad_accum
    w = shared_prompt(lengths.prompt, [lengths.response] * 2) * batch
    phases = train_phases("update", "policy", policy, w, _grad(cfg.lora))
    if cfg.loss not in ("simpo", "orpo"):
        phases.insert(0, Phase("reference forward", "reference", pass_flops(policy, w) / max(cfg.train.epochs, 1.0),
                               "cached: once per pair, spread over the epochs"))
    return Plan("dpo", "optimizer step", phases, steps_for(examples, batch, cfg.train.epochs, cfg.train.max_steps))


def generation_phases(policy: ModelShape, prompts: int, samples: int, lengths: Lengths,
                      shared: bool) -> list[Phase]:
    """Prefill (each unique prompt once when ``shared``, logits at its last position only) and
    decode (one token per row per step against the KV cache, logits at every new token)."""
    p, r = lengths.prompt, lengths.response
    rows = prompts if shared else prompts * samples
    prefill = Work(rows * p, rows * decode_pairs(0, p), rows)
    n = prompts * samples
    decode = Work(n * r, n * decode_pairs(p, r), n * r)
    return [Phase("generation prefill", "policy", pass_flops(policy, prefill)),
            Phase("generation decode", "policy", pass_flops(policy, decode))]


def plan_rl(cfg: Any, stage: str, policy: ModelShape, reward: ModelShape | None,
            value: ModelShape | None, lengths: Lengths) -> Plan:
    """One PPO / GRPO / RLOO iteration: rollout, scoring forwards, then ``epochs`` passes of the
    update over the rollout batch. ``reward`` None = a rule or function reward (no model);
    ``value`` = the separate value model (PPO value_model reward/policy), None otherwise."""
    params = cfg.ppo if stage == "ppo" else cfg.grpo
    prompts = params.prompts_per_batch
    samples = params.samples_per_prompt if stage == "ppo" else params.group_size
    n, p, r = prompts * samples, lengths.prompt, lengths.response
    seq, seq_scalar = row(p, r) * n, row(p, r, 0) * n
    phases = generation_phases(policy, prompts, samples, lengths, shared=cfg.rollout.engine == "fast")
    if stage == "ppo" or cfg.kl.coef > 0:
        phases.append(Phase("reference forward", "reference", pass_flops(policy, seq)))
    if reward is not None:
        phases.append(Phase("reward forward", "reward", pass_flops(reward, seq_scalar)))
    grad = _grad(cfg.lora)
    if stage == "ppo":
        old_values = pass_flops(value, seq_scalar) if value is not None else pass_flops(policy, seq)
        phases.append(Phase("value forward", "value" if value is not None else "policy", old_values,
                            "" if value is not None else "value head on the policy: one policy forward"))
    epochs = params.epochs
    phases += train_phases(f"update x{epochs} epochs", "policy", policy, seq * epochs, grad)
    if stage == "ppo" and value is not None:
        phases += train_phases(f"update x{epochs} epochs", "value", value, seq_scalar * epochs, grad)
    notes = [] if reward is not None else ["reward is a rule or function: no reward-model FLOPs"]
    return Plan(stage, "iteration", phases, cfg.train.max_steps or None, notes)


def plan_bon(cfg: Any, policy: ModelShape, reward: ModelShape | None, lengths: Lengths,
             prompts: int | None = None) -> Plan:
    """Best-of-N per prompt: N samples (the prompt prefilled once with the fast engine) and N
    reward forwards. Fine-tuning on the kept responses (finetune=true) is an SFT run: plan it as sft."""
    n = cfg.sampling.n
    phases = generation_phases(policy, 1, n, lengths, shared=cfg.sampling.engine == "fast")
    if reward is not None:
        phases.append(Phase("reward forward", "reward", pass_flops(reward, row(lengths.prompt, lengths.response, 0) * n)))
    return Plan("bon", "prompt", phases, cfg.max_prompts or prompts)
