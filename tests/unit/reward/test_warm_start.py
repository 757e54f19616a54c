"""A reward stage started from an ensemble folder: member i continues member i (rlhfkit rounds)."""

import json

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.stages.reward import member_start


def test_member_i_starts_from_member_i(tmp_path):
    (tmp_path / "rlhfkit_ensemble.json").write_text(json.dumps({"members": ["member-0", "member-1"]}))
    assert member_start(str(tmp_path), 1) == str(tmp_path / "member-1")
    assert member_start("tiny", 3) == "tiny"  # not an ensemble: every member starts from it
    with pytest.raises(ConfigError, match="an ensemble of 2 members"):
        member_start(str(tmp_path), 2)
