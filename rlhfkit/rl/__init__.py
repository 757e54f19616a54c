"""Pieces shared by the RL stages (PPO, GRPO, RLOO), used by rlhfkit/stages/ppo.py and grpo.py.

    config.py      config groups: prompts, rollout, score shaping, samples; the batch vocabulary
    roles.py       policy / reference / value roles and their weight sharing (LoRA, value head)
    forward.py     prompt+response layout, per-token log-probs, entropies and values
    experience.py  sample -> score -> reference/value forwards: the Experience container
    update.py      epochs x shuffled minibatches x micro-batches, clipping, scheduler
    loop.py        set-up, iteration loop with exact resume, checkpoints, evaluation, final save
"""
