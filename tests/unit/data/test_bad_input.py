"""Malformed files give one DataError naming ``file:line: field`` (issue 11 item 9): non-UTF-8 text,
broken JSON, damaged Parquet, absurd numbers."""

import json

import pytest

from rlhfkit.data.readers import read_records, write_records
from rlhfkit.data.records import DataError


def test_non_utf8_names_the_line_in_jsonl_and_json(tmp_path):
    good = json.dumps({"prompt": "q", "response": "r"})
    (tmp_path / "a.jsonl").write_bytes(f"{good}\n{good}\n".encode() + b'{"prompt": "q", "response": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"^a.jsonl:3: file: not UTF-8 text \(byte 33 of the line"):
        read_records(tmp_path / "a.jsonl", "sft")
    (tmp_path / "b.json").write_bytes(b'[\n{"prompt": "q",\n "response": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"^b.json:3: file: not UTF-8 text \(byte 18 of the line"):
        read_records(tmp_path / "b.json", "sft")


def test_a_utf8_bom_is_still_accepted(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "q", "response": "r"}).encode())
    assert len(read_records(tmp_path / "bom.jsonl", "sft")) == 1


@pytest.mark.parametrize("name,text,message", [
    ("u.jsonl", '{"prompt": "q", "response": "r', "u.jsonl:1: json: invalid JSON (Unterminated string "
                                                  "starting at column 29)"),
    ("u.json", '[{"prompt": "q",\n "response": "r}]', "u.json:2: json: invalid JSON (Unterminated string "
                                                      "starting at column 14)"),
    ("v.json", '[{"prompt": "q",\n "response": }]', "v.json:2: json: invalid JSON (Expecting value at column 14)"),
])
def test_json_errors_read_once_with_the_column(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError) as err:
        read_records(tmp_path / name, "sft")
    assert str(err.value) == message and " at at " not in str(err.value)


def test_over_long_integers_and_deep_nesting_are_invalid_json_not_a_crash(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"prompt": "q", "response": "r", "score": ' + "9" * 5000 + "}\n" + "[" * 100000 + "\n")
    result = read_records(path, "scores", on_error="skip")
    assert result.dropped == {"invalid JSON": 2}


def test_a_truncated_parquet_file_is_a_data_error(tmp_path):
    full = write_records(tmp_path / "full.parquet", [{"prompt": f"q{i}", "response": "r"} for i in range(20)])
    data = full.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"^cut.parquet: file: not a readable Parquet file"):
        read_records(tmp_path / "cut.parquet", "sft")


@pytest.mark.parametrize("kind,record,message", [
    ("scores", {"prompt": "q", "response": "r", "score": 1e300}, "s.jsonl:1: score: 1e+300 is out of range"),
    ("scores", {"prompt": "q", "response": "r", "score": -2e6}, "s.jsonl:1: score: -2e+06 is out of range"),
    ("scores", {"prompt": "q", "response": "r", "score": 10 ** 30},
     "s.jsonl:1: score: an integer of 31 digits is out of range"),
    ("pairs", {"prompt": "q", "chosen": "a", "rejected": "b", "margin": 1e300},
     "s.jsonl:1: margin: 1e+300 is out of range"),
])
def test_absurd_scores_and_margins_are_rejected_at_load(tmp_path, kind, record, message):
    (tmp_path / "s.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match="^" + message.replace("+", r"\+")):
        read_records(tmp_path / "s.jsonl", kind)


def test_large_but_plausible_scores_still_load(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"prompt": "q", "response": "r", "score": 1e6}) + "\n")
    assert read_records(tmp_path / "s.jsonl", "scores").records[0].score == 1e6


def test_a_folder_that_is_not_a_dataset_is_a_data_error(tmp_path):
    (tmp_path / "notds").mkdir()
    with pytest.raises(DataError, match=r"^notds: folder: not a readable Hugging Face dataset folder"):
        read_records(tmp_path / "notds", "sft")
