"""models/lora.py: the one LoRA component. The adapter-off context gives the base model's outputs;
save_merged writes a plain HF folder equal to base + adapter, the adapter beside it, and leaves the
trained model a peft model."""

import copy

import pytest
import torch

from rlhfkit.models.lora import ADAPTER_DIR, adapter_disabled, apply_lora, save_merged
from rlhfkit.train.config import LoraConfig

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = torch.tensor([[1, 9690, 198, 400, 401, 2]])


def _trained_adapter(base):
    model = apply_lora(copy.deepcopy(base), LoraConfig(enabled=True, r=4, alpha=8))
    with torch.no_grad():  # LoRA B starts at zero: make the adapter change the outputs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_adapter_disabled_is_the_base_and_a_no_op_on_plain_models(tiny):
    base, _ = tiny
    model = _trained_adapter(base)
    with torch.no_grad():
        expected = base(IDS).logits
        with adapter_disabled(model):
            off = model(IDS).logits
        on = model(IDS).logits
        with adapter_disabled(base):  # a plain model: used as it is
            plain = base(IDS).logits
    assert torch.allclose(off, expected, atol=1e-5)
    assert not torch.allclose(on, expected, atol=1e-3)
    assert torch.equal(plain, expected)
    assert all("lora" in n for n, p in model.named_parameters() if p.requires_grad)


def test_save_merged_writes_merged_model_and_adapter(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    base, tok = tiny
    model = _trained_adapter(base)
    with torch.no_grad():
        expected = model(IDS).logits
    extra = []
    folder = save_merged(model, tok, tmp_path / "final", extra=lambda tmp: extra.append(tmp.name))
    assert (folder / ADAPTER_DIR / "adapter_model.safetensors").exists()
    assert (folder / "tokenizer_config.json").exists() and extra and extra[0] != "final"  # atomic
    merged = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        assert torch.allclose(merged(IDS).logits, expected, atol=1e-4)
    assert hasattr(model, "disable_adapter")  # still a peft model after saving
