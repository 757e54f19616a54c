"""Shared optimisation machinery for the gradient stages (SFT, reward model, DPO): configs, the
loop with exact resume, checkpoints, batch-size vocabulary and memory estimates."""
