"""Model loading (HF folders, hub names, the embedded default, a tiny test model) and heads."""

from rlhfkit.models.loading import (  # noqa: F401
    ModelLoadError,
    load_causal_lm,
    load_tokenizer,
    resolve_model_path,
)
