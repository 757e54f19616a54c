"""The packaged demo data set loads cleanly; the shared third-party data loads with known totals."""

from collections import Counter

import pytest

from rlhfkit.data.readers import alpaca_seed_sft, read_records
from rlhfkit.data.records import Message, ranking_to_pairs
from rlhfkit.paths import shared_data_dir
from rlhfkit.resources import DEMO_FILES, demo_path

KIND = {"sft.jsonl": "sft", "pairs.jsonl": "pairs", "prompts.jsonl": "prompts", "rankings.jsonl": "rankings",
        "scores.jsonl": "scores", "language.jsonl": "language",
        "steps.jsonl": "steps"}
COUNT = {"sft.jsonl": 40, "pairs.jsonl": 40, "prompts.jsonl": 30, "rankings.jsonl": 5, "scores.jsonl": 10,
         "language.jsonl": 10, "steps.jsonl": 60}


@pytest.mark.parametrize("name", DEMO_FILES)
def test_demo_files_load_cleanly(name):
    result = read_records(demo_path(name), KIND[name])
    assert len(result.records) == COUNT[name] and not result.dropped, result.report()


def test_demo_path_rejects_unknown_names():
    with pytest.raises(FileNotFoundError, match="available: sft.jsonl"):
        demo_path("nope.jsonl")
    with pytest.raises(FileNotFoundError):
        demo_path("../__init__.py")


def test_demo_sft_mixes_plain_and_chat_and_answers_are_short():
    sft = read_records(demo_path("sft.jsonl"), "sft").records
    assert sum(len(ex.prompt) > 1 for ex in sft) >= 8  # chat form, some with system or earlier turns
    assert any(ex.prompt[0].role == "system" for ex in sft)
    pairs = read_records(demo_path("pairs.jsonl"), "pairs").records
    for text in [ex.response for ex in sft] + [p.chosen for p in pairs]:
        assert len(text) <= 300, text


def test_demo_pairs_vary_failure_kinds():
    pairs = read_records(demo_path("pairs.jsonl"), "pairs").records
    assert Counter(p.meta["failure"] for p in pairs) == Counter(
        {"rude": 10, "off-topic": 10, "evasive": 10, "rambling": 10})
    assert all(p.label == 1.0 and p.chosen != p.rejected for p in pairs)


def test_demo_rl_prompts_are_distinct_from_training_prompts():
    rl = set(read_records(demo_path("prompts.jsonl"), "prompts").records)
    seen = {ex.prompt for ex in read_records(demo_path("sft.jsonl"), "sft").records}
    seen |= {p.prompt for p in read_records(demo_path("pairs.jsonl"), "pairs").records}
    assert len(rl) == 30 and not rl & seen
    assert all(conv[-1].role == "user" for conv in rl)


def test_ranking_to_pairs_gives_k_choose_2():
    rankings = read_records(demo_path("rankings.jsonl"), "rankings").records
    for r in rankings:
        k = len(r.ranking)
        pairs = ranking_to_pairs(r)
        assert len(pairs) == k * (k - 1) // 2
        assert len({(p.chosen, p.rejected) for p in pairs}) == len(pairs)
    first = ranking_to_pairs(rankings[0])  # ranking [0, 1, 2, 3]: response 0 beats all three others
    assert [p.chosen for p in first[:3]] == [rankings[0].responses[0]] * 3
    assert first[-1].chosen == rankings[0].responses[2] and first[-1].rejected == rankings[0].responses[3]
    assert [len(ranking_to_pairs(r)) for r in rankings] == [6, 3, 3, 6, 1]


# ---- shared third-party data (beside the repository, never copied into it) --------------------------

HH = shared_data_dir() / "hh-rlhf-harmless"
ALPACA = shared_data_dir() / "alpaca-seed-tasks" / "seed_tasks.jsonl"
needs_hh = pytest.mark.skipif(not (HH / "train.jsonl.gz").exists(),
                              reason=f"shared HH-RLHF data not found at {HH} (set RLHFKIT_DATA)")


@needs_hh
def test_hh_harmless_train_totals():
    result = read_records(HH / "train.jsonl.gz", "pairs")
    assert (result.read, len(result.records)) == (1512, 1505)
    assert result.dropped == Counter({"differ before the last turn": 5, "empty response": 2})
    assert all(p.prompt[-1].role == "user" and p.chosen and p.rejected for p in result.records)
    assert all(p.prompt[0].role == "user" for p in result.records)


@needs_hh
def test_hh_harmless_dev_totals_and_prompts():
    result = read_records(HH / "dev.jsonl.gz", "pairs")
    assert (result.read, len(result.records), result.dropped) == (300, 300, Counter())
    prompts = read_records(HH / "dev.jsonl.gz", "prompts").records
    assert prompts == [p.prompt for p in result.records]


@pytest.mark.skipif(not ALPACA.exists(), reason=f"shared Alpaca seed tasks not found at {ALPACA} (set RLHFKIT_DATA)")
def test_alpaca_seed_tasks():
    examples = alpaca_seed_sft(ALPACA)
    assert len(examples) == 175
    with_input = [ex for ex in examples if "\n\n" in ex.prompt[0].content]
    assert with_input and all(ex.response.strip() for ex in examples)
    assert examples[0].meta["id"] == "seed_task_0" and examples[0].source == "seed_tasks.jsonl:1"
    assert all(ex.prompt == (Message("user", ex.prompt[0].content),) for ex in examples)
