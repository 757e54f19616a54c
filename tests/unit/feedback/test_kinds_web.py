"""The thumbs up/down and step-marking task pages and API, from upload to export download."""

import json
import re

import pytest

pytest.importorskip("fastapi", reason="the studio web app needs fastapi")
pytest.importorskip("httpx", reason="TestClient needs httpx")

from rlhfkit.feedback import service  # noqa: E402
from tests.unit.feedback.test_web import ADMIN, client, csrf, start_task  # noqa: E402

STEPS = "1. 12 + 7 = 19\n2. 19 * 3 = 56\n3. The answer is 56."


@pytest.fixture
def kinds(db):
    """An app with a binary and a steps project created through the admin form (file upload)."""
    from rlhfkit.feedback.app import create_app

    _a, alice = service.add_annotator(db, "alice")
    studio = {"app": create_app(db, ADMIN, base_url="https://studio.example"), "db": db, "alice": alice}
    admin = client(studio, ADMIN)
    token = csrf(admin, "/admin")
    uploads = {"binary": [{"prompt": f"q{i}", "response": f"answer {i}"} for i in range(2)],
               "steps": [{"prompt": "Start with 12, add 7, then multiply by 3.", "response": STEPS}]}
    for task, rows in uploads.items():
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        r = admin.post("/admin/projects", data={"csrf_token": token, "name": task, "task_type": task,
                                                "overlap": "1", "gold_rate": "0"},
                       files={"file": (f"{task}.jsonl", body, "application/json")})
        assert r.status_code == 303, r.text
        studio[task] = int(r.headers["location"].rsplit("/", 1)[1])
    studio["admin"] = admin
    return studio


def test_thumbs_page_keys_form_api_and_export(kinds):
    c = client(kinds, kinds["alice"])
    aid = start_task(c, kinds["binary"])
    page = c.get(f"/tasks/{aid}")
    assert 'data-key="1 u" data-testid="thumb-up"' in page.text and 'data-testid="thumb-down"' in page.text
    assert 'name="reason"' in page.text and "answer " in page.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c), "thumb": "sideways"})
    assert r.status_code == 422 and "thumb: expected up or down" in r.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c), "thumb": "up", "reason": "clear"})
    assert r.status_code == 303 and "saved=" in r.headers["location"]
    again = c.get(f"/tasks/{aid}")
    assert re.search(r'data-testid="thumb-up"\s+class="[^"]*current', again.text)
    assert ">clear</textarea>" in again.text

    bearer = {"Authorization": f"Bearer {kinds['alice']}"}
    task = c.post(f"/api/projects/{kinds['binary']}/next", headers=bearer).json()
    assert task["task_type"] == "binary" and len(task["candidates"]) == 1
    r = c.post(f"/api/tasks/{task['assignment_id']}/label", json={"thumb": 1}, headers=bearer)
    assert r.status_code == 422 and "thumb: expected up or down" in r.json()["error"]
    r = c.post(f"/api/tasks/{task['assignment_id']}/label", json={"thumb": False}, headers=bearer)
    assert r.status_code == 201
    assert c.get(f"/api/tasks/{task['assignment_id']}", headers=bearer).json()["answer"]["thumb"] == "down"

    r = kinds["admin"].get(f"/admin/projects/{kinds['binary']}/export?format=records&method=majority")
    rows = sorted((json.loads(line) for line in r.text.splitlines()), key=lambda row: row["prompt"])
    assert r.status_code == 200 and len(rows) == 2
    assert [(row["prompt"], row["response"]) for row in rows] == [("q0", "answer 0"), ("q1", "answer 1")]
    assert sorted(row["label"] for row in rows) == [False, True]
    assert set(rows[0]) == {"prompt", "response", "label", "meta"}
    page = kinds["admin"].get(f"/admin/projects/{kinds['binary']}")
    assert page.status_code == 200 and "alice" in page.text and "format=labelstudio" not in page.text
    r = kinds["admin"].get(f"/admin/projects/{kinds['binary']}/export?format=labelstudio")
    assert r.status_code == 422 and "format: labelstudio: binary projects have no Label Studio" in r.text


def test_step_page_marks_every_step_and_exports(kinds):
    c = client(kinds, kinds["alice"])
    aid = start_task(c, kinds["steps"])
    page = c.get(f"/tasks/{aid}")
    assert page.text.count('data-testid="step-') == 3 + 3 * 3  # 3 steps, 3 radios each
    assert 'name="step_2" value="-1"' in page.text and "2. 19 * 3 = 56" in page.text
    token = csrf(c)
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "step_0": "1", "step_2": "-1"})
    assert r.status_code == 422 and "step 2: choose good, neutral or bad" in r.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "step_0": "1", "step_1": "1"})
    assert r.status_code == 422 and "steps: expected 3 marks (one per step), got 2" in r.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "step_0": "1", "step_1": "-1", "step_2": "-1"})
    assert r.status_code == 303
    again = c.get(f"/tasks/{aid}")
    assert re.search(r'name="step_1" value="-1" required data-testid="step-2-bad" checked', again.text)

    bearer = {"Authorization": f"Bearer {kinds['alice']}"}
    view = c.get(f"/api/tasks/{aid}", headers=bearer).json()
    assert view["steps"] == ["1. 12 + 7 = 19", "2. 19 * 3 = 56", "3. The answer is 56."]
    assert view["answer"] == {"steps": [1, -1, -1]}
    r = c.post(f"/api/tasks/{aid}/label", json={"steps": ["good", "bad", "neutral"]}, headers=bearer)
    assert r.status_code == 200 and r.json()["revised"] is True

    r = kinds["admin"].get(f"/admin/projects/{kinds['steps']}/export?format=records&method=raw")
    (row,) = [json.loads(line) for line in r.text.splitlines()]
    assert row["steps"] == view["steps"] and row["step_labels"] == [1, -1, 0]
