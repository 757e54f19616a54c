"""The main job through the CLI on the tiny model: every stage runs and hands its model on."""

import pytest

from tests.conftest import run_cli

SMALL = ["model=tiny", "show_prompts=1", "max_new_tokens=4", "sft.train.max_steps=2",
         "sft.train.progress=false"]


@pytest.mark.parametrize("method, extra", [
    ("ppo", ["rm.train.max_steps=2", "rm.freeze_layers=0", "ppo.train.max_steps=2",
             "ppo.ppo.prompts_per_batch=4", "ppo.train.micro_batch_size=2", "ppo.rollout.max_new_tokens=8",
             "ppo.data.eval_prompts=2"]),
    ("dpo", ["dpo.train.max_steps=2", "dpo.train.progress=false"]),
])
def test_pipeline_runs_each_method(tmp_path, capsys, method, extra):
    out = tmp_path / method
    assert run_cli("pipeline", *SMALL, *extra, f"method={method}", f"output_dir={out}") == 0
    printed = capsys.readouterr().out
    assert "== pipeline finished ==" in printed and "before:" in printed and "after:" in printed
    assert (out / "sft" / "final" / "config.json").exists()
    assert (out / method / "final" / "config.json").exists()
    if method == "ppo":
        assert (out / "rm" / "final").exists()
        assert f"final model: {out / 'ppo' / 'final'}" in printed
