"""The judge's prompt: shared prefix across orders, principles, few-shot files."""

import json

import pytest

from rlhfkit.data.records import DataError, Message
from rlhfkit.judge.prompts import JudgePrompt, load_few_shot, load_principles

PROMPT = (Message("user", "How do I boil an egg?"),)


def test_both_orders_share_the_text_before_the_first_response():
    p = JudgePrompt(principles=("Prefer the safer response.",))
    ab, ba = p.messages(PROMPT, "first answer", "second answer"), p.messages(PROMPT, "second answer", "first answer")
    assert ab.head == ba.head and ab.head.endswith("Response A:\n")
    assert "User: How do I boil an egg?" in ab.head and "Prefer the safer response." in ab.head
    assert ab.tail.startswith("first answer\n\nResponse B:\nsecond answer")
    assert ba.tail.startswith("second answer\n\nResponse B:\nfirst answer")
    assert ab.chat()[0]["role"] == "system" and ab.chat()[1]["content"] == ab.head + ab.tail


def test_principles_list_and_per_pair_override():
    p = JudgePrompt(principles=("Be honest.", "Be harmless."))
    head = p.messages(PROMPT, "a", "b").head
    assert "- Be honest.\n- Be harmless." in head
    head = p.messages(PROMPT, "a", "b", principle="Respect privacy.").head
    assert "Respect privacy." in head and "Be honest." not in head


def test_reasoning_changes_only_the_question():
    plain, reason = JudgePrompt(), JudgePrompt(reasoning=True)
    assert "nothing else" in plain.messages(PROMPT, "a", "b").tail
    assert "Explain your reasoning" in reason.messages(PROMPT, "a", "b").tail


def test_long_texts_are_cut_and_counted():
    p = JudgePrompt(max_chars=10)
    m = p.messages((Message("user", "0123456789ABCDEF"),), "x" * 30, "short")
    assert "...6789ABCDEF" in m.head and "x" * 10 + "..." in m.tail and p.truncated == 2


def test_principles_file_forms(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- Be honest.\n- principle: Be harmless.\n  critique: Is it harmful?\n")
    assert load_principles(f) == ("Be honest.", "Be harmless.")
    f.write_text("principles:\n  - Respect privacy.\n")
    assert load_principles(f) == ("Respect privacy.",)
    f.write_text("- Be honest.\n- 3\n")
    with pytest.raises(DataError, match=r"c.yaml:2: principles\[1\]"):
        load_principles(f)
    f.write_text("nothing: here\n")
    with pytest.raises(DataError, match="non-empty list"):
        load_principles(f)
    with pytest.raises(DataError, match="no such principles file"):
        load_principles(tmp_path / "missing.yaml")


def test_few_shot_alternates_the_chosen_side(tmp_path):
    f = tmp_path / "shots.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "reasoning": f"why {i}"}
            for i in range(3)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shots = load_few_shot(f, limit=2)
    assert [(s.response_a, s.verdict) for s in shots] == [("good 0", "A"), ("bad 1", "B")]
    head = JudgePrompt(few_shot=shots, reasoning=True).messages(PROMPT, "a", "b").head
    assert "Example 2:" in head and "why 1\nVerdict: B" in head and head.index("Example 1") < head.index("How do I")


def test_a_cut_pair_is_marked_in_its_verdict():
    from rlhfkit.judge import Judge, OrderResult

    class Half:
        name = "half"

        def judge(self, jobs):
            return [(OrderResult(0.5), OrderResult(0.5)) for _ in jobs]

    judge = Judge(Half(), JudgePrompt(max_chars=20))
    short, long_ = judge.compare_many([("q", "a", "b"), ("q", "x" * 30, "b")])
    assert "truncated" not in short.meta and long_.meta["truncated"] is True


def test_the_judge_package_imports_no_torch_and_no_httpx():
    import subprocess
    import sys

    code = ("import sys, rlhfkit.judge, rlhfkit.judge.stage, rlhfkit.judge.studio; "
            "print(','.join(m for m in ('torch', 'transformers', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
