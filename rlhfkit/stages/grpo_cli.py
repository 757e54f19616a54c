"""``rlhfkit grpo`` and ``rlhfkit rloo``: group-baseline RL without a value model (imported by
rlhfkit.stages.alt_cli)."""

from __future__ import annotations


def register(sub) -> None:
    from rlhfkit.cli import add_stage

    add_stage(sub, "grpo", "rlhfkit.stages.grpo", "GRPOConfig",
              "GRPO: G samples per prompt, group-normalised advantages, KL as a loss term",
              "GRPO (Shao et al. 2024): samples grpo.group_size responses per prompt, scores them with "
              "the reward (reward-model folder, contains:WORD, regex:PATTERN, length[:N], "
              "python:module:function), advantage = (r - group mean) / group std, clipped surrogate "
              "plus beta * KL(pi || pi_ref) in the loss (kl.coef=0 loads no reference). No value model.\n"
              "Example: rlhfkit grpo model=runs/sft/final reward=contains:thanks train.max_steps=20")
    add_stage(sub, "rloo", "rlhfkit.stages.grpo", "RLOOConfig",
              "RLOO: G samples per prompt, leave-one-out baseline, KL as a reward penalty",
              "RLOO (Ahmadian et al. 2024): REINFORCE with the mean reward of the other G - 1 samples "
              "of the same prompt as the baseline; the KL to the reference is subtracted from the "
              "reward. Same rollout, logging, checkpoints and reward-hacking watch as ppo and grpo.\n"
              "Example: rlhfkit rloo model=runs/sft/final reward=runs/rm/final train.max_steps=20")
