"""Data fingerprints (rlhfkit.data.fingerprint): a hash of the records read, not of the bytes, so
only a change to the training data refuses a resume."""

import os

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.data.fingerprint import begin_run, check_unchanged, snapshot
from rlhfkit.data.sources import load

A = '{"prompt": "a", "response": "b"}\n'
C = '{"prompt": "c", "response": "d"}\n'


def read(path, limit=None):
    begin_run()
    load(str(path), "sft", limit=limit)
    return snapshot()


def test_the_fingerprint_holds_size_mtime_and_a_hash_of_the_records_read(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(A + C)
    (row,) = read(path)
    assert row["path"] == str(path.resolve()) and row["size"] == len(A + C) and row["records"] == 2
    assert row["mtime_ns"] == os.stat(path).st_mtime_ns and len(row["sha256"]) == 64


@pytest.mark.parametrize("new_text, limit, refused", [
    (A + C, None, False),  # touched only
    ("\n" + A + "\n" + C, None, False),  # blank lines: the records are the same
    (A + C + A, 2, False),  # appended past the limit: not read
    (A + '{"prompt": "c", "response": "D"}\n', None, True),  # a record edited in place
    (A, None, True),  # a record removed
])
def test_only_a_change_to_the_records_read_is_refused(tmp_path, new_text, limit, refused):
    path = tmp_path / "t.jsonl"
    path.write_text(A + C)
    saved = read(path, limit)
    path.write_text(new_text)
    os.utime(path, ns=(1, 1))
    read(path, limit)
    if refused:
        with pytest.raises(ConfigError, match=r"t\.jsonl: this data file changed since checkpoint ck"):
            check_unchanged(saved, "ck")
    else:
        check_unchanged(saved, "ck")


def test_files_this_run_has_not_read_are_not_compared(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(A)
    saved = read(path)
    begin_run()
    check_unchanged(saved, "ck")
