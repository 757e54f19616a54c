"""Bad input through the CLI ends in one line ``rlhfkit <cmd>: error: ...`` and exit code 2, never a
traceback (issue 12 item 3, issue 11 item 9). Tiny model; every case stops before training."""

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line]


def expect_error(capsys, argv: list[str], message: str) -> str:
    """Run the CLI; it must exit 2 with exactly one error line, which contains ``message``."""
    assert run_cli(*argv) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and message in lines[0], lines
    return lines[0]


# (command words, the data key, what is named as missing)
EMPTY_CASES = {
    "sft": (["sft"], "data.train", "no usable SFT examples"),
    "rm train": (["rm", "train"], "data.train", "no usable training records"),
    "dpo": (["dpo"], "data.train", "no usable preference pairs"),
    "ppo": (["ppo", "reward=length"], "data.prompts", "no usable prompts"),
    "grpo": (["grpo", "reward=length"], "data.prompts", "no usable prompts"),
    "rloo": (["rloo", "reward=length"], "data.prompts", "no usable prompts"),
    "bon": (["bon", "reward=length"], "prompts", "no usable prompts"),
    "rejection-sampling": (["rejection-sampling", "reward=length"], "prompts", "no usable prompts"),
}


@pytest.mark.parametrize("stage", list(EMPTY_CASES))
def test_an_empty_training_file_is_one_line_and_exit_2(stage, tmp_path, capsys):
    words, key, problem = EMPTY_CASES[stage]
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    out_key = "output_dir" if key == "prompts" else "train.output_dir"
    line = expect_error(capsys, [*words, "model=tiny", f"{key}={empty}", f"{out_key}={tmp_path / 'run'}"],
                        f"{key}: {empty}: {problem}")
    command = "rm" if stage == "rm train" else words[0]
    assert line.startswith(f"rlhfkit {command}: error: ")


def test_ppo_prompts_all_longer_than_the_limit_name_the_limit(tmp_path, capsys):
    prompts = tmp_path / "long.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i} " + "word " * 40}) + "\n"
                               for i in range(3)))
    expect_error(capsys, ["ppo", "model=tiny", "reward=length", f"data.prompts={prompts}",
                          "data.max_prompt_length=8", f"train.output_dir={tmp_path / 'run'}"],
                 "no usable prompts (all 3 are longer than data.max_prompt_length=8 tokens)")


def test_dpo_with_only_ties_is_one_line(tmp_path, capsys):
    ties = tmp_path / "ties.jsonl"
    ties.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b", "tie": True}) + "\n")
    expect_error(capsys, ["dpo", "model=tiny", f"data.train={ties}", f"train.output_dir={tmp_path / 'run'}"],
                 "no usable preference pairs")


@pytest.mark.parametrize("value", ["0", "1", "-3"])
def test_sft_max_length_below_2_is_rejected_at_config_load(value, tmp_path, capsys):
    expect_error(capsys, ["sft", "model=tiny", f"max_length={value}", f"train.output_dir={tmp_path}"],
                 f"max_length must be >= 2 (a prompt token and a response token), got {value}")
    assert not (tmp_path / "config.yaml").exists()  # stopped before any work


def test_sft_stops_when_no_response_token_survives_truncation(tiny):
    from rlhfkit.config import ConfigError
    from rlhfkit.stages.sft import SFTConfig, SFTData, load_examples

    cfg = SFTConfig(model="tiny", max_length=1, data=SFTData(train="demo:sft", dev_fraction=0))
    with pytest.raises(ConfigError, match="max_length=1: no response token of the .* training examples"):
        load_examples(cfg, tiny[1])


def sft_file(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"answer {i}"}) + "\n" for i in range(4)))
    return path


@pytest.mark.parametrize("stage,key", [("sft", "train.output_dir"), ("bon", "output_dir")])
def test_an_output_dir_that_is_a_file_is_one_line_naming_the_key(stage, key, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = [f"data.train={sft_file(tmp_path)}"] if stage == "sft" else ["reward=length"]
    expect_error(capsys, [stage, "model=tiny", *extra, f"{key}={afile}"], f"{key}={afile}: is a file, not a folder")
    expect_error(capsys, [stage, "model=tiny", *extra, f"{key}={afile / 'sub'}"],
                 f"{key}={afile / 'sub'}: cannot write the run folder (Not a directory)")


def test_a_read_only_output_dir_is_one_line_naming_the_key(tmp_path, monkeypatch):
    import errno

    from rlhfkit.config import ConfigError
    from rlhfkit.stages import common
    from rlhfkit.stages.sft import SFTConfig

    def read_only(cfg, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("rlhfkit.config.save_config", read_only)
    cfg = SFTConfig(model="tiny")
    with pytest.raises(ConfigError, match=r"^train.output_dir=.*ro: cannot write the run folder "
                                          r"\(Read-only file system\)$"):
        common.prepare_output(cfg, str(tmp_path / "ro"))


SHORT = ["model=tiny", "train.max_steps=1", "samples.prompts=0", "train.progress=false"]


def test_an_empty_dev_file_warns_in_sft_and_dpo(tmp_path, caplog):
    empty = tmp_path / "dev.jsonl"
    empty.write_text("")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}) + "\n"
                             for i in range(2)))
    assert run_cli("sft", *SHORT, f"data.train={sft_file(tmp_path)}", f"data.dev={empty}",
                   f"train.output_dir={tmp_path / 'sft'}") == 0
    assert f"data.dev: {empty}: no usable dev examples" in caplog.text
    assert run_cli("dpo", *SHORT, f"data.train={pairs}", f"data.dev={empty}",
                   f"train.output_dir={tmp_path / 'dpo'}") == 0
    assert f"data.dev: {empty}: no usable dev pairs" in caplog.text


def test_rerunning_a_finished_sft_run_logs_its_eval_once(tmp_path):
    data = sft_file(tmp_path)
    args = ["sft", *SHORT, f"data.train={data}", f"data.dev={data}", f"train.output_dir={tmp_path / 'run'}"]
    assert run_cli(*args) == 0
    assert run_cli(*args) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval/loss" in r) for r in rows] == [(1, False), (1, True)]


@pytest.mark.parametrize("override,message", [
    ("data.eval_samples=0", "data: eval_samples must be >= 1, got 0"),
    ("data.max_prompt_length=0", "data: max_prompt_length must be >= 1, got 0"),
])
def test_rl_prompt_settings_are_checked_at_config_load(override, message, tmp_path, capsys):
    expect_error(capsys, ["ppo", "model=tiny", "reward=length", override, f"train.output_dir={tmp_path}"], message)
    assert not (tmp_path / "config.yaml").exists()


def test_a_lora_run_with_another_reference_is_one_line(tmp_path, capsys):
    expect_error(capsys, ["grpo", "model=tiny", "reward=length", "lora.enabled=true", "reference=default",
                          f"train.output_dir={tmp_path}"],
                 "reference: with lora.enabled the reference is the base model 'tiny'")


def test_a_resume_folder_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "notckpt").mkdir()
    expect_error(capsys, ["sft", *SHORT, f"data.train={sft_file(tmp_path)}", f"train.resume={tmp_path / 'notckpt'}",
                          f"train.output_dir={tmp_path / 'run'}"], "training_state.pt")


def test_rejection_sampling_that_keeps_nothing_is_one_line(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n{"prompt": "yo"}\n')
    expect_error(capsys, ["rejection-sampling", "model=tiny", "reward=length", f"prompts={prompts}", "sampling.n=2",
                          "sampling.max_new_tokens=4", "sampling.only_finished=false", "threshold=1e9",
                          f"output_dir={tmp_path / 'run'}"],
                 f"prompts: {prompts}: no usable responses to fine-tune on (no response was kept")
