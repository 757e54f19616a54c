"""The four roles: LoRA reference == the base model with the adapter off (no second copy), value
model initialisation (from the reward model, from the policy, or a head), save/load round trips."""

import pytest
import torch

from rlhfkit.rewards import load_reward
from rlhfkit.rl.forward import build_sequences, token_logprobs, value_model_values
from rlhfkit.rl.roles import build_roles
from rlhfkit.train.config import LoraConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def _seq():
    prompt_ids = torch.tensor([[0, 1, 9690, 198], [1, 9690, 198, 2683]])
    prompt_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    response_ids = torch.tensor([[400, 401, 2], [500, 2, 0]])
    response_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return build_sequences(prompt_ids, prompt_mask, response_ids, response_mask), response_ids


def _roles(value_mode="head", lora=False, reward=None, need_reference=True):
    return build_roles(model="tiny", reference="", reward=reward or load_reward("length"),
                       value_mode=value_mode, lora=LoraConfig(enabled=lora, r=4), dtype="float32",
                       device="cpu", need_reference=need_reference)


def test_lora_reference_is_the_base_with_the_adapter_off(tiny):
    base, _ = tiny
    roles = _roles(lora=True)
    assert roles.reference is None and roles.has_reference  # no second copy of the weights
    with torch.no_grad():  # make the adapter do something (LoRA B starts at zero)
        for name, p in roles.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    seq, resp = _seq()
    with torch.no_grad():
        policy, _, _ = token_logprobs(roles.policy, seq, resp, 1.0)
        with roles.reference_model() as ref:
            reference, _, _ = token_logprobs(ref, seq, resp, 1.0)
        expected, _, _ = token_logprobs(base, seq, resp, 1.0)
        again, _, _ = token_logprobs(roles.policy, seq, resp, 1.0)
    assert torch.allclose(reference, expected, atol=1e-5)
    assert not torch.allclose(policy, expected, atol=1e-3)
    assert torch.equal(policy, again)  # the adapter is back on after the context
    trainable = [n for n, p in roles.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)


def test_full_mode_reference_is_a_frozen_copy():
    roles = _roles()
    assert roles.reference is not None
    assert all(not p.requires_grad for p in roles.reference.parameters())
    ref_ids = {id(p) for p in roles.reference.parameters()}
    assert not ref_ids & {id(p) for p in roles.policy.parameters()}


def test_no_reference_when_not_needed():
    roles = _roles(need_reference=False)
    assert not roles.has_reference
    with pytest.raises(RuntimeError, match="no reference"):
        with roles.reference_model():
            pass


def test_value_head_starts_at_zero_and_round_trips(tmp_path):
    roles = _roles("head")
    seq, resp = _seq()
    _, _, values = token_logprobs(roles.policy, seq, resp, 1.0, value_head=roles.value_head)
    assert torch.equal(values, torch.zeros_like(values))
    with torch.no_grad():
        roles.value_head.weight.normal_()
        roles.value_head.bias.fill_(0.3)
    roles.save(tmp_path / "ckpt")
    other = _roles("head")
    other.load(tmp_path / "ckpt")
    assert torch.equal(other.value_head.weight, roles.value_head.weight)
    assert float(other.value_head.bias.detach()) == pytest.approx(0.3)


def test_value_from_policy_has_the_policy_backbone_and_a_zero_head():
    roles = _roles("policy")
    assert roles.value_mode == "policy" and roles.value_head is None
    v_state = roles.value.state_dict()
    p_state = roles.policy.state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(v_state[key], p_state[key])
    assert torch.count_nonzero(roles.value.score.weight) == 0
    seq, _ = _seq()
    assert torch.equal(value_model_values(roles.value, seq), torch.zeros(2, 3))


def test_value_from_reward_model_is_an_independent_copy(tmp_path):
    from rlhfkit.models.reward import RewardModel, init_reward_model

    model, tok = init_reward_model("tiny", seed=1)
    RewardModel(model, tok).save(tmp_path / "rm")
    reward = load_reward(str(tmp_path / "rm"))
    roles = _roles("reward", reward=reward)
    assert roles.value_mode == "reward"
    rm_module = reward.model.model
    assert torch.equal(roles.value.score.weight, rm_module.score.weight)
    assert all(p.requires_grad for p in roles.value.parameters())
    with torch.no_grad():
        roles.value.score.weight.add_(1.0)
    assert not torch.equal(roles.value.score.weight, rm_module.score.weight)  # the RM is untouched


def test_rule_reward_falls_back_to_a_value_model_from_the_policy():
    roles = _roles("reward", reward=load_reward("contains:yes"))
    assert roles.value_mode == "policy" and roles.value is not None


def test_lora_value_model_and_checkpoint_round_trip(tmp_path):
    roles = _roles("policy", lora=True)
    trainable = [n for n, p in roles.value.named_parameters() if p.requires_grad]
    assert any("lora" in n for n in trainable) and any("score" in n for n in trainable)
    with torch.no_grad():
        for name, p in roles.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    roles.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "policy" / "adapter_model.safetensors").exists()
    other = _roles("policy", lora=True)
    other.load(tmp_path / "ckpt")
    seq, resp = _seq()
    with torch.no_grad():
        a, _, _ = token_logprobs(roles.policy, seq, resp, 1.0)
        b, _, _ = token_logprobs(other.policy, seq, resp, 1.0)
    assert torch.allclose(a, b, atol=1e-6)
