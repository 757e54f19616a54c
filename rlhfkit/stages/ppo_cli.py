"""``rlhfkit ppo``: RL fine-tuning with PPO against a reward model or a reward function."""

from __future__ import annotations


def register(sub) -> None:
    from rlhfkit.cli import add_stage

    add_stage(sub, "ppo", "rlhfkit.stages.ppo", "PPOConfig",
              "RL fine-tuning with PPO (policy, reference, reward, value)",
              "PPO (SPEC section 5): sample responses from the policy, score them with the reward "
              "(reward-model folder, contains:WORD, regex:PATTERN, length[:N], python:module:function), "
              "shape per-token rewards with a KL penalty to the reference, GAE advantages, clipped "
              "policy and value updates. Logs every step to metrics.jsonl, watches for reward "
              "hacking, checkpoints and resumes exactly.\n"
              "Example: rlhfkit ppo model=runs/sft/final reward=runs/rm/final train.max_steps=50")
