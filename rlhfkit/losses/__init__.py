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
    reinforce_pp_advantages,
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
    PolicyKLController,
    grpo_policy_loss,
    kl_penalty,
    policy_loss,
    ppo_kl_penalty_loss,
    value_loss,
)
from rlhfkit.losses.kto import kto_loss, kto_reference_point, mismatched_pairs
from rlhfkit.losses.policy_variants import (
    GROUP_LOSSES,
    GroupLossParams,
    dapo_keep_groups,
    dapo_policy_loss,
    dr_grpo_policy_loss,
    gspo_policy_loss,
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
    "GROUP_LOSSES",
    "GroupLossParams",
    "KL_ESTIMATORS",
    "PolicyKLController",
    "REFERENCE_FREE",
    "bradley_terry_loss",
    "compute_gae",
    "compute_gae_reference",
    "dapo_keep_groups",
    "dapo_policy_loss",
    "dpo_loss",
    "dr_grpo_policy_loss",
    "entropy_from_logits",
    "get_dpo_loss",
    "group_advantages",
    "grpo_policy_loss",
    "gspo_policy_loss",
    "ipo_loss",
    "kl_penalty",
    "kto_loss",
    "kto_reference_point",
    "last_valid_index",
    "listwise_loss",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "mismatched_pairs",
    "mixed_reward_loss",
    "orpo_loss",
    "per_token_rewards",
    "plackett_luce_loss",
    "policy_loss",
    "ppo_kl_penalty_loss",
    "preference_bce_loss",
    "reinforce_pp_advantages",
    "score_regression_loss",
    "selected_token_loss",
    "sequence_logprobs",
    "simpo_loss",
    "value_loss",
]
