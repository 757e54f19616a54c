"""The judge as a studio annotator (SQLite): its verdicts become labels of ``ai:<model>``, so gold
accuracy, Cohen's kappa against a person and Dawid-Skene reliability cover it; a rerun adds nothing."""

import pytest

pytest.importorskip("sqlalchemy")

from rlhfkit.data.records import Message  # noqa: E402
from rlhfkit.judge import Judge, JudgePrompt, OrderResult  # noqa: E402


class RuleBackend:
    """Prefers the response containing "good" (P(first) 0.9 / 0.1), except for "question 2" where it
    prefers "bad"; refuses "question 3"."""

    name = "rule"

    def judge(self, jobs):
        return [(self._one(ab), self._one(ba)) for ab, ba in jobs]

    @staticmethod
    def _one(m):
        if "question 3" in m.head:
            return OrderResult(None, "refused", "none", "I cannot")
        first = m.tail.split("\n")[0]
        likes = "bad" if "question 2" in m.head else "good"
        return OrderResult(0.9 if likes in first else 0.1)


@pytest.fixture
def project(tmp_path):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.ingest import ItemSpec

    db = open_database(str(tmp_path / "studio.sqlite3"))
    pid = service.create_project(db, "p", "pairwise", overlap=3, gold_rate=0.0, min_gold=1)
    specs = [ItemSpec((Message("user", f"question {i}"),), [f"good answer {i}", f"bad answer {i}"],
                      {"preferred": 0} if i == 4 else None, f"t:{i}") for i in range(5)]
    service.add_items(db, pid, specs)
    yield db, pid
    db.close()


def _label_as(db, pid, name, choices):
    from rlhfkit.feedback.models import Item
    from rlhfkit.feedback.report import load_project
    from rlhfkit.feedback.service import find_project, get_or_create_annotator, record_label

    _, items, _ = load_project(db, pid)
    with db.transaction() as s:
        project, ann = find_project(s, pid), get_or_create_annotator(s, name)
        for item, choice in zip(items, choices):
            record_label(s, project, s.get(Item, item.item_id), ann, {"preferred": choice, "reason": ""})


def test_judge_labels_feed_gold_accuracy_kappa_and_dawid_skene(project):
    from rlhfkit.feedback.report import load_project, project_report
    from rlhfkit.judge.studio import judge_project

    db, pid = project
    _label_as(db, pid, "alice", [0, 1, 1, 0])  # items 0-3; alice skips the gold item
    judge = Judge(RuleBackend(), JudgePrompt())
    result = judge_project(db, "p", judge)
    assert (result.annotator, result.items, result.stored, result.not_ok, result.already) == ("ai:rule", 5, 4, 1, 0)

    _, _, labels = load_project(db, pid)
    mine = {lab.item_id: lab.value for lab in labels if lab.annotator == "ai:rule"}
    assert [v["preferred"] for v in mine.values()] == [0, 0, 1, 0]  # items 0, 1, 2 and the gold item 4
    assert list(mine.values())[0]["p_candidate_0"] == pytest.approx(0.9)

    report = project_report(db, pid)
    row = next(a for a in report["annotators"] if a["annotator"] == "ai:rule")
    assert (row["gold_answered"], row["gold_accuracy"]) == (1, 1.0) and row["reliability"] is not None
    # common items 0-2: alice [0, 1, 1], judge [0, 0, 1]: po = 2/3, pe = 1/3*2/3 + 2/3*1/3 = 4/9,
    # kappa = (2/3 - 4/9) / (1 - 4/9) = 0.4
    pair = next(p for p in report["agreement"]["cohen_pairs"] if {p["a"], p["b"]} == {"alice", "ai:rule"})
    assert (pair["n"], pair["kappa"]) == (3, pytest.approx(0.4))

    again = judge_project(db, "p", judge)  # only the refused item is asked again; nothing new stored
    assert (again.already, again.stored, again.not_ok) == (4, 0, 1)


def test_confidence_threshold_keeps_unsure_verdicts_out(project):
    from rlhfkit.judge.studio import judge_project

    db, _ = project
    result = judge_project(db, "p", Judge(RuleBackend(), min_confidence=0.95))
    assert (result.stored, result.below_confidence) == (0, 4)


def test_only_pairwise_projects(tmp_path):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database
    from rlhfkit.judge.studio import judge_project

    db = open_database(str(tmp_path / "s.sqlite3"))
    service.create_project(db, "scores", "score")
    with pytest.raises(service.BadInput, match="pairwise"):
        judge_project(db, "scores", Judge(RuleBackend()))
    db.close()
