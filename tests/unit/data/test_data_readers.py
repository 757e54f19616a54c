"""Readers: every kind through every file type, validation messages, drop counting."""

import dataclasses
import gzip
import json
from collections import Counter

import pytest

from rlhfkit.data.readers import ReadResult, read_many, read_records, write_records
from rlhfkit.data.records import (
    BinaryFeedback,
    DataError,
    LanguageFeedback,
    Message,
    PreferencePair,
    Ranking,
    ScoreFeedback,
    SFTExample,
    StepFeedback,
    record_to_json,
)

U = (Message("user", "What is 2 + 2?"),)
CHAT = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
        Message("user", "Name a colour."))

SAMPLES = {
    "sft": [SFTExample(U, "4."), SFTExample(U, "Four.", meta={"id": "b"})],
    "pairs": [PreferencePair(U, "4.", "Go away."), PreferencePair(U, "Four.", "5", margin=2.0, label=0.8),
              PreferencePair(U, "It is 4.", "4!", label=0.5)],
    "rankings": [Ranking(U, ("4", "four", "5"), (0, 1, 2)), Ranking(U, ("a", "b", "c", "d"), (3, 0))],
    "scores": [ScoreFeedback(U, "4.", 7.0), ScoreFeedback(U, "5.", 1.5, meta={"rater": "r1"})],
    "language": [LanguageFeedback(U, "5.", "Wrong: it is 4."), LanguageFeedback(U, "4.", "Correct.")],
    "binary": [BinaryFeedback(U, "4.", True), BinaryFeedback(U, "5.", False, meta={"rater": "r1"})],
    "steps": [StepFeedback(U, ("2 + 2 = 4", "The answer is 4."), (1, 0)),
              StepFeedback(U, ("2 + 2 = 5", "5 * 1 = 5", "The answer is 5."), (-1, -1, -1))],
    "prompts": [U, (Message("user", "Another question?"),)],
}
SUFFIXES = [".jsonl", ".jsonl.gz", ".json", ".parquet"]


def unsourced(records):
    return [r if isinstance(r, tuple) else dataclasses.replace(r, source="") for r in records]


def same_columns(rows):
    """Arrow (datasets.Dataset.from_list) takes its columns from the first row: give every row all keys."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k) for k in keys} for row in rows]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip_every_kind_and_file_type(tmp_path, kind, suffix):
    path = write_records(tmp_path / f"data{suffix}", SAMPLES[kind])
    result = read_records(path, kind)
    assert unsourced(result.records) == SAMPLES[kind]
    assert result.dropped == Counter() and result.read == len(SAMPLES[kind])
    if kind != "prompts":
        assert result.records[1].source == f"data{suffix}:2"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_chat_prompts(tmp_path, suffix):
    records = [SFTExample(CHAT, "Blue."), SFTExample(CHAT[1:], "Green.")]
    assert unsourced(read_records(write_records(tmp_path / f"c{suffix}", records), "sft").records) == records


def test_jsonl_gz_is_really_gzipped(tmp_path):
    path = write_records(tmp_path / "p.jsonl.gz", SAMPLES["pairs"])
    with gzip.open(path, "rt") as f:
        assert json.loads(f.readline()) == record_to_json(SAMPLES["pairs"][0])


def test_hf_dataset_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [record_to_json(r) for r in SAMPLES["scores"]]
    rows[0]["meta"] = {"rater": "r0"}  # an Arrow struct column needs the same keys in every row
    datasets.Dataset.from_list(same_columns(rows)).save_to_disk(str(tmp_path / "single"))
    single = read_records(tmp_path / "single", "scores")
    assert [r.score for r in single.records] == [7.0, 1.5]
    assert single.records[0].meta == {"rater": "r0"} and single.records[1].source == "single:2"

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(same_columns([record_to_json(r) for r in SAMPLES["pairs"]])),
        "test": datasets.Dataset.from_list([record_to_json(SAMPLES["pairs"][0])]),
    })
    dd.save_to_disk(str(tmp_path / "dd"))
    assert unsourced(read_records(tmp_path / "dd", "pairs").records) == SAMPLES["pairs"]
    test = read_records(tmp_path / "dd", "pairs", split="test")
    assert unsourced(test.records) == SAMPLES["pairs"][:1] and test.records[0].source == "dd[test]:1"
    with pytest.raises(DataError, match=r"^dd: split: no split 'dev' \(has: train, test\)"):
        read_records(tmp_path / "dd", "pairs", split="dev")
    with pytest.raises(DataError, match="single dataset, not splits"):
        read_records(tmp_path / "single", "scores", split="train")


def test_sft_chat_messages_form(tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}]
    path = write_lines(tmp_path / "s.jsonl", [json.dumps({"messages": msgs, "id": 7})])
    (ex,) = read_records(path, "sft").records
    assert ex.prompt == (Message("system", "Be brief."), Message("user", "Hi"))
    assert ex.response == "Hello!" and ex.meta == {"id": 7}  # unknown keys move into meta


def test_pairs_given_as_message_lists(tmp_path):
    user = {"role": "user", "content": "Hi"}
    full = {"chosen": [user, {"role": "assistant", "content": "Hello!"}],
            "rejected": [user, {"role": "assistant", "content": "What."}]}
    with_prompt = {"prompt": "Hi", "chosen": [{"role": "assistant", "content": "Hello!"}],
                   "rejected": [user, {"role": "assistant", "content": "What."}]}
    early = {"chosen": [user, {"role": "assistant", "content": "A"}],
             "rejected": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "B"}]}
    path = write_lines(tmp_path / "m.jsonl", [json.dumps(o) for o in (full, with_prompt, early)])
    result = read_records(path, "pairs")
    expected = PreferencePair((Message("user", "Hi"),), "Hello!", "What.")
    assert unsourced(result.records) == [expected, expected]
    assert result.dropped == Counter({"differ before the last turn": 1})


def test_hh_transcripts_and_report(tmp_path):
    base = "\n\nHuman: Can you help me?\n\nAssistant: "
    rows = [
        {"chosen": base + "Sure, what do you need?", "rejected": base + "No."},
        {"chosen": base + "Same answer.", "rejected": base + "Same answer."},
        {"chosen": base + "Yes.\n\nHuman: ok\n\nAssistant: a", "rejected": base + "No.\n\nHuman: ok\n\nAssistant: b"},
        {"chosen": base + "Okay!", "rejected": base + "Okay."},
        {"chosen": base + "Fine.", "rejected": base + "Fine!", "tie": True},
    ]
    path = write_records(tmp_path / "hh.jsonl.gz", rows)
    result = read_records(path, "pairs")
    assert [(p.chosen, p.rejected, p.label) for p in result.records] == [
        ("Sure, what do you need?", "No.", 1.0), ("Okay!", "Okay.", 1.0), ("Fine.", "Fine!", 0.5)]
    assert result.records[0].prompt == (Message("user", "Can you help me?"),)
    assert result.report() == ("hh.jsonl.gz: 5 records read, 3 kept, 2 dropped "
                               "(differ before the last turn: 1, identical responses: 1)")
    prompts = read_records(path, "prompts")  # one shared prompt, the rest are duplicates
    assert prompts.records == [(Message("user", "Can you help me?"),)]
    assert prompts.dropped == Counter({"duplicate prompt": 3, "differ before the last turn": 1})


def test_explicit_pairs_identical_responses_dropped(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        json.dumps({"prompt": "q", "chosen": "Same", "rejected": " Same\n"}),
        json.dumps({"prompt": "q", "chosen": "Same", "rejected": "Same."}),
    ])
    result = read_records(path, "pairs")
    assert len(result) == 1 and result.dropped == Counter({"identical responses": 1})


BAD = [
    ("pairs", '{"prompt": "q", "chosen": "a", "rejected": "b"', "json: invalid JSON"),
    ("pairs", '{"prompt": "q", "chosen": "a"}', "rejected: missing"),
    ("pairs", '{"prompt": "q", "chosen": 3, "rejected": "b"}',
     "chosen: expected a string or a list of messages, got a number"),
    ("pairs", '{"prompt": "q", "chosen": "a", "rejected": "b", "label": 1.5}',
     "label: expected a probability in [0, 1], got 1.5"),
    ("pairs", '{"prompt": "q", "chosen": "a", "rejected": "b", "tie": "yes"}', "tie: expected true or false"),
    ("pairs", '{"prompt": "q", "chosen": "a", "rejected": "b", "tie": true, "label": 0.9}', "tie: true, but label"),
    ("pairs", '{"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}', "margin: expected a number"),
    ("pairs", '{"chosen": "a", "rejected": "b"}', "prompt: missing (and chosen is not an HH dialogue)"),
    ("sft", '{"prompt": "q", "response": ""}', "response: empty string"),
    ("sft", '{"prompt": "q", "response": "   "}', "response: empty string"),
    ("sft", '{"prompt": [], "response": "r"}', "prompt: expected a non-empty string or list of messages"),
    ("sft", '{"prompt": [{"role": "bot", "content": "x"}], "response": "r"}', "prompt[0].role: expected one of"),
    ("sft", '{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "response": "r"}',
     "prompt: must end with a user turn, ends with 'assistant'"),
    ("sft", '{"prompt": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, '
            '{"role": "user", "content": "b"}], "response": "r"}',
     "prompt[1].role: a system message may only come first"),
    ("sft", '{"messages": [{"role": "user", "content": "a"}]}', "messages: must end with an assistant message"),
    ("sft", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "response": "c"}',
     "messages: give either messages or prompt/response"),
    ("sft", '["prompt", "response"]', "record: expected a JSON object, got a list"),
    ("sft", '{"prompt": "q", "response": "r", "id": 1, "meta": {"id": 2}}', "id: also present in meta"),
    ("sft", '{"prompt": "q", "response": "r", "meta": "x"}', "meta: expected an object"),
    ("rankings", '{"prompt": "q", "responses": ["a", "b"], "ranking": [0, 2]}',
     "ranking[1]: index 2 out of range 0..1"),
    ("rankings", '{"prompt": "q", "responses": ["a", "b", "c"], "ranking": [1, 1]}',
     "ranking: index 1 appears more than once"),
    ("rankings", '{"prompt": "q", "responses": ["a", "b"], "ranking": [true, 0]}',
     "ranking[0]: expected an integer index"),
    ("rankings", '{"prompt": "q", "responses": ["a"], "ranking": [0]}', "responses: expected a list of at least 2"),
    ("rankings", '{"prompt": "q", "responses": ["a", "b"], "ranking": [1]}', "ranking: expected a list of at least 2"),
    ("scores", '{"prompt": "q", "response": "r", "score": "7"}', "score: expected a number, got a string"),
    ("scores", '{"prompt": "q", "response": "r", "score": NaN}', "score: expected a finite number, got nan"),
    ("language", '{"prompt": "q", "response": "r"}', "feedback: missing"),
    ("prompts", '{"text": "q"}', "prompt: missing"),
    ("binary", '{"prompt": "q", "response": "r", "label": 1}', "label: expected true or false, got a number"),
    ("binary", '{"prompt": "q", "response": "r", "label": "true"}', "label: expected true or false, got a string"),
    ("binary", '{"prompt": "q", "response": "r"}', "label: missing"),
    ("binary", '{"prompt": "q", "response": "", "label": true}', "response: empty string"),
    ("steps", '{"prompt": "q", "steps": ["a", "b"], "step_labels": [1]}', "step_labels: 1 labels for 2 steps"),
    ("steps", '{"prompt": "q", "steps": ["a"], "step_labels": [2]}',
     "step_labels[0]: expected 1 (good), 0 (neutral) or -1 (bad), got 2"),
    ("steps", '{"prompt": "q", "steps": ["a"], "step_labels": [true]}', "step_labels[0]: expected 1 (good)"),
    ("steps", '{"prompt": "q", "steps": ["a"], "step_labels": [1.0]}', "step_labels[0]: expected 1 (good)"),
    ("steps", '{"prompt": "q", "steps": ["a", " "], "step_labels": [1, 1]}', "steps[1]: empty string"),
    ("steps", '{"prompt": "q", "steps": [], "step_labels": []}', "steps: expected a list of 1..100 step texts"),
    ("steps", '{"prompt": "q", "steps": "a", "step_labels": [1]}', "steps: expected a list"),
    ("steps", '{"prompt": "q", "steps": ["a"], "step_labels": "1"}', "step_labels: expected a list of 1, 0 or -1"),
]


@pytest.mark.parametrize("kind, line, message", BAD)
def test_bad_records_name_file_line_and_field(tmp_path, kind, line, message):
    good = {"pairs": '{"prompt": "q", "chosen": "a", "rejected": "b"}', "sft": '{"prompt": "q", "response": "r"}',
            "rankings": '{"prompt": "q", "responses": ["a", "b"], "ranking": [1, 0]}',
            "scores": '{"prompt": "q", "response": "r", "score": 1}',
            "language": '{"prompt": "q", "response": "r", "feedback": "f"}', "prompts": '{"prompt": "q"}',
            "binary": '{"prompt": "q", "response": "r", "label": false}',
            "steps": '{"prompt": "q", "steps": ["a", "b"], "step_labels": [1, -1]}'}[kind]
    other = good.replace('"q"', '"q2"')
    path = write_lines(tmp_path / "bad.jsonl", [good, "", line, other])  # the bad record is on line 3
    with pytest.raises(DataError) as err:
        read_records(path, kind)
    assert str(err.value).startswith(f"bad.jsonl:3: {message}")
    skipped = read_records(path, kind, on_error="skip")
    assert len(skipped.records) == 2 and skipped.read == 3 and sum(skipped.dropped.values()) == 1
    (reason,) = skipped.dropped
    assert reason == ("invalid JSON" if message.startswith("json") else f"{err.value.field}: {err.value.problem}")


def test_null_means_absent(tmp_path):
    path = write_lines(tmp_path / "n.jsonl", ['{"prompt": "q", "chosen": "a", "rejected": "b", "margin": null}',
                                              '{"prompt": "q", "chosen": null, "rejected": "b"}'])
    with pytest.raises(DataError, match="n.jsonl:2: chosen: missing"):
        read_records(path, "pairs")
    assert read_records(path, "pairs", limit=1).records[0].margin is None


def test_bad_json_list_and_file_types(tmp_path):
    (tmp_path / "obj.json").write_text('{"prompt": "q"}')
    with pytest.raises(DataError, match="^obj.json: json: expected a list of records"):
        read_records(tmp_path / "obj.json", "prompts")
    (tmp_path / "broken.json").write_text('[{"prompt": "q"},\n {"prompt": }]')
    with pytest.raises(DataError, match="^broken.json:2: json: invalid JSON"):
        read_records(tmp_path / "broken.json", "prompts")
    (tmp_path / "x.csv").write_text("prompt\nq\n")
    with pytest.raises(DataError, match="^x.csv: file: unsupported file type"):
        read_records(tmp_path / "x.csv", "prompts")
    write_records(tmp_path / "p.jsonl", SAMPLES["prompts"])
    with pytest.raises(DataError, match="^p.jsonl: split: only a dataset folder has splits"):
        read_records(tmp_path / "p.jsonl", "prompts", split="train")
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl", "prompts")
    with pytest.raises(ValueError, match="unknown record kind 'pair'"):
        read_records(tmp_path / "p.jsonl", "pair")
    with pytest.raises(ValueError, match="on_error"):
        read_records(tmp_path / "p.jsonl", "prompts", on_error="ignore")


def test_prompts_from_other_kinds(tmp_path):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rows = [{"messages": chat}, {"messages": chat[:1]}, {"prompt": "Q2", "response": "r"},
            {"prompt": "Q3", "responses": ["a", "b"], "ranking": [0, 1]}]
    result = read_records(write_records(tmp_path / "mixed.jsonl", rows), "prompts")
    assert result.records == [(Message("user", "Hi"),), (Message("user", "Q2"),), (Message("user", "Q3"),)]
    assert result.dropped == Counter({"duplicate prompt": 1})


def test_limit_and_read_many(tmp_path):
    a = write_records(tmp_path / "a.jsonl", SAMPLES["pairs"])
    b = write_records(tmp_path / "b.jsonl.gz", SAMPLES["pairs"][:2] + [{"prompt": "q", "chosen": "x", "rejected": "x"}])
    limited = read_records(a, "pairs", limit=2)
    assert len(limited) == 2 and limited.read == 2
    both = read_many([a, b], "pairs")
    assert isinstance(both, ReadResult) and len(both) == 5 and both.read == 6
    assert both.source == "a.jsonl, b.jsonl.gz" and both.dropped == Counter({"identical responses": 1})
    assert [r.source for r in both.records][2:4] == ["a.jsonl:3", "b.jsonl.gz:1"]
    assert len(read_many([a, b], "pairs", limit=4)) == 4
    prompts = read_many([a, b], "prompts")
    assert prompts.records == [U, (Message("user", "q"),)]
    assert prompts.dropped == Counter({"duplicate prompt": 4})
    with pytest.raises(ValueError, match="limit"):
        read_records(a, "pairs", limit=-1)


def test_record_to_json_reads_back_equal(tmp_path):
    records = [PreferencePair(CHAT, "Blue.", "No.", margin=0.5, label=0.7, meta={"annotator": "a1"})]
    lines = [json.dumps(record_to_json(r)) for r in records]
    (back,) = read_records(write_lines(tmp_path / "r.jsonl", lines), "pairs").records
    assert dataclasses.replace(back, source="") == records[0] and back.source == "r.jsonl:1"


def test_report_without_drops():
    result = ReadResult(records=[1, 2], source="x.jsonl", read=2)
    assert result.report() == "x.jsonl: 2 records read, 2 kept, 0 dropped"


def test_write_records_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        write_records(path, [{"prompt": object()}])
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_alpaca_seed_sft_one_example_per_instance(tmp_path):
    from rlhfkit.data.readers import alpaca_seed_sft

    task = {"id": "t0", "name": "sum", "instruction": "Add the numbers.",
            "instances": [{"input": "2 and 3", "output": "5"}, {"input": "", "output": "Give me numbers."}]}
    path = write_lines(tmp_path / "seed.jsonl", [json.dumps(task)])
    a, b = alpaca_seed_sft(path)
    assert a.prompt == (Message("user", "Add the numbers.\n\n2 and 3"),) and a.response == "5"
    assert b.prompt == (Message("user", "Add the numbers."),) and b.response == "Give me numbers."
    assert a.meta == {"id": "t0", "name": "sum"} and a.source == "seed.jsonl:1"
    task["instances"][1]["output"] = ""
    write_lines(path, [json.dumps(task)])
    with pytest.raises(DataError, match=r"^seed.jsonl:1: instances\[1\].output: empty string"):
        alpaca_seed_sft(path)
