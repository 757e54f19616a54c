"""Stage 3: RL fine-tuning with PPO (SPEC section 5).

One iteration, top to bottom (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022;
implementation details from Huang et al. 2023/2024):

  1. rollout   sample ppo.samples_per_prompt responses per prompt from pi_theta (temperature,
               top-p, EOS), keeping the sampler's log-probs pi_old          rlhfkit.rl.experience
  2. score     reward r(x, y) per response (RM, ensemble, rule or function), hacking penalties,
               optional normalisation/clipping; reference log-probs; old values V(s_t)
  3. shape     per-token reward  r_t = -beta * KL_t  (+ score on the last token; a fixed score
               for responses without EOS, the "EOS trick"); beta fixed or adaptive toward a target;
               with ppo.score_baseline=group the score minus the mean of the other samples of
               its prompt (leave-one-out, Ahmadian et al. 2024)
  4. advantage GAE(gamma, lambda) over the response tokens; returns = A + V; A whitened
  5. update    epochs x shuffled minibatches: clipped surrogate (or, ppo.variant=kl_penalty, the
               KL-penalised one) + vf_coef * (clipped) value loss
               (- entropy_coef * entropy), grad accumulation, grad-norm clipping, lr -> 0

Setup, checkpoints/resume, evaluation and the final save live in rlhfkit.rl.loop, shared with
GRPO/RLOO (rlhfkit/stages/grpo.py).

Metrics (one row per iteration in metrics.jsonl):
  score            mean reward-model score of the batch (raw, before penalties and normalisation)
  kl               mean KL(pi || pi_ref) per response (sum over its tokens, kl.estimator)
  reward           mean total shaped reward per response (score used - beta * KL)
  kl_coef          beta used this iteration (changes when kl.adaptive)
  score_baseline   ppo.score_baseline=group: mean of the baselines subtracted from the scores
  policy_loss, value_loss, entropy, clipfrac, approx_kl, ratio, vf_clipfrac, explained_variance
                   means over the iteration's micro-batches (rlhfkit.losses.ppo)
  policy_kl, policy_kl_coef   ppo.variant=kl_penalty: mean KL(pi_old || pi) per token over the
                   update, and the beta that penalised it
  response_length, eos_frac   mean response tokens, share of responses that ended with EOS
  time_rollout, time_scoring, time_update, time_iteration   seconds; tokens_per_s = response
                   tokens / (rollout + scoring + update); hacking/<detector> = 1 when it fired
  eval/score, eval/kl          held-out prompts every train.eval_every iterations
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from rlhfkit.config import opt
from rlhfkit.rl.config import PromptData, RLStageConfig, RolloutConfig, validate_rl_train
from rlhfkit.rl.loop import RLResult as PPOResult  # model_dir, steps, before/after, samples, ...
from rlhfkit.train.config import LoraConfig, OptimConfig, TrainConfig


@dataclass
class PPOParams:
    prompts_per_batch: int = opt(16, "prompts per rollout batch")
    samples_per_prompt: int = opt(1, "responses sampled per prompt (the rollout batch is prompts_per_batch x "
                                     "this); with more than one, see score_baseline")
    score_baseline: Literal["none", "group"] = opt(
        "none", "group: subtract from each response's score the mean score of the other responses to the "
                "same prompt (leave-one-out, needs samples_per_prompt >= 2) before the KL shaping and GAE, "
                "so the advantages compare answers to one prompt instead of easy and hard prompts")
    epochs: int = opt(4, "PPO epochs over each rollout batch (reshuffled minibatches each time)")
    variant: Literal["clip", "kl_penalty"] = opt(
        "clip", "policy loss: clip (clipped surrogate, Schulman et al. 2017 eq. 7) or kl_penalty (no "
                "clipping; a penalty beta * KL(pi_old || pi) with beta adapted after each update, sec. 4)")
    clip_eps: float = opt(0.2, "policy ratio clip epsilon")
    kl_penalty_beta: float = opt(1.0, "variant=kl_penalty: initial beta of the policy KL penalty")
    kl_penalty_target: float = opt(
        0.01, "variant=kl_penalty: target KL(pi_old || pi) per token after an update; beta halves below "
              "target / 1.5 and doubles above target * 1.5 (0 = fixed beta)")
    value_clip_eps: float = opt(0.2, "value clip around the rollout-time values (0 = no clipping)")
    vf_coef: float = opt(0.1, "weight of the value loss in the combined loss")
    entropy_coef: float = opt(0.0, "entropy bonus weight (0 = off, the RLHF default)")
    gamma: float = opt(1.0, "GAE discount")
    lam: float = opt(0.95, "GAE lambda")
    whiten_advantages: bool = opt(True, "whiten advantages over the valid tokens of the rollout batch")
    whiten_rewards: bool = opt(False, "scale per-token rewards to unit variance (mean kept) before GAE")

    def validate(self) -> None:
        if self.prompts_per_batch < 1 or self.epochs < 1 or self.samples_per_prompt < 1:
            raise ValueError("prompts_per_batch, samples_per_prompt and epochs must be >= 1")
        if self.score_baseline == "group" and self.samples_per_prompt < 2:
            raise ValueError("score_baseline=group needs samples_per_prompt >= 2")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.kl_penalty_beta <= 0 or self.kl_penalty_target < 0:
            raise ValueError("kl_penalty_beta must be > 0 and kl_penalty_target >= 0")


@dataclass
class KLConfig:
    estimator: Literal["k1", "k2", "k3"] = opt("k1", "per-token KL estimator in the reward (Schulman 2020)")
    coef: float = opt(0.05, "beta: KL penalty coefficient (the initial value when adaptive)")
    adaptive: bool = opt(False, "adapt beta toward kl.target (Ziegler et al. 2019)")
    target: float = opt(6.0, "adaptive: target KL per response (nats)")
    horizon: float = opt(10000.0, "adaptive: controller horizon in responses")

    def validate(self) -> None:
        if self.coef < 0 or (self.adaptive and self.coef == 0):
            raise ValueError("coef must be >= 0 (> 0 when adaptive)")


@dataclass
class PPOConfig(RLStageConfig):
    value_model: Literal["reward", "policy", "head"] = opt(
        "reward", "value function: reward (copy of the reward model), policy (from the policy's "
                  "weights, head at 0) or head (a head on the policy's own backbone, cheapest)")
    ppo: PPOParams = opt(factory=PPOParams, help="")
    kl: KLConfig = opt(factory=KLConfig, help="")
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        output_dir="runs/ppo", max_steps=20, micro_batch_size=4, grad_accum=2, save_every=10), help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=1e-5, warmup_ratio=0.0), help="")

    def validate(self) -> None:
        validate_rl_train(self.train, self.ppo.prompts_per_batch * self.ppo.samples_per_prompt)


def demo_config(model: str, reward: str, output_dir: str, prompts: str = "demo:prompts") -> PPOConfig:
    """The pipeline's PPO step on the default model and 2 CPU cores (about 6 minutes estimated from
    the per-phase times of a quiet machine; 18 minutes on a heavily shared one): LoRA policy
    (reference = adapter off) and a value head on its backbone, so only the policy/reference and
    the reward model are in memory; 4 prompts x 2 samples x 32 tokens per iteration, 16 iterations.

    Why (measured on the demo SFT model and reward model): half the variance of the RM's scores is
    between prompts (std of prompt means 1.00, within a prompt 0.93), so with one sample per prompt
    the advantages mostly say which prompts the batch drew; two samples per prompt with the
    leave-one-out baseline compare answers to the same prompt. At lr 1e-4 with 2 epochs the LoRA
    adapter barely moved (approx_kl ~0.0001 per update from iteration 3 on, held-out score flat);
    lr 5e-4 with 4 epochs moves it (approx_kl 0.02-0.2). Held-out RM score (6 prompts x 4 samples,
    mean over 5 sampling seeds): 0.31 +- 0.18 before, 0.53 +- 0.09 after 16 iterations, higher at
    every seed (paired gain +0.23 +- 0.06), KL 2.0 nats per response, EOS share 0.79 -> 0.96."""
    from rlhfkit.train.config import SampleConfig as Samples

    return PPOConfig(
        model=model, reward=reward, value_model="head",
        data=PromptData(prompts=prompts, eval_prompts=6),
        rollout=RolloutConfig(max_new_tokens=32, temperature=0.7),
        ppo=PPOParams(prompts_per_batch=4, samples_per_prompt=2, score_baseline="group", epochs=4),
        lora=LoraConfig(enabled=True, r=16, alpha=32),
        train=TrainConfig(output_dir=output_dir, max_steps=16, micro_batch_size=4, grad_accum=2,
                          save_every=4),
        optim=OptimConfig(lr=5e-4, warmup_ratio=0.0),
        samples=Samples(prompts=0),
    )


def make_kl_controller(kl: KLConfig):
    from rlhfkit.losses import AdaptiveKLController, FixedKLController

    if kl.adaptive:
        return AdaptiveKLController(kl.coef, kl.target, kl.horizon)
    return FixedKLController(kl.coef)


# ---------------------------------------------------------------------------------------------
# Steps 3-4: rewards and advantages


def shape_rewards(exp: Any, cfg: PPOConfig, beta: float) -> tuple[Any, dict]:
    """Per-token KL-shaped rewards, GAE advantages and returns, written into ``exp``; returns
    (per-sequence KL [B], stats)."""
    import torch

    from rlhfkit.losses import (compute_gae, group_advantages, kl_penalty, masked_whiten,
                                per_token_rewards)

    real = exp.real_mask
    kl = kl_penalty(exp.logprobs, exp.ref_logprobs, cfg.kl.estimator)  # [B, T]
    eos_penalty = cfg.rollout.missing_eos_penalty if cfg.rollout.missing_eos == "penalty" else None
    scores, offset = exp.scores, 0.0
    if cfg.ppo.score_baseline == "group":
        if eos_penalty is not None:  # the EOS trick first, so the baseline compares the scores used
            scores = torch.where(exp.finished.bool(), scores, torch.full_like(scores, eos_penalty))
            eos_penalty = None
        # r_i - mean of the other samples of its prompt (Ahmadian et al. 2024's leave-one-out baseline)
        baselined, _ = group_advantages(scores, cfg.ppo.samples_per_prompt, "rloo", std_normalize=False)
        offset = float((scores - baselined).mean())  # stats below report the scores before the baseline
        scores = baselined
    rewards, stats = per_token_rewards(scores, kl, real, beta, has_eos=exp.finished,
                                       missing_eos_penalty=eos_penalty)  # Ziegler et al. 2019 eq. 2
    if cfg.ppo.whiten_rewards:
        rewards = masked_whiten(rewards, real, shift_mean=False)
    advantages, returns = compute_gae(rewards, exp.values, real, cfg.ppo.gamma, cfg.ppo.lam)
    if cfg.ppo.whiten_advantages and exp.mask.sum() >= 2:  # fewer: every response was dropped
        advantages = masked_whiten(advantages, exp.mask)
    exp.advantages = torch.where(exp.mask.bool(), advantages, torch.zeros_like(advantages))
    exp.returns = returns
    seq_kl = (kl * real).sum(1)  # [B] KL per response
    out = {"kl": float(stats["kl"]), "reward": float(stats["total"]) + offset,
           "non_score_reward": float(stats["non_score_reward"]), "score_used": float(stats["score"]) + offset}
    if cfg.ppo.score_baseline == "group":
        out["score_baseline"] = offset  # mean of what was subtracted from the scores used
    return seq_kl, out


# ---------------------------------------------------------------------------------------------
# Step 5: the loss on one micro-batch


def ppo_loss(roles: Any, exp: Any, rows: list, cfg: PPOConfig, temperature: float, policy_beta: float = 0.0):
    from rlhfkit.losses import masked_mean, policy_loss, ppo_kl_penalty_loss, value_loss
    from rlhfkit.rl.forward import token_logprobs, value_model_values

    part = exp.select(rows)
    seq = part.sequences()
    T = seq.length
    ent_mode = "grad" if cfg.ppo.entropy_coef else "stat"
    logp, entropy, values = token_logprobs(roles.policy, seq, part.response_ids, temperature,
                                           entropy=ent_mode, value_head=roles.value_head)
    if roles.value is not None:
        values = value_model_values(roles.value, seq)
    mask = part.mask[:, :T]
    if cfg.ppo.variant == "kl_penalty":
        p_loss, p_stats = ppo_kl_penalty_loss(logp, part.logprobs[:, :T], part.advantages[:, :T], mask,
                                              policy_beta)  # Schulman et al. 2017 eq. 8
    else:
        p_loss, p_stats = policy_loss(logp, part.logprobs[:, :T], part.advantages[:, :T], mask,
                                      cfg.ppo.clip_eps)  # Schulman et al. 2017 eq. 7
    v_loss, v_stats = value_loss(values, part.values[:, :T], part.returns[:, :T], mask,
                                 cfg.ppo.value_clip_eps or None)
    ent = masked_mean(entropy, mask)
    loss = p_loss + cfg.ppo.vf_coef * v_loss - cfg.ppo.entropy_coef * ent
    stats = {"policy_loss": p_stats["loss"], "value_loss": v_stats["loss"], "entropy": ent.detach(),
             "clipfrac": p_stats["clipfrac"], "approx_kl": p_stats["approx_kl"],
             "ratio": p_stats["ratio"], "vf_clipfrac": v_stats["vf_clipfrac"],
             "explained_variance": v_stats["explained_variance"]}
    if "policy_kl" in p_stats:
        stats["policy_kl"] = p_stats["policy_kl"]
    return loss, stats


# ---------------------------------------------------------------------------------------------
# The run


def run(cfg: PPOConfig, reward_fn: Any = None) -> PPOResult:
    """Run PPO. ``reward_fn(prompts, responses) -> rewards`` (a Python callable), when given, is the
    reward instead of ``cfg.reward`` (prompts are conversations, responses strings; see
    rlhfkit.rewards for the accepted return types)."""
    from rlhfkit.rl.loop import train_rl

    return train_rl(cfg, stage="ppo", value_mode=cfg.value_model, need_reference=True,
                    prompts_per_batch=cfg.ppo.prompts_per_batch,
                    samples_per_prompt=cfg.ppo.samples_per_prompt, epochs=cfg.ppo.epochs,
                    build_iteration=lambda s, opt, sched, params: ppo_iteration(cfg, s, opt, sched, params),
                    target_kl=cfg.kl.target if cfg.kl.adaptive else None, reward_fn=reward_fn)


def ppo_iteration(cfg: PPOConfig, s: Any, optimizer: Any, scheduler: Any, params: list):
    """Build ``iteration(step) -> stats`` (steps 1-5 of the module docstring) and the stateful
    objects a checkpoint must keep."""
    import torch

    from rlhfkit.losses import PolicyKLController
    from rlhfkit.rl import loop
    from rlhfkit.rl.experience import collect
    from rlhfkit.rl.update import row_weights, run_epochs

    roles, ppo, train = s.roles, cfg.ppo, cfg.train
    minibatch = train.micro_batch_size * train.grad_accum
    kl_ctl = make_kl_controller(cfg.kl)
    stateful = {"kl_controller": kl_ctl}
    policy_kl = None
    if ppo.variant == "kl_penalty":  # beta of the policy KL penalty, adapted after each update
        policy_kl = PolicyKLController(ppo.kl_penalty_beta, ppo.kl_penalty_target)
        stateful["policy_kl_controller"] = policy_kl
    temperature = cfg.rollout.temperature

    def iteration(step: int) -> dict:
        idx = loop.prompt_indices(len(s.train_prompts), step, ppo.prompts_per_batch, train.seed)
        idx = [i for i in idx for _ in range(ppo.samples_per_prompt)]  # a prompt's samples are contiguous
        scored = collect(roles=roles, engine=s.engine, reward=s.reward,
                         prompts=[s.train_prompts[i] for i in idx], prompt_ids=[s.train_ids[i] for i in idx],
                         params=loop.sampling_params(cfg.rollout, train.seed, step), shaper=s.shaper,
                         monitor=s.monitor, step=step + 1, micro=train.micro_batch_size, reference=True,
                         values=True, missing_eos=cfg.rollout.missing_eos)
        exp = scored.experience
        beta = kl_ctl.value
        seq_kl, reward_stats = shape_rewards(exp, cfg, beta)
        s.monitor.check_kl(step + 1, float(seq_kl.mean()))
        kl_ctl.update(float(seq_kl.mean()), len(exp))  # beta for the next iteration
        t0 = time.time()
        roles.train(True)
        gen = torch.Generator().manual_seed(train.seed * 7919 + step)
        upd = run_epochs(n_rows=len(exp), row_weights=row_weights(exp.mask, "token"), epochs=ppo.epochs,
                         minibatch=minibatch, micro=train.micro_batch_size, generator=gen,
                         loss_on=lambda rows: ppo_loss(roles, exp, rows, cfg, temperature,
                                                       policy_kl.value if policy_kl else 0.0),
                         optimizer=optimizer, scheduler=scheduler, params=params,
                         max_grad_norm=cfg.optim.max_grad_norm)
        if policy_kl is not None:  # Schulman et al. 2017 sec. 4: beta for the next update
            upd["policy_kl_coef"] = policy_kl.value
            policy_kl.update(upd["policy_kl"])
        roles.train(False)
        s.engine.update_weights(roles.policy)
        t_update = time.time() - t0
        total = scored.seconds_rollout + scored.seconds_scoring + t_update
        return {**scored.stats, **reward_stats, **upd, "kl_coef": beta, "time_update": t_update,
                "tokens_per_s": float(exp.real_mask.sum()) / max(1e-9, total)}

    return iteration, stateful


# ---------------------------------------------------------------------------------------------
# Report


def report(result: PPOResult) -> None:
    """Print what a person wants to see at the end of a PPO run."""
    from rlhfkit.rl.loop import print_report

    print_report(result)
