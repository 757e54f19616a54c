"""GRPO and RLOO: RL without a value model, baselines from a group of samples (SPEC section 6).

One iteration, top to bottom:

  1. rollout   G responses per prompt (the fast engine prefills each prompt once), keeping the
               sampler's log-probs                                           rlhfkit.rl.experience
  2. score     reward per response (+ hacking penalties, normalisation, clipping; a fixed score for
               responses without EOS when missing_eos=penalty); reference log-probs when KL is on
  3. advantage group-relative, one number per response (rlhfkit.losses.group_advantages):
                 grpo (Shao et al. 2024):      A_i = (r_i - mean_g) / (std_g + eps)
                 rloo (Ahmadian et al. 2024):  A_i = r_i - mean of the other G - 1 rewards
               or per token, reinforce_pp (Hu 2025): returns of r_t = -beta KL_t (+ score at the
               end), normalised over the batch (rlhfkit.losses.reinforce_pp_advantages);
               KL as a reward penalty (kl.mode=reward): r_i <- r_i - beta * sum_t KL_t first;
               with rollout.missing_eos=drop a response without EOS gets no loss but still
               counts in its group's baseline; grpo.dynamic_sampling drops groups whose scores
               are all equal (DAPO)
  4. update    clipped surrogate per token, plus beta * KL_t (k3) as a loss term when
               kl.mode=loss; grpo.loss picks the variant (rlhfkit.losses.GROUP_LOSSES: grpo,
               dr_grpo, dapo, gspo); epochs x shuffled minibatches, lr -> 0

Rollout, scoring, the update loop, checkpoints and the final save are the same code as PPO
(rlhfkit.rl), only the advantages and the loss differ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from rlhfkit.config import opt
from rlhfkit.rl.config import RLStageConfig, RolloutConfig, validate_rl_train
from rlhfkit.rl.loop import RLResult as GRPOResult  # model_dir, steps, before/after, samples, ...
from rlhfkit.train.config import OptimConfig, TrainConfig


@dataclass
class GroupParams:
    method: Literal["grpo", "rloo", "reinforce_pp"] = opt(
        "grpo", "advantage: grpo (group mean, / std), rloo (leave-one-out mean) or reinforce_pp "
                "(REINFORCE++, Hu 2025: no group baseline, the token KL in the reward, returns "
                "normalised over the whole batch; needs kl.mode=reward, allows group_size 1)")
    group_size: int = opt(4, "G: responses sampled per prompt")
    prompts_per_batch: int = opt(16, "prompts per rollout batch (x group_size responses)")
    epochs: int = opt(1, "passes over each rollout batch (1 = on-policy: ratio 1, the clip is inactive)")
    loss: Literal["grpo", "dr_grpo", "dapo", "gspo"] = opt(
        "grpo", "policy loss (rlhfkit.losses.policy_variants): grpo (Shao et al. 2024); dr_grpo (Liu et al. "
                "2025: token sums over rollout.max_new_tokens, no std division unless std_normalize=true); "
                "dapo (Yu et al. 2025: clip-higher, token mean); gspo (Zheng et al. 2025: one length-"
                "normalised ratio per response; the paper clips at clip_eps=0.0003 clip_eps_high=0.0004)")
    clip_eps: float = opt(
        0.2, "policy ratio clip epsilon (the lower bound 1 - clip_eps when clip_eps_high is set)")
    clip_eps_high: float = opt(
        0.0, "upper clip 1 + clip_eps_high (0 = the loss's default: clip_eps; 0.28 dapo, 0.0004 gspo)")
    dynamic_sampling: bool = opt(
        False, "DAPO's filter: leave out of the update the groups whose scores are all equal (no "
               "advantage, only a smaller batch); the batch is not refilled")
    std_normalize: bool | None = opt(
        None, "divide advantages by the group std (default: true for grpo, false for rloo and loss=dr_grpo)")
    reduction: Literal["sequence", "token"] = opt(
        "sequence", "loss=grpo averaging: per response then over responses (GRPO paper) or over all tokens")

    def validate(self) -> None:
        least = 1 if self.method == "reinforce_pp" else 2
        if self.group_size < least or (self.dynamic_sampling and self.group_size < 2):
            raise ValueError("group_size must be >= 2 (a group baseline needs company)")
        if self.prompts_per_batch < 1 or self.epochs < 1:
            raise ValueError("prompts_per_batch and epochs must be >= 1")
        if self.clip_eps <= 0 or self.clip_eps_high < 0:
            raise ValueError("clip_eps must be > 0 and clip_eps_high >= 0")


@dataclass
class GroupKL:
    coef: float = opt(0.04, "beta: KL coefficient (0 = no reference model is loaded at all)")
    mode: Literal["loss", "reward"] = opt("loss", "KL as a loss term (GRPO) or as a penalty on the reward (RLOO)")
    estimator: Literal["k1", "k2", "k3"] = opt("k3", "per-token KL estimator (k3 for the loss term, Shao et al. 2024)")

    def validate(self) -> None:
        if self.coef < 0:
            raise ValueError("coef must be >= 0")


@dataclass
class GRPOConfig(RLStageConfig):
    rollout: RolloutConfig = opt(factory=lambda: RolloutConfig(temperature=1.0), help="")
    grpo: GroupParams = opt(factory=GroupParams, help="")
    kl: GroupKL = opt(factory=GroupKL, help="")
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        output_dir="runs/grpo", max_steps=20, micro_batch_size=8, grad_accum=2, save_every=10), help="")
    optim: OptimConfig = opt(factory=lambda: OptimConfig(lr=1e-5, warmup_ratio=0.0), help="")

    def validate(self) -> None:
        validate_rl_train(self.train, self.grpo.prompts_per_batch * self.grpo.group_size)
        if self.grpo.method == "reinforce_pp" and self.kl.mode != "reward":
            raise ValueError("grpo.method=reinforce_pp puts the token KL in the reward: set kl.mode=reward")


@dataclass
class RLOOConfig(GRPOConfig):
    """RLOO defaults: leave-one-out baseline, no std division, KL as a reward penalty (k1)."""

    grpo: GroupParams = opt(factory=lambda: GroupParams(method="rloo"), help="")
    kl: GroupKL = opt(factory=lambda: GroupKL(coef=0.05, mode="reward", estimator="k1"), help="")
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        output_dir="runs/rloo", max_steps=20, micro_batch_size=8, grad_accum=2, save_every=10), help="")


# ---------------------------------------------------------------------------------------------
# Step 3: group-relative advantages


def group_relative(exp: Any, cfg: GRPOConfig) -> tuple[Any, dict]:
    """Scores -> advantages written into ``exp`` as [B, T] (one per response for grpo/rloo, per
    token for reinforce_pp); returns (per-response KL [B] or None, stats)."""
    import torch

    from rlhfkit.losses import dapo_keep_groups, group_advantages, kl_penalty, reinforce_pp_advantages

    g = cfg.grpo
    scores = exp.scores.clone()
    if cfg.rollout.missing_eos == "penalty":  # the EOS trick, as in PPO
        scores = torch.where(exp.finished.bool(), scores, torch.full_like(scores, cfg.rollout.missing_eos_penalty))
    stats: dict = {}
    if g.dynamic_sampling:  # DAPO (Yu et al. 2025): groups with one score for all carry no signal
        keep = dapo_keep_groups(scores, g.group_size)  # [N]
        exp.mask = exp.mask * keep.repeat_interleave(g.group_size).to(exp.mask.dtype).unsqueeze(1)
        stats["dynamic_kept_frac"] = float(keep.float().mean())
    seq_kl, token_kl = None, torch.zeros_like(exp.real_mask)
    if exp.ref_logprobs is not None:
        k1 = kl_penalty(exp.logprobs, exp.ref_logprobs, "k1")
        seq_kl = (k1 * exp.real_mask).sum(1)  # [B] logged in the same units as PPO
        stats["kl"] = float(seq_kl.mean())
        if cfg.kl.mode == "reward":
            token_kl = kl_penalty(exp.logprobs, exp.ref_logprobs, cfg.kl.estimator) * exp.real_mask
    stats["reward"] = float((scores - cfg.kl.coef * token_kl.sum(1)).mean())
    if g.method == "reinforce_pp":  # Hu 2025: token KL in the reward, batch-normalised returns
        adv, _ = reinforce_pp_advantages(scores, token_kl, exp.real_mask, cfg.kl.coef,
                                         keep=exp.mask.bool().any(dim=1))
        exp.advantages = adv * exp.mask
        return seq_kl, stats
    std = g.std_normalize
    if std is None and g.loss == "dr_grpo":
        std = False  # Liu et al. 2025: no division by the group std
    adv, g_stats = group_advantages(scores - cfg.kl.coef * token_kl.sum(1), g.group_size, g.method, std)
    exp.advantages = adv.unsqueeze(1) * exp.mask  # [B] -> [B, T], 0 on padding
    stats.update({"group_reward_std": float(g_stats["reward_std"]),
                  "zero_std_frac": float(g_stats["zero_std_frac"])})
    return seq_kl, stats


# ---------------------------------------------------------------------------------------------
# Step 4: the loss on one micro-batch


def grpo_loss(roles: Any, exp: Any, rows: list, cfg: GRPOConfig, temperature: float):
    from rlhfkit.losses import GROUP_LOSSES, GroupLossParams, masked_mean
    from rlhfkit.rl.forward import token_logprobs

    part = exp.select(rows)
    seq = part.sequences()
    T = seq.length
    logp, entropy, _ = token_logprobs(roles.policy, seq, part.response_ids, temperature, entropy="stat")
    mask = part.mask[:, :T]
    in_loss = cfg.kl.mode == "loss" and cfg.kl.coef > 0
    params = GroupLossParams(clip_low=cfg.grpo.clip_eps, clip_high=cfg.grpo.clip_eps_high or None,
                             beta=cfg.kl.coef if in_loss else 0.0, kl_estimator=cfg.kl.estimator,
                             reduction=cfg.grpo.reduction, max_len=cfg.rollout.max_new_tokens)
    loss, stats = GROUP_LOSSES[cfg.grpo.loss].fn(  # Shao et al. 2024 eq. 3, or a variant
        logp, part.logprobs[:, :T], part.ref_logprobs[:, :T] if in_loss else None,
        part.advantages[:, :T], mask, params)
    out = {k: stats[k] for k in ("policy_loss", "loss", "clipfrac", "clipfrac_low", "clipfrac_high",
                                 "approx_kl", "ratio") if k in stats}
    out["entropy"] = masked_mean(entropy, mask)
    if in_loss:
        out["kl_term"] = stats["kl"]
    return loss, out


# ---------------------------------------------------------------------------------------------
# The run


def run(cfg: GRPOConfig, reward_fn: Any = None) -> GRPOResult:
    """Run GRPO or RLOO (``cfg.grpo.method``); ``reward_fn`` as in :func:`rlhfkit.stages.ppo.run`."""
    from rlhfkit.rl.loop import train_rl

    name = cfg.grpo.method
    return train_rl(cfg, stage=name, value_mode="none", need_reference=cfg.kl.coef > 0,
                    prompts_per_batch=cfg.grpo.prompts_per_batch, samples_per_prompt=cfg.grpo.group_size,
                    epochs=cfg.grpo.epochs, build_iteration=lambda s, opt, sched, params:
                    grpo_iteration(cfg, s, opt, sched, params), reward_fn=reward_fn)


def grpo_iteration(cfg: GRPOConfig, s: Any, optimizer: Any, scheduler: Any, params: list):
    """Build ``iteration(step) -> stats`` (steps 1-4 of the module docstring)."""
    import torch

    from rlhfkit.losses import GROUP_LOSSES
    from rlhfkit.rl import loop
    from rlhfkit.rl.experience import collect
    from rlhfkit.rl.update import row_weights, run_epochs

    roles, g, train = s.roles, cfg.grpo, cfg.train
    minibatch = train.micro_batch_size * train.grad_accum
    temperature = cfg.rollout.temperature

    def iteration(step: int) -> dict:
        idx = loop.prompt_indices(len(s.train_prompts), step, g.prompts_per_batch, train.seed)
        idx = [i for i in idx for _ in range(g.group_size)]  # the G samples of a prompt are contiguous
        scored = collect(roles=roles, engine=s.engine, reward=s.reward,
                         prompts=[s.train_prompts[i] for i in idx], prompt_ids=[s.train_ids[i] for i in idx],
                         params=loop.sampling_params(cfg.rollout, train.seed, step), shaper=s.shaper,
                         monitor=s.monitor, step=step + 1, micro=train.micro_batch_size,
                         reference=roles.has_reference, values=False, missing_eos=cfg.rollout.missing_eos)
        exp = scored.experience
        seq_kl, adv_stats = group_relative(exp, cfg)
        if seq_kl is not None:
            s.monitor.check_kl(step + 1, float(seq_kl.mean()))
        t0 = time.time()
        roles.train(True)
        gen = torch.Generator().manual_seed(train.seed * 7919 + step)
        weighting = GROUP_LOSSES[g.loss].reduction or g.reduction  # as the loss averages
        upd = run_epochs(n_rows=len(exp), row_weights=row_weights(exp.mask, weighting), epochs=g.epochs,
                         minibatch=minibatch, micro=train.micro_batch_size, generator=gen,
                         loss_on=lambda rows: grpo_loss(roles, exp, rows, cfg, temperature),
                         optimizer=optimizer, scheduler=scheduler, params=params,
                         max_grad_norm=cfg.optim.max_grad_norm)
        roles.train(False)
        s.engine.update_weights(roles.policy)
        t_update = time.time() - t0
        total = scored.seconds_rollout + scored.seconds_scoring + t_update
        return {**scored.stats, **adv_stats, **upd, "kl_coef": cfg.kl.coef, "time_update": t_update,
                "tokens_per_s": float(exp.real_mask.sum()) / max(1e-9, total)}

    return iteration, {}


def report(result: GRPOResult) -> None:
    """Print what a person wants to see at the end of a GRPO/RLOO run."""
    from rlhfkit.rl.loop import print_report

    print_report(result)
