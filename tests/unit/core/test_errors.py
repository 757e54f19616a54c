"""The error contract: every user-caused error is an RlhfkitError (one line, exit 2) and keeps the
builtin base its existing ``except`` sites catch."""

import pytest

from rlhfkit.errors import MissingFileError, RlhfkitError, error_line


def _classes():
    from rlhfkit.config import ConfigError
    from rlhfkit.data.records import DataError
    from rlhfkit.feedback.db import StudioDBError
    from rlhfkit.feedback.export import ExportError
    from rlhfkit.feedback.schemas import InvalidInput
    from rlhfkit.feedback.service import BadInput, Conflict, NotFound, StudioError
    from rlhfkit.feedback.tasks import InvalidSubmission
    from rlhfkit.models.loading import ModelLoadError
    from rlhfkit.rewards import RewardError

    return [(ConfigError, ValueError), (DataError, ValueError), (ModelLoadError, RuntimeError),
            (RewardError, ValueError), (ExportError, ValueError), (StudioError, Exception),
            (NotFound, Exception), (Conflict, Exception), (BadInput, Exception),
            (InvalidSubmission, ValueError), (InvalidInput, ValueError), (StudioDBError, RuntimeError),
            (MissingFileError, FileNotFoundError)]


@pytest.mark.parametrize("cls,builtin", _classes(), ids=lambda c: getattr(c, "__name__", ""))
def test_every_user_error_is_an_rlhfkit_error_and_keeps_its_builtin_base(cls, builtin):
    assert issubclass(cls, RlhfkitError) and issubclass(cls, builtin)


def test_error_line_is_one_line_naming_the_command():
    assert error_line("sft", RlhfkitError("data.train: e.jsonl: no usable SFT examples")) == \
        "rlhfkit sft: error: data.train: e.jsonl: no usable SFT examples"
    assert error_line("rm", "a\n  b") == "rlhfkit rm: error: a b"


def test_missing_data_file_is_a_missing_file_error(tmp_path):
    from rlhfkit.data.sources import resolve_data_path
    from rlhfkit.resources import demo_path

    with pytest.raises(MissingFileError, match="nope.jsonl: no such data file"):
        resolve_data_path(str(tmp_path / "nope.jsonl"))
    with pytest.raises(MissingFileError, match="available"):
        demo_path("nope.jsonl")


def test_the_cli_prints_one_line_and_exits_2_for_any_rlhfkit_error(monkeypatch, capsys):
    import rlhfkit.cli as cli
    from rlhfkit.rewards import RewardError

    def boom(cfg):
        raise RewardError("reward: nope: unknown reward spec")

    monkeypatch.setattr("rlhfkit.stages.sft.run", boom)
    assert cli.main(["sft", "model=tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rlhfkit sft: error: reward: nope: unknown reward spec"]
