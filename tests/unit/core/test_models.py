import pytest

from rlhfkit.models.loading import ModelLoadError, load_causal_lm, resolve_model_path


def test_tiny_model_shares_the_default_tokenizer(tiny):
    model, tok = tiny
    assert model.config.num_hidden_layers == 2
    assert tok.pad_token_id != tok.eos_token_id  # a dedicated PAD, distinct from EOS
    assert tok.eos_token == "<|im_end|>"
    assert model.config.vocab_size == len(tok)
    assert tok.chat_template


def test_aliases_resolve_to_cached_hf_folders():
    from pathlib import Path

    for name in ("default", "smollm2-135m-instruct", "tiny"):
        folder = Path(resolve_model_path(name))
        assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert resolve_model_path("default") == resolve_model_path("SmolLM2-135M-Instruct")


def test_a_local_folder_loads_and_a_non_model_folder_is_named(tmp_path):
    model, _ = load_causal_lm(resolve_model_path("tiny"))
    assert model.config.hidden_size == 64
    with pytest.raises(ModelLoadError, match="not a Hugging Face model folder"):
        resolve_model_path(str(tmp_path))


def test_offline_hub_name_fails_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_causal_lm("nobody-here/no-such-model-xyz")
    assert "no network access" in str(err.value) and "\n" not in str(err.value)


def test_dropout_is_disabled_even_when_the_checkpoint_sets_it(tmp_path):
    """A checkpoint whose config says attention_dropout=0.1: the attention modules copy that value at
    construction, so zeroing the config alone leaves dropout on. In train mode two forwards of the
    same batch must agree exactly."""
    import json
    import shutil

    import torch

    folder = tmp_path / "tiny-dropout"
    shutil.copytree(resolve_model_path("tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.1}))
    model, _ = load_causal_lm(str(folder))
    model.train()
    ids = torch.arange(3, 19).reshape(2, 8)
    with torch.no_grad():
        first, second = model(ids).logits, model(ids).logits
    assert torch.equal(first, second)
