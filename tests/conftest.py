"""Shared fixtures. The model cache is the user's (RLHFKIT_HOME or ~/.cache/rlhfkit), so the
default model is de-quantised once per machine, not once per test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture()
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is several times faster
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_data():
    """The third-party data folder (../shared/data or $RLHFKIT_DATA); skips when absent."""
    from rlhfkit.paths import shared_data_dir

    path = shared_data_dir()
    if not (path / "hh-rlhf-harmless" / "train.jsonl.gz").exists():
        pytest.skip(f"shared data not found at {path} (set RLHFKIT_DATA to the folder holding "
                    "hh-rlhf-harmless/ and alpaca-seed-tasks/)")
    return path


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random Llama with the real SmolLM2 tokenizer."""
    from rlhfkit.models import load_causal_lm

    return load_causal_lm("tiny")


def run_cli(*argv: str) -> int:
    from rlhfkit.cli import main

    return main(list(argv))
