"""Every shipped DPO / best-of-N config loads with its stage's config class (no unknown keys)."""

from pathlib import Path

import pytest

from rlhfkit.config import load_config
from rlhfkit.stages.best_of_n import BoNConfig, RejectionSamplingConfig
from rlhfkit.stages.dpo import DPOConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "dpo").glob("*.yaml")), ids=lambda p: p.name)
def test_dpo_configs_load(path):
    cfg = load_config(DPOConfig, path)
    assert cfg.train.output_dir.startswith("runs/")


@pytest.mark.parametrize("path", sorted((CONFIGS / "bon").glob("*.yaml")), ids=lambda p: p.name)
def test_bon_configs_load(path):
    cls = RejectionSamplingConfig if "rejection" in path.name else BoNConfig
    cfg = load_config(cls, path)
    assert cfg.output_dir.startswith("runs/") and cfg.finetune == (cls is RejectionSamplingConfig)


def test_shipped_configs_exist():
    assert len(list((CONFIGS / "dpo").glob("*.yaml"))) >= 4
    assert len(list((CONFIGS / "bon").glob("*.yaml"))) >= 2
