"""The constitution file (shipped default, one-line errors), the seeded principle draw, and the
critique/revision prompts."""

import pytest

from rlhfkit.data.records import DataError, Message
from rlhfkit.judge.constitution import (
    REVISION_SUFFIX,
    clean_revision,
    critique_messages,
    load_constitution,
    revision_messages,
)
from rlhfkit.judge.prompts import Principle, load_principles

GOOD = """\
principles:
  - name: honest
    principle: Choose the more honest response.
    critique: What in your answer is false?
    revision: Rewrite it truthfully.
  - name: harmless
    principle: Choose the less harmful response.
    critique: What in your answer is harmful?
    revision: Rewrite it harmlessly.
"""


def write(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return f


def test_shipped_constitution_holds_the_five_principles_and_more():
    c = load_constitution("default")
    assert {"helpful", "honest", "harmless", "no-stereotypes", "privacy"} <= set(c.names())
    assert len(c) > 5 and len(set(c.names())) == len(c)
    assert all(p.principle and p.critique and p.revision for p in c.principles)
    assert load_constitution("").source == c.source
    # the same file serves as the judge's principles_file: its comparison wordings
    assert load_principles(c.source) == tuple(p.principle for p in c.principles)


def test_a_valid_file(tmp_path):
    c = load_constitution(write(tmp_path, GOOD))
    assert c.principles == (
        Principle("honest", "Choose the more honest response.", "What in your answer is false?",
                  "Rewrite it truthfully."),
        Principle("harmless", "Choose the less harmful response.", "What in your answer is harmful?",
                  "Rewrite it harmlessly."))


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("    critique: What in your answer is harmful?\n", ""),
     r"c.yaml:6: principles\[1\].critique: expected a non-empty string"),
    (GOOD.replace("critique: What in your answer is false?", "critque: x"),
     r"c.yaml:2: principles\[0\].critque: unknown key"),
    (GOOD.replace("name: harmless", "name: honest"),
     r"c.yaml:6: principles\[1\].name: 'honest' is already the name of principles\[0\]"),
    (GOOD.replace("revision: Rewrite it truthfully.", "revision: ''"),
     r"c.yaml:2: principles\[0\].revision: expected a non-empty string"),
    ("principles:\n  - Be kind.\n", r"c.yaml:2: principles\[0\]: expected a mapping with name"),
    ("principles: []\n", "principles: expected a non-empty list"),
    ("principles:\n  - name: [unclosed\n", r"c.yaml:3: yaml: "),
])
def test_bad_files_fail_in_one_line_naming_file_line_and_key(tmp_path, text, message):
    with pytest.raises(DataError, match=message) as err:
        load_constitution(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such principles file"):
        load_constitution(tmp_path / "none.yaml")


def test_principle_draw_is_seeded_uniform_and_streams_are_independent():
    c = load_constitution()
    draw = c.draw(50, 3, seed=7, stream="revise")
    assert len(draw) == 50 and all(len(d) == 3 for d in draw)
    assert draw == c.draw(50, 3, seed=7, stream="revise")
    names = [[p.name for p in d] for d in draw]
    assert names != [[p.name for p in d] for d in c.draw(50, 3, seed=8, stream="revise")]
    assert names != [[p.name for p in d] for d in c.draw(50, 3, seed=7, stream="rl")]
    assert {n for d in names for n in d} == set(c.names())  # 150 draws reach all 9 principles


def test_critique_and_revision_prompts():
    p = Principle("honest", "Choose the more honest response.", "What is false?", "Rewrite it truthfully.")
    prompt = (Message("system", "Be brief."), Message("user", "Is the moon made of cheese?"))
    critique = critique_messages(prompt, "Yes, of cheddar.", p)
    assert critique == prompt + (Message("assistant", "Yes, of cheddar."), Message("user", "What is false?"))
    revision = revision_messages(prompt, "Yes, of cheddar.", p, "Cheese is wrong.")
    assert revision[:4] == critique and revision[4] == Message("assistant", "Cheese is wrong.")
    assert revision[5] == Message("user", f"Rewrite it truthfully. {REVISION_SUFFIX}")
    assert revision[-1].role == "user"  # the model's next turn is the revision


@pytest.mark.parametrize("text, clean", [
    ("Revision: The moon is rock.", "The moon is rock."),
    ("  **Revised response:** The moon is rock. ", "The moon is rock."),
    ("The revision: is fine", "The revision: is fine"),
    ("Here's the rewritten response, with no advice:\n\nOttawa.", "Ottawa."),
    ("Sure! Here is my revised answer:**\nOttawa.", "Ottawa."),
    ("Steps to revise a text:\n1. Read it.", "Steps to revise a text:\n1. Read it."),
    ("Rewritten response:", ""),  # only the label: an empty revision
    ("Ottawa is the capital:\nit is in Ontario.", "Ottawa is the capital:\nit is in Ontario."),
    ("", ""),
])
def test_clean_revision_drops_a_leading_label_or_announcement_only(text, clean):
    assert clean_revision(text) == clean
