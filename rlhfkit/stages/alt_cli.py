"""CLI commands for the direct alternatives to PPO (SPEC section 6): ``dpo``, ``bon`` and
``rejection-sampling``; ``grpo``/``rloo`` come from :mod:`rlhfkit.stages.grpo_cli` when it exists.

Imports here stay light (no torch) so ``rlhfkit --help`` stays fast.
"""

from __future__ import annotations

import importlib


def register(sub) -> None:
    from rlhfkit.cli import add_stage

    add_stage(
        sub, "dpo", "rlhfkit.stages.dpo", "DPOConfig",
        "direct preference optimisation (DPO, cDPO, IPO, SimPO, ORPO) on preference pairs",
        "DPO family: trains the policy on preference pairs through the implicit reward "
        "beta*log(pi/pi_ref); no reward model, no sampling. Pick the variant with loss=... "
        "Reference log-probs are computed once and cached in the run folder; LoRA optional "
        "(the reference is then the base with the adapter off).")
    add_stage(
        sub, "bon", "rlhfkit.stages.best_of_n", "BoNConfig",
        "best-of-N sampling: N samples per prompt, keep the best under a reward",
        "Best-of-N at inference time: samples N responses per prompt, scores them with a reward "
        "model, an ensemble or a reward function, and writes the best one per prompt with its "
        "score (JSONL), plus mean best score vs mean single-sample score. finetune=true turns it "
        "into rejection-sampling fine-tuning.")
    add_stage(
        sub, "rejection-sampling", "rlhfkit.stages.best_of_n", "RejectionSamplingConfig",
        "rejection-sampling fine-tuning (Llama 2 style): best-of-N samples become SFT data",
        "Rejection sampling: samples N responses per prompt, keeps the best under the reward "
        "(optionally only above a threshold), writes them as SFT records and fine-tunes the "
        "model on them with the SFT stage.")
    _register_optional(sub, "rlhfkit.stages.grpo_cli")


def _register_optional(sub, module: str) -> None:
    """Commands another module owns (grpo, rloo): registered when that module is present."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            return
        raise
    mod.register(sub)
