"""Losses and advantage estimators as pure functions over tensors.

Every loss returns ``(loss, stats)``: a scalar tensor with grad and a dict of detached 0-dim
tensors for logging. Shapes and the paper equations are in each docstring.
"""

from rlhfkit.losses.advantages import (
    compute_gae,
    compute_gae_reference,
    group_advantages,
    last_valid_index,
    per_token_rewards,
)
from rlhfkit.losses.dpo import (
    DPO_LOSSES,
    REFERENCE_FREE,
    DPOInputs,
    DPOParams,
    dpo_loss,
    get_dpo_loss,
    ipo_loss,
    orpo_loss,
    simpo_loss,
)
from rlhfkit.losses.ppo import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    grpo_policy_loss,
    kl_penalty,
    policy_loss,
    value_loss,
)
from rlhfkit.losses.reward import (
    bradley_terry_loss,
    listwise_loss,
    mixed_reward_loss,
    plackett_luce_loss,
    preference_bce_loss,
    score_regression_loss,
)
from rlhfkit.losses.sft import selected_token_loss
from rlhfkit.losses.utils import (
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    sequence_logprobs,
)

__all__ = [
    "AdaptiveKLController",
    "DPOInputs",
    "DPOParams",
    "DPO_LOSSES",
    "FixedKLController",
    "KL_ESTIMATORS",
    "REFERENCE_FREE",
    "bradley_terry_loss",
    "compute_gae",
    "compute_gae_reference",
    "dpo_loss",
    "entropy_from_logits",
    "get_dpo_loss",
    "group_advantages",
    "grpo_policy_loss",
    "ipo_loss",
    "kl_penalty",
    "last_valid_index",
    "listwise_loss",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "mixed_reward_loss",
    "orpo_loss",
    "per_token_rewards",
    "plackett_luce_loss",
    "policy_loss",
    "preference_bce_loss",
    "score_regression_loss",
    "sequence_logprobs",
    "selected_token_loss",
    "simpo_loss",
    "value_loss",
]
