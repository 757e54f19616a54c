"""The four RL roles and how they share weights (SPEC sections 5 and 7).

    policy      pi_theta, trainable: the SFT model, or a LoRA adapter over it
    reference   pi_ref, frozen: a copy of the SFT model, or (LoRA) the same module with the adapter
                switched off (``with policy.disable_adapter()``): no second copy of the weights
    reward      frozen: a :class:`rlhfkit.rewards.RewardSource` (reward model, ensemble, rule, function)
    value       V, trainable, one scalar per token. ``value_model``:
                  reward  a copy of the reward model (backbone + its scalar head): the usual choice
                  policy  a sequence-classification model built from the policy's weights, head at 0
                  head    a zero-initialised linear head on the policy's own backbone: one forward
                          pass gives logits and values (cheapest; the value loss also shapes the
                          policy's backbone)
With LoRA on, a separate value model is a LoRA adapter (plus its trainable head) too.

Each role is a small object with a forward method, so a Ray actor could host one unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlhfkit.run import say

ValueMode = Literal["reward", "policy", "head"]
VALUE_HEAD_FILE = "value_head.safetensors"


def _zero_head(hidden: int):
    import torch

    head = torch.nn.Linear(hidden, 1, bias=True)
    torch.nn.init.zeros_(head.weight)  # value head at zero (Huang et al. 2024)
    torch.nn.init.zeros_(head.bias)
    return head


def _freeze(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class Roles:
    """The models of one RL run. ``reference is None`` means LoRA mode: the reference is the
    policy with its adapter disabled. ``value`` is a separate sequence-classification model (or None);
    ``value_head`` a head on the policy's backbone (or None). Neither for GRPO/RLOO."""

    policy: Any
    tokenizer: Any
    reference: Any = None
    value: Any = None
    value_head: Any = None
    lora: bool = False
    value_mode: str = "none"

    @property
    def has_reference(self) -> bool:
        return self.reference is not None or self.lora

    @contextlib.contextmanager
    def reference_model(self):
        """The module that computes reference log-probs (LoRA: the policy with its adapter off)."""
        if self.reference is not None:
            yield self.reference
        elif self.lora:
            from rlhfkit.models.lora import adapter_disabled

            with adapter_disabled(self.policy):
                yield self.policy
        else:
            raise RuntimeError("this run loaded no reference model (KL coefficient 0)")

    def trainable_parameters(self) -> list:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value is not None:
            params += [p for p in self.value.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    def train(self, mode: bool = True) -> None:
        for m in (self.policy, self.value, self.value_head):
            if m is not None:
                m.train(mode)

    # -- saving and loading --------------------------------------------------------------------

    def save_policy(self, folder: Path) -> None:
        from rlhfkit.train.checkpoint import save_hf_folder

        save_hf_folder(self.policy, self.tokenizer, folder)

    def save_value(self, folder: Path) -> None:
        """A HF sequence-classification folder (separate value model) or the head's weights."""
        from rlhfkit.train.checkpoint import save_hf_folder

        if self.value is not None:
            save_hf_folder(self.value, self.tokenizer, folder)
        elif self.value_head is not None:
            from safetensors.torch import save_file

            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().contiguous() for k, v in self.value_head.state_dict().items()},
                      str(folder / VALUE_HEAD_FILE))
            (folder / "value_head.json").write_text(json.dumps(
                {"kind": "linear value head on the policy's last hidden state",
                 "hidden_size": self.value_head.in_features}) + "\n")

    def save(self, folder: Path) -> None:
        """Checkpoint layout: ``policy/`` and ``value/`` (when there is a value function)."""
        self.save_policy(folder / "policy")
        if self.value is not None or self.value_head is not None:
            self.save_value(folder / "value")

    def load(self, folder: Path) -> None:
        from rlhfkit.train.checkpoint import load_weights_into

        load_weights_into(self.policy, folder / "policy")
        if self.value is not None:
            load_weights_into(self.value, folder / "value")
        elif self.value_head is not None:
            from safetensors.torch import load_file

            self.value_head.load_state_dict(load_file(str(folder / "value" / VALUE_HEAD_FILE)))


def build_roles(*, model: str, reference: str, reward: Any, value_mode: str, lora: Any, dtype: str,
                device: str, need_reference: bool = True) -> Roles:
    """Load policy, reference and value roles. ``value_mode`` is reward | policy | head | none
    (none for GRPO/RLOO). ``reward`` is the loaded RewardSource (its model seeds the value model).
    ``need_reference=False`` (no KL term at all) skips loading a separate reference copy."""
    from rlhfkit.models.loading import load_causal_lm
    from rlhfkit.models.lora import apply_lora

    policy, tokenizer = load_causal_lm(model, dtype=dtype, device=device)
    ref_model = None
    if lora.enabled:
        if reference and reference != model:
            from rlhfkit.config import ConfigError

            raise ConfigError(f"reference: with lora.enabled the reference is the base model '{model}' "
                             f"with the adapter off; got a different reference '{reference}'")
        policy = apply_lora(policy, lora, "CAUSAL_LM")
    elif need_reference:
        ref_model, _ = load_causal_lm(reference or model, dtype=dtype, device=device)
        _freeze(ref_model)
    roles = Roles(policy=policy, tokenizer=tokenizer, reference=ref_model, lora=lora.enabled)
    if value_mode == "reward" and _reward_backbone(reward) is None:
        say("value_model=reward but the reward is not a reward model; initialising the value model "
            "from the policy instead")
        value_mode = "policy"
    roles.value_mode = value_mode
    if value_mode == "head":
        hidden = policy.config.hidden_size
        roles.value_head = _zero_head(hidden).to(device=device, dtype=next(policy.parameters()).dtype)
    elif value_mode in ("reward", "policy"):
        value = (_value_from_reward(reward) if value_mode == "reward"
                 else _value_from_policy(model, dtype))
        value.config.pad_token_id = tokenizer.pad_token_id
        value.to(device)
        if lora.enabled:
            value = apply_lora(value, lora, "SEQ_CLS")
        roles.value = value
    return roles


def _reward_backbone(reward: Any) -> Any:
    """The HF sequence-classification module of a reward model (first member of an ensemble)."""
    rm = getattr(reward, "model", None)
    if rm is None:
        return None
    hf = getattr(rm, "model", None)
    if hf is None and getattr(rm, "members", None):
        hf = getattr(rm.members[0], "model", None)
    if hf is None or not hasattr(hf, "score"):
        return None
    return hf


def _value_from_reward(reward: Any) -> Any:
    from rlhfkit.models.loading import disable_dropout

    value = copy.deepcopy(_reward_backbone(reward))
    for p in value.parameters():
        p.requires_grad_(True)
    value.train()
    disable_dropout(value)
    return value


def _value_from_policy(model: str, dtype: str) -> Any:
    """A sequence-classification model (1 label) from the policy's folder, head zeroed."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from rlhfkit.models.loading import disable_dropout, resolve_model_path, torch_dtype

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialised" is intended here
    try:
        value = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(model), num_labels=1, dtype=torch_dtype(dtype))
    finally:
        hf_logging.set_verbosity(level)
    with torch.no_grad():
        value.score.weight.zero_()
        if getattr(value.score, "bias", None) is not None:
            value.score.bias.zero_()
    disable_dropout(value)
    return value
