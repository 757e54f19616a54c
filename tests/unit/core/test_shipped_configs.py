"""Every YAML file under configs/ loads with the config class of the command it is written for
(unknown keys or wrong types would fail here, not on a user's machine)."""

from pathlib import Path

import pytest

from rlhfkit.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def config_class(path: Path) -> type:
    """The stage config a shipped file belongs to: its folder names the stage, its name the variant."""
    folder, name = path.parent.name, path.name
    if folder == "bon":
        from rlhfkit.stages.best_of_n import BoNConfig, RejectionSamplingConfig

        return RejectionSamplingConfig if "rejection" in name else BoNConfig
    if folder == "constitution":
        from rlhfkit.stages.constitution import ConstitutionConfig

        return ConstitutionConfig
    if folder == "dpo":
        from rlhfkit.stages.dpo import DPOConfig

        return DPOConfig
    if folder == "eval":
        from rlhfkit.eval.bon_overopt import OverOptConfig
        from rlhfkit.eval.compare import EvalConfig
        from rlhfkit.eval.frontier import FrontierConfig

        return OverOptConfig if "overopt" in name else FrontierConfig if "frontier" in name else EvalConfig
    if folder == "grpo":
        from rlhfkit.stages.grpo import GRPOConfig, RLOOConfig

        return RLOOConfig if "rloo" in name else GRPOConfig
    if folder == "judge":
        from rlhfkit.judge.config import JudgeConfig

        return JudgeConfig
    if folder == "ppo":
        from rlhfkit.stages.ppo import PPOConfig

        return PPOConfig
    if folder == "rm":
        from rlhfkit.stages.reward import RewardConfig

        return RewardConfig
    if folder == "rounds":
        from rlhfkit.rounds.config import RoundsConfig

        return RoundsConfig
    if folder == "sft":
        from rlhfkit.stages.sft import SFTConfig

        return SFTConfig
    raise AssertionError(f"{path}: no stage is known for configs/{folder}/; add it to config_class")


SHIPPED = sorted(CONFIGS.glob("*/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    cfg = load_config(config_class(path), path)
    out = getattr(getattr(cfg, "train", None), "output_dir", None) or getattr(cfg, "output_dir")
    assert out.startswith("runs/"), f"{path}: output folder {out!r} should be under runs/"


def test_configs_are_found():
    assert len(SHIPPED) >= 12
