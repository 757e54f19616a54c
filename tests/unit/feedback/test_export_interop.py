"""Export to rlhfkit records and Label Studio / Argilla round trips."""

import json

import pytest

from rlhfkit.data.records import DataError, PreferencePair, Ranking, record_to_json
from rlhfkit.feedback import export, interop, service
from rlhfkit.feedback.ingest import items_for_task, parse_record


def label_item(db, pid, names_choices):
    """Each (annotator name, submission) labels the same single item (overlap >= len)."""
    for name, data in names_choices:
        aid = service.add_annotator(db, name)[0]
        view = service.next_task(db, pid, aid)
        if "choice" in data and data["choice"] in ("good", "bad"):  # choose by content, not side
            side = "A" if view.shown[0].startswith(data["choice"]) else "B"
            data = {**data, "choice": side}
        service.submit_label(db, view.assignment_id, aid, data)


def test_pairwise_majority_export_is_record_to_json_exactly(db, make_pairwise, tmp_path):
    pid = make_pairwise(db, n=1, overlap=3)
    label_item(db, pid, [("a", {"choice": "good", "reason": "right"}), ("b", {"choice": "good"}),
                         ("c", {"choice": "bad"})])
    recs = export.export_records(db, pid)
    assert len(recs) == 1 and isinstance(recs[0], PreferencePair)
    pair = recs[0]
    assert (pair.chosen, pair.rejected, pair.label) == ("good answer 0", "bad answer 0", 1.0)
    assert pair.meta["votes"] == {"0": 2, "1": 1, "tie": 0}
    assert pair.meta["annotators"] == ["a", "b", "c"] and pair.meta["agreement"] == pytest.approx(0.6667)
    assert pair.meta["reasons"] == ["right"] and "fleiss_kappa" in pair.meta["project_agreement"]
    out = tmp_path / "prefs.jsonl"
    assert export.export_jsonl(db, pid, out) == 1
    line = out.read_text().splitlines()[0]
    assert json.loads(line) == record_to_json(pair)
    assert "label" not in json.loads(line)  # label 1.0 is the default and is left out
    soft = export.export_records(db, pid, soft=True)[0]
    assert soft.label == pytest.approx(2 / 3)  # (2 votes + 0.5 * 0 ties) / 3


def test_pairwise_split_tie_raw_and_dawid_skene(db, make_pairwise):
    pid = make_pairwise(db, n=1, overlap=2)
    label_item(db, pid, [("a", {"choice": "good"}), ("b", {"choice": "bad"})])
    split = export.export_records(db, pid)[0]
    assert split.label == 0.5 and split.meta["split"] is True
    raw = export.export_records(db, pid, method="raw")
    assert [(r.chosen, r.meta["annotators"]) for r in raw] == [("good answer 0", ["a"]),
                                                               ("bad answer 0", ["b"])]
    assert {r.meta["shown"] for r in raw} <= {"left", "right"}
    ds = export.export_records(db, pid, method="dawid-skene")[0]
    assert set(ds.meta["posterior"]) == {"0", "1"}
    with pytest.raises(export.ExportError, match="method"):
        export.export_records(db, pid, method="vote")
    with pytest.raises(export.ExportError, match="score projects"):
        export.export_records(db, pid, method="mean")


def test_gold_items_are_left_out_unless_asked(db, make_pairwise):
    pid = make_pairwise(db, n=2, overlap=1, gold={0}, gold_rate=1.0)
    label_item(db, pid, [("a", {"choice": "good"})])
    aid = service.list_annotators(db)[0]["id"]
    view = service.next_task(db, pid, aid)
    service.submit_label(db, view.assignment_id, aid, {"choice": "tie"})
    assert len(export.export_records(db, pid)) == 1
    everything = export.export_records(db, pid, include_gold=True)
    assert len(everything) == 2 and sum(bool(r.meta.get("gold")) for r in everything) == 1


def _ranking_project(db, overlap=2):
    pid = service.create_project(db, "rank", "ranking", overlap=overlap, gold_rate=0)
    rec = parse_record({"prompt": "p", "responses": ["best", "mid", "worst"]}, "t:1")
    service.add_items(db, pid, items_for_task("ranking", [rec]))
    return pid


def test_ranking_export_borda_and_pairs(db):
    pid = _ranking_project(db)
    for name, order in (("a", ["best", "mid", "worst"]), ("b", ["mid", "best", "worst"])):
        aid = service.add_annotator(db, name)[0]
        view = service.next_task(db, pid, aid)
        positions = ",".join(str(view.shown.index(t) + 1) for t in order)
        service.submit_label(db, view.assignment_id, aid, {"order": positions})
    rank = export.export_records(db, pid)[0]
    assert isinstance(rank, Ranking)
    # Borda: best = 2 + 1 = 3, mid = 1 + 2 = 3, worst = 0 -> tie broken by the lower index (best)
    assert rank.ranking == (0, 1, 2) and rank.meta["rankings"] == [[0, 1, 2], [1, 0, 2]]
    pairs = export.export_records(db, pid, as_pairs=True)
    assert [(p.chosen, p.rejected) for p in pairs] == [("best", "mid"), ("best", "worst"), ("mid", "worst")]


def test_score_and_critique_exports(db):
    sid = service.create_project(db, "s", "score", overlap=3, gold_rate=0)
    service.add_items(db, sid, items_for_task("score", [parse_record({"prompt": "p", "response": "r"}, "t:1")]))
    for name, score in (("a", 5), ("b", 5), ("c", 2)):
        aid = service.add_annotator(db, name)[0]
        service.submit_label(db, service.next_task(db, sid, aid).assignment_id, aid, {"score": score})
    assert export.export_records(db, sid)[0].score == 5.0
    assert export.export_records(db, sid, method="mean")[0].score == pytest.approx(4.0)
    assert record_to_json(export.export_records(db, sid)[0])["meta"]["scores"] == [5, 5, 2]
    cid = service.create_project(db, "c", "critique", overlap=1, gold_rate=0)
    service.add_items(db, cid, items_for_task("critique", [parse_record({"prompt": "p", "response": "r"}, "t:1")]))
    aid = service.list_annotators(db)[0]["id"]
    service.submit_label(db, service.next_task(db, cid, aid).assignment_id, aid, {"critique": "too short"})
    (fb,) = export.export_records(db, cid, method="majority")
    assert fb.feedback == "too short" and fb.meta["method"] == "raw"


# ------------------------------------------------------------------------------------ interop ----

@pytest.mark.parametrize("fmt", ["labelstudio", "argilla"])
@pytest.mark.parametrize("task", ["pairwise", "ranking", "score", "critique"])
def test_round_trip_keeps_items_labels_and_gold(db, tmp_path, fmt, task):
    src = service.create_project(db, "src", task, overlap=2, gold_rate=0)
    responses = ["r0", "r1", "r2"] if task == "ranking" else ["r0", "r1"]
    recs = [parse_record({"prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
                          "responses": responses}, "t:1")]
    if task != "critique":
        gold = {"pairwise": 1, "ranking": [2, 0, 1], "score": 6}[task]
        recs.append(parse_record({"prompt": "g", "responses": responses[:1] if task == "score" else responses,
                                  "gold": gold}, "t:2"))
    service.add_items(db, src, items_for_task(task, recs))
    data = {"pairwise": {"choice": "tie", "reason": "same"}, "ranking": {"order": "3,1,2"},
            "score": {"score": 3}, "critique": {"critique": "add detail"}}[task]
    for name in ("ann1", "ann2"):
        aid = service.add_annotator(db, name)[0]
        service.submit_label(db, service.next_task(db, src, aid).assignment_id, aid, data)
    out = tmp_path / f"{fmt}.json"
    getattr(interop, f"export_{fmt}")(db, src, out)
    dst = service.create_project(db, "dst", task, overlap=2, gold_rate=0)
    n_items, n_labels, _differing = getattr(interop, f"import_{fmt}")(db, dst, out)
    from rlhfkit.feedback.report import load_project

    _i1, items1, labels1 = load_project(db, src)
    _i2, items2, labels2 = load_project(db, dst)
    assert n_items == len(items1) and n_labels == len(labels1) == 2
    assert [(i.prompt, i.candidates, i.is_gold, i.gold) for i in items1] == \
           [(i.prompt, i.candidates, i.is_gold, i.gold) for i in items2]
    assert sorted((lab.annotator, json.dumps(lab.value)) for lab in labels1) == \
           sorted((lab.annotator, json.dumps(lab.value)) for lab in labels2)


def test_labelstudio_config_and_pairwise_tag_shape(db, tmp_path):
    assert '<Choices name="preference"' in interop.labelstudio_config("pairwise")
    assert "<Ranker" in interop.labelstudio_config("ranking")
    pid = service.create_project(db, "ls", "pairwise", overlap=2, gold_rate=0)
    tasks_json = [{"data": {"prompt": "q", "answer1": "x", "answer2": "y"},
                   "annotations": [{"completed_by": 7, "result": [{"type": "pairwise", "value": {"selected": "right"}}]},
                                   {"completed_by": 8, "was_cancelled": True, "result": []}]}]
    f = tmp_path / "ls.json"
    f.write_text(json.dumps(tasks_json))
    assert interop.import_labelstudio(db, pid, f) == (1, 1, 0)
    (pair,) = export.export_records(db, pid)
    assert (pair.chosen, pair.meta["annotators"]) == ("y", ["labelstudio user 7"])


def test_argilla_v1_responses_and_errors(db, tmp_path):
    pid = service.create_project(db, "ar", "ranking", overlap=2, gold_rate=0)
    v1 = [{"fields": {"prompt": "q", "response_1": "a", "response_2": "b"},
           "responses": [{"user_id": "u1", "status": "submitted",
                          "values": {"ranking": {"value": [{"value": "response_2", "rank": 1},
                                                           {"value": "response_1", "rank": 2}]}}},
                         {"user_id": "u2", "status": "discarded", "values": {}}]}]
    f = tmp_path / "ar.json"
    f.write_text(json.dumps(v1))
    assert interop.import_argilla(db, pid, f) == (1, 1, 0)
    assert export.export_records(db, pid)[0].ranking == (1, 0)
    f.write_text(json.dumps({"records": [{"fields": {"prompt": "q", "response_1": "a", "response_2": "b"},
                                          "responses": {"ranking": [{"value": ["response_9"], "user_id": "u"}]}}]}))
    with pytest.raises(DataError, match=r"ar.json:\[0\].*ranking"):
        interop.import_argilla(db, pid, f)
    f.write_text("{broken")
    with pytest.raises(DataError, match="json"):
        interop.import_argilla(db, pid, f)


# ------------------------------------------------------------ Label Studio as it really is ----

def _labelled_pairwise(db):
    """One regular item labelled by alice (prefers the first answer) and an AI judge, one gold item."""
    pid = service.create_project(db, "lsx", "pairwise", overlap=2, gold_rate=0)
    recs = [parse_record({"prompt": "q", "responses": ["x", "y"]}, "t:1"),
            parse_record({"prompt": "g", "responses": ["u", "v"], "gold": 1}, "t:2")]
    service.add_items(db, pid, items_for_task("pairwise", recs))
    for name in ("alice", "judge"):
        aid = service.add_annotator(db, name)[0]
        view = service.next_task(db, pid, aid)
        service.submit_label(db, view.assignment_id, aid, {"choice": "A" if view.shown[0] == "x" else "B"})
    return pid


def test_labelstudio_export_invents_no_annotator(db):
    pid = _labelled_pairwise(db)
    plain = interop.to_labelstudio(db, pid)
    assert [t["annotations"] for t in plain] == [[], []]  # Label Studio knows none of these people
    assert [p["model_version"] for p in plain[0]["predictions"]] == ["rlhfkit:alice", "rlhfkit:judge"]
    mapped = interop.to_labelstudio(db, pid, emails={"alice": "alice@example.com"})
    (ann,) = mapped[0]["annotations"]
    assert ann["completed_by"] == {"email": "alice@example.com"} and ann["ground_truth"] is False
    assert ann["result"][0]["value"] == {"choices": ["answer1"]}
    assert [p["model_version"] for p in mapped[0]["predictions"]] == ["rlhfkit:judge"]
    gold = mapped[1]  # the gold answer is task metadata, not somebody's annotation
    assert (gold["annotations"], gold["predictions"]) == ([], [])
    assert gold["meta"]["rlhfkit"]["gold"] == {"preferred": 1}


def test_labelstudio_ranking_export_has_the_ranker_ui_shape(db):
    import re

    pid = service.create_project(db, "r", "ranking", overlap=1, gold_rate=0)
    service.add_items(db, pid, items_for_task("ranking", [parse_record({"prompt": "p", "responses": ["a", "b", "c"]}, "t:1")]))
    aid = service.add_annotator(db, "alice")[0]
    view = service.next_task(db, pid, aid)
    order = ",".join(str(view.shown.index(t) + 1) for t in ("c", "a", "b"))
    service.submit_label(db, view.assignment_id, aid, {"order": order})
    (task,) = interop.to_labelstudio(db, pid)
    (res,) = (task.get("predictions") or task["annotations"])[0]["result"]
    ranker = re.search(r'<Ranker name="(\w+)" toName="(\w+)"', interop.labelstudio_config("ranking")).groups()
    assert (res["from_name"], res["to_name"]) == ranker == ("rank", "candidates")
    assert res["value"] == {"ranker": {"rank": ["c2", "c0", "c1"]}}  # keyed by the Ranker's own name


def _ls_file(tmp_path, tasks_json, name="ls.json"):
    f = tmp_path / name
    f.write_text(json.dumps(tasks_json))
    return f


def _choice(c):
    return [{"from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": [c]}}]


def test_labelstudio_reimport_adds_only_new_annotators(db, tmp_path):
    pid = service.create_project(db, "ls", "pairwise", overlap=3, gold_rate=0)
    task = {"id": 7, "data": {"prompt": "q", "answer1": "x", "answer2": "y"},
            "annotations": [{"completed_by": 1, "result": _choice("answer2"), "created_at": "2026-01-01T10:00:00Z"},
                            {"completed_by": 1, "result": _choice("answer1"), "created_at": "2026-01-01T11:00:00Z"}]}
    f = _ls_file(tmp_path, [task])
    assert interop.import_labelstudio(db, pid, f) == (1, 1, 0)  # user 1's later answer, not an abort
    assert export.export_records(db, pid)[0].chosen == "x"
    task["annotations"].append({"completed_by": 2, "result": _choice("tie")})
    f = _ls_file(tmp_path, [task])
    assert interop.import_labelstudio(db, pid, f) == (0, 1, 0)  # the task again: only user 2's label is new
    assert interop.import_labelstudio(db, pid, f) == (0, 0, 0)
    task["annotations"][1]["result"] = _choice("answer2")  # user 1 changed their answer in Label Studio
    assert interop.import_labelstudio(db, pid, _ls_file(tmp_path, [task])) == (0, 0, 1)  # counted, not applied
    task["data"]["answer2"] = "z"  # the same id with other content: another Label Studio project
    with pytest.raises(DataError, match=r"ls.json:\[0\]: id: labelstudio task 7 was imported .* before"):
        interop.import_labelstudio(db, pid, _ls_file(tmp_path, [task]))


def test_labelstudio_round_trip_into_the_same_project_adds_only_new_work(db, tmp_path):
    pid = _labelled_pairwise(db)
    tasks_json = interop.to_labelstudio(db, pid, emails={"alice": "alice@example.com"})
    for new_id, task in enumerate(tasks_json, 100):  # what Label Studio does: new ids, meta kept
        task["id"] = new_id
        task["annotations"].append({"completed_by": {"id": 3, "email": "bob@example.com"},
                                    "result": _choice("answer2")})
        task.pop("predictions")  # the quick export gives prediction ids only
    f = _ls_file(tmp_path, tasks_json)
    # alice's label is the one she has; bob's two answers are new; no item is added twice
    assert interop.import_labelstudio(db, pid, f, emails={"alice": "alice@example.com"}) == (0, 2, 0)
    assert interop.import_labelstudio(db, pid, f, emails={"alice": "alice@example.com"}) == (0, 0, 0)
    other = service.create_project(db, "elsewhere", "pairwise", overlap=3, gold_rate=0)
    assert interop.import_labelstudio(db, other, f) == (2, 3, 0)


def test_labelstudio_ground_truth_flag_is_a_vote_unless_asked(db, tmp_path):
    task = {"id": 1, "data": {"prompt": "q", "answer1": "x", "answer2": "y"},
            "annotations": [{"completed_by": 5, "ground_truth": True, "result": _choice("answer2")},
                            {"completed_by": 6, "result": _choice("answer2")}]}
    f = _ls_file(tmp_path, [task])
    vote = service.create_project(db, "vote", "pairwise", overlap=2, gold_rate=0)
    assert interop.import_labelstudio(db, vote, f) == (1, 2, 0)
    (pair,) = export.export_records(db, vote)  # a normal item with both votes, exported by default
    assert (pair.chosen, pair.meta["votes"]) == ("y", {"0": 0, "1": 2, "tie": 0})
    gold = service.create_project(db, "gold", "pairwise", overlap=2, gold_rate=0)
    assert interop.import_labelstudio(db, gold, f, ground_truth="gold") == (1, 1, 0)
    assert export.export_records(db, gold) == []
    (item,) = export.export_records(db, gold, include_gold=True)
    assert item.meta["gold"] and item.meta["annotators"] == ["labelstudio user 6"]


def test_labelstudio_critique_entries_positions_and_json_min(db, tmp_path):
    crit = service.create_project(db, "c", "critique", overlap=1, gold_rate=0)
    rows = [{"id": 3, "prompt": "p", "response": "r", "critique": {"text": ["one", " two "]},
             "annotator": "a@x.org", "annotation_id": 9}]
    assert interop.import_labelstudio(db, crit, _ls_file(tmp_path, rows, "min.json")) == (1, 1, 0)
    assert export.export_records(db, crit)[0].feedback == "one\n\ntwo"
    pair = service.create_project(db, "p", "pairwise", overlap=2, gold_rate=0)
    rows = [{"id": 4, "prompt": "p", "pairText1": "a", "pairText2": "b", "pw": [{"selected": "left"}],
             "annotator": 2, "annotation_id": 10},
            {"id": 4, "prompt": "p", "pairText1": "a", "pairText2": "b", "preference": "answer2",
             "reason": "shorter", "annotator": 3, "annotation_id": 11}]
    assert interop.import_labelstudio(db, pair, _ls_file(tmp_path, rows, "min.json")) == (1, 2, 0)
    from rlhfkit.feedback.report import load_project

    labels = sorted((lab.annotator, lab.value["preferred"], lab.display_choice) for lab in load_project(db, pair)[2])
    assert labels == [("labelstudio user 2", 0, "left"), ("labelstudio user 3", 1, "right")]


def test_labelstudio_unreadable_files_name_the_accepted_formats(db, tmp_path):
    pid = service.create_project(db, "e", "ranking", overlap=1, gold_rate=0)
    cases = [({"tasks": []}, r"e.json: json: expected a Label Studio JSON export .* JSON_MIN"),
             ([{"data": {"prompt": "q", "items": []}}], r"e.json:\[0\]: data.candidates: .*Ranker"),
             ([{"data": {"prompt": "q", "candidates": [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}]},
                "annotations": [{"result": [{"type": "ranker", "from_name": "rank",
                                             "value": {"ranker": {"good": ["a"], "bad": ["b"]}}}]}]}],
              r"annotations\[0\]: result.ranker: buckets \['bad', 'good'\] are not one full ranking"),
             ([{"data": {"prompt": "q", "candidates": [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}]},
                "annotations": [{"result": [{"type": "rating", "value": {"rating": 3}}]}]}],
              r"result: no ranking answer among result types \['rating'\]")]
    for doc, message in cases:
        with pytest.raises(DataError, match=message):
            interop.import_labelstudio(db, pid, _ls_file(tmp_path, doc, "e.json"))
