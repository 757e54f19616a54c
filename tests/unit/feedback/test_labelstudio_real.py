"""rlhfkit against files exported by Label Studio 1.23.2 itself (tests/fixtures/label_studio/,
see its README), and, where an installation is named by $RLHFKIT_LABEL_STUDIO, against a Label
Studio server this test starts on 127.0.0.1."""

import json
import os
import sys
from pathlib import Path

import pytest

from rlhfkit.data.records import DataError
from rlhfkit.feedback import export, interop, quality, service
from rlhfkit.feedback.report import load_project

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label_studio"
ALICE, BOB = "alice@example.com", "bob@example.com"


def _import(db, task, name, **kw):
    pid = service.create_project(db, name.replace(".", "-"), task, overlap=3, gold_rate=0)
    return pid, interop.import_labelstudio(db, pid, FIXTURES / name, **kw)


def _labels(db, pid):
    """{(item prompt, annotator): (value, display choice)}."""
    _info, items, labels = load_project(db, pid)
    prompt = {i.item_id: i.prompt[-1].content for i in items}
    return {(prompt[lab.item_id], lab.annotator): (lab.value, lab.display_choice) for lab in labels}


# ---- 24: identity and idempotence ------------------------------------------------------------------

def test_export_with_emails_names_people_and_keeps_a_users_latest_annotation(db):
    pid, added = _import(db, "pairwise", "pairwise.emails.json")
    # 3 tasks; bob on each, alice once on the third task although she annotated it three times
    assert added == (3, 4, 0)
    labels = _labels(db, pid)
    assert set(labels) == {("Name a prime number.", BOB), ("What is the capital of France?", BOB),
                           ("Say hello politely.", BOB), ("Say hello politely.", ALICE)}
    assert labels[("Say hello politely.", ALICE)] == ({"preferred": 0, "reason": "changed my mind"}, "left")
    assert labels[("Name a prime number.", BOB)] == ({"preferred": "tie", "reason": ""}, "tie")


def test_reimporting_the_same_export_adds_nothing(db):
    pid, first = _import(db, "pairwise", "pairwise.json")
    assert first == (3, 4, 0)
    assert interop.import_labelstudio(db, pid, FIXTURES / "pairwise.json") == (0, 0, 0)
    assert interop.import_labelstudio(db, pid, FIXTURES / "pairwise.min.json") == (0, 0, 0)  # same task ids
    _info, items, labels = load_project(db, pid)
    assert (len(items), len(labels)) == (3, 4)
    assert [i.source for i in items] == ["labelstudio task 28", "labelstudio task 29", "labelstudio task 30"]


def test_numeric_user_ids_become_emails_where_the_export_has_them(db):
    pid, _ = _import(db, "pairwise", "pairwise.json")  # quick export: completed_by is a user id
    assert {who for _p, who in _labels(db, pid)} == {"labelstudio user 2", "labelstudio user 3"}
    pid, _ = _import(db, "pairwise", "pairwise.emails.min.json", emails={"alice": ALICE})
    assert {who for _p, who in _labels(db, pid)} == {"alice", BOB}  # emails map back to studio names


def test_users_list_names_the_annotators_of_a_quick_export(db, tmp_path):
    users = tmp_path / "users.json"  # as GET /api/users returns it
    users.write_text(json.dumps([{"id": 2, "email": ALICE, "first_name": ""}, {"id": 3, "email": BOB}]))
    a, _ = _import(db, "pairwise", "pairwise.json", users=interop.read_labelstudio_users(users))
    b, _ = _import(db, "pairwise", "pairwise.emails.json")
    assert _labels(db, a) == _labels(db, b)


# ---- 25: ground truth --------------------------------------------------------------------------

def test_ground_truth_flag_keeps_the_item_and_its_votes(db):
    pid, _ = _import(db, "pairwise", "pairwise.json")
    _info, items, labels = load_project(db, pid)
    hello = next(i for i in items if i.prompt[-1].content == "Say hello politely.")
    assert not hello.is_gold and sum(lab.item_id == hello.item_id for lab in labels) == 2
    pairs = export.export_records(db, pid)
    assert [p.prompt[-1].content for p in pairs] == ["Name a prime number.", "Say hello politely."]
    assert pairs[1].meta["votes"] == {"0": 2, "1": 0, "tie": 0}
    # rlhfkit's own gold answer travelled through Label Studio in meta.rlhfkit.gold
    france = next(i for i in items if i.prompt[-1].content.startswith("What is the capital"))
    assert france.is_gold and france.gold == {"preferred": 0}


def test_ground_truth_as_gold_is_explicit(db):
    pid, added = _import(db, "pairwise", "pairwise.json", ground_truth="gold")
    assert added == (3, 3, 0)  # bob's flagged answer is the gold answer, not a vote
    _info, items, _labels = load_project(db, pid)
    hello = next(i for i in items if i.prompt[-1].content == "Say hello politely.")
    assert hello.is_gold and hello.gold == {"preferred": 0}


# ---- 23 / 26: ranking, critiques, positions, JSON_MIN and the stock templates -------------------------

@pytest.mark.parametrize("name", ["ranking.json", "ranking.min.json"])
def test_ranking_from_the_ranker_ui_shape(db, name):
    pid, added = _import(db, "ranking", name)
    assert added == (1, 2, 0)
    ranks = {who: value["ranking"] for (_p, who), (value, _s) in _labels(db, pid).items()}
    assert ranks == {"labelstudio user 3": [1, 2, 0], "labelstudio user 2": [2, 0, 1]}


@pytest.mark.parametrize("name", ["critique.json", "critique.min.json"])
def test_multi_entry_critique_keeps_every_entry(db, name):
    pid, _ = _import(db, "critique", name)
    texts = sorted(value["critique"] for value, _s in _labels(db, pid).values())
    assert texts == ["Too short.\n\nNo example given.", "Too vague."]


@pytest.mark.parametrize("name", ["human_preference.json", "human_preference.min.json"])
def test_stock_human_preference_template_keeps_left_and_right(db, name):
    pid, added = _import(db, "pairwise", name)
    assert added == (2, 3, 0)
    labels = _labels(db, pid)
    assert labels[("Is 17 prime?", "labelstudio user 2")] == ({"preferred": 0, "reason": ""}, "left")
    assert labels[("Is 17 prime?", "labelstudio user 3")] == ({"preferred": 1, "reason": ""}, "right")
    bias = quality.position_bias(shown for _v, shown in labels.values())
    assert (bias["left"], bias["right"]) == (1, 2)


def test_stock_pairwise_classification_template(db):
    pid, added = _import(db, "pairwise", "pairwise_classification.min.json")
    assert added == (1, 1, 0)
    (pair,) = export.export_records(db, pid)
    assert (pair.chosen, pair.rejected) == ("apple", "carrot")
    assert list(_labels(db, pid).values()) == [({"preferred": 1, "reason": ""}, "right")]


def test_json_min_and_json_agree(db):
    a, _ = _import(db, "pairwise", "pairwise.json")
    b, _ = _import(db, "pairwise", "pairwise.min.json")
    assert _labels(db, a) == _labels(db, b)


def test_unknown_layout_names_the_accepted_formats(db, tmp_path):
    rows = json.loads((FIXTURES / "pairwise_classification.min.json").read_text())
    for row in rows:
        row["left_text"], row["right_text"] = row.pop("pairText1"), row.pop("pairText2")
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(rows))
    pid = service.create_project(db, "x", "pairwise", overlap=1, gold_rate=0)
    with pytest.raises(DataError, match=r"other.json:\[0\]: data: .*answer1.*pairText1"):
        interop.import_labelstudio(db, pid, bad)
    bad.write_text(json.dumps({"prompt": "q"}))
    with pytest.raises(DataError, match="JSON_MIN"):
        interop.import_labelstudio(db, pid, bad)


# ---- 22 / 27: rlhfkit's exports import into a real Label Studio ------------------------------------

def _installation():
    install = os.environ.get("RLHFKIT_LABEL_STUDIO")
    if not install:
        pytest.skip("set RLHFKIT_LABEL_STUDIO to a Label Studio installation (a venv with label-studio) "
                    "to import rlhfkit's exports into a real server")
    sys.path.insert(0, str(FIXTURES))
    from lsclient import label_studio_binary

    binary = label_studio_binary(install)
    if binary is None:
        pytest.skip(f"RLHFKIT_LABEL_STUDIO={install} has no bin/label-studio")
    return binary


def _studio_project(db, task):
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    pid = service.create_project(db, task, task, overlap=2, gold_rate=0)
    rec = {"prompt": "q", "responses": ["a", "b", "c"] if task == "ranking" else ["a", "b"]}
    gold = {"pairwise": 1, "ranking": [2, 0, 1], "score": 6}.get(task)
    recs = [parse_record(rec, "t:1")] + ([parse_record({**rec, "gold": gold}, "t:2")] if gold else [])
    if task == "score":
        recs[-1] = parse_record({"prompt": "g", "response": "a", "gold": gold}, "t:2")
    service.add_items(db, pid, items_for_task(task, recs))
    data = {"pairwise": {"choice": "B"}, "ranking": {"order": "3,1,2"}, "score": {"score": 3},
            "critique": {"critique": "add detail"}}[task]
    for name in ("admin", "judge"):
        aid = next((a["id"] for a in service.list_annotators(db) if a["name"] == name), None) \
            or service.add_annotator(db, name)[0]
        service.submit_label(db, service.next_task(db, pid, aid).assignment_id, aid, data)
    return pid


def test_rlhfkit_exports_import_into_a_real_label_studio(db, tmp_path):
    binary = _installation()
    from lsclient import running_server

    with running_server(binary, tmp_path, "1" * 40) as ls:
        me, my_id = ls.whoami()["email"], ls.whoami()["id"]
        for task in ("pairwise", "ranking", "score", "critique"):
            pid = _studio_project(db, task)
            tasks = interop.to_labelstudio(db, pid, emails={"admin": me})
            project = ls.create_project(f"rlhfkit {task}", interop.labelstudio_config(task))
            reply = ls.import_tasks(project, tasks)  # raises on any HTTP error (e.g. unknown annotator)
            assert (reply["task_count"], reply["annotation_count"], reply["prediction_count"]) == \
                (len(tasks), 1, 1)
            back = tmp_path / f"{task}.json"
            back.write_bytes(ls.export(project, "JSON"))
            again = service.create_project(db, f"back-{task}", task, overlap=2, gold_rate=0)
            names = {"emails": {"admin": me}, "users": {my_id: me}}  # the quick export gives user ids
            assert interop.import_labelstudio(db, again, back, **names) == (1, 1, 0)
            assert {who for _p, who in _labels(db, again)} == {"admin"}
            # back into the project it came from: the same item, the same label (meta.rlhfkit.item_id)
            assert interop.import_labelstudio(db, pid, back, **names) == (0, 0, 0)
