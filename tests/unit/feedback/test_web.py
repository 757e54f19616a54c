"""HTTP behaviour of the studio: authentication, isolation, CSRF, input validation, admin flows."""

import json
import re

import pytest

pytest.importorskip("fastapi", reason="the studio web app needs fastapi")
pytest.importorskip("httpx", reason="TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rlhfkit.feedback import service  # noqa: E402

ADMIN = "admin-token-for-tests-0123456789"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def studio(db, make_pairwise):
    from rlhfkit.feedback.app import create_app

    pid = make_pairwise(db, n=3, overlap=2)
    _a, alice = service.add_annotator(db, "alice")
    _b, bob = service.add_annotator(db, "bob")
    app = create_app(db, ADMIN, base_url="https://studio.example")
    return {"app": app, "db": db, "pid": pid, "alice": alice, "bob": bob}


def login(c: TestClient, token: str, **extra):
    """Open a login link and click its confirmation button; returns the POST's response."""
    page = c.get(f"/login?token={token}")
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))
    return c.post("/login", data={**fields, **extra})


def client(studio, token=None) -> TestClient:
    c = TestClient(studio["app"], follow_redirects=False)
    if token:
        r = login(c, token)
        assert r.status_code == 303, r.text
    return c


def csrf(c: TestClient, path="/") -> str:
    return CSRF_RE.search(c.get(path).text).group(1)


def start_task(c: TestClient, pid: int) -> int:
    r = c.post(f"/projects/{pid}/next", data={"csrf_token": csrf(c)})
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


# ------------------------------------------------------------------------------ authentication ----

def test_login_link_sets_session_and_hides_token(studio):
    c = client(studio)
    r = login(c, studio["alice"])
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "studio_session" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    home = c.get("/")
    assert home.status_code == 200 and "Hello alice" in home.text
    assert studio["alice"] not in home.text
    assert home.headers["x-frame-options"] == "DENY" and "default-src 'self'" in home.headers[
        "content-security-policy"]


def test_bad_tokens_and_anonymous_access_are_refused(studio):
    c = client(studio)
    assert c.get("/login?token=not-a-real-token-at-all").status_code == 401
    assert c.get("/").status_code == 303  # to the login page
    for path in ("/admin", "/admin/projects/1", "/tasks/1", "/admin/projects/1/export"):
        assert c.get(path).status_code == 401, path
    r = c.get("/api/admin/projects", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
    assert r.status_code == 401 and r.json()["error"]
    # a forged cookie is ignored
    c.cookies.set("studio_session", "admin|0|abcdef|9999999999.forged")
    assert c.get("/admin").status_code == 401


def test_admin_pages_refuse_annotator_credentials(studio):
    c = client(studio, studio["alice"])
    pid = studio["pid"]
    for path in ("/admin", f"/admin/projects/{pid}", f"/admin/projects/{pid}/export"):
        assert c.get(path).status_code == 403, path
    bearer = {"Authorization": f"Bearer {studio['alice']}"}
    assert c.get(f"/api/admin/projects/{pid}/report", headers=bearer).status_code == 403
    assert c.get(f"/api/admin/projects/{pid}/export", headers=bearer).status_code == 403
    r = c.post("/api/admin/annotators", json={"name": "mallory"}, headers=bearer)
    assert r.status_code == 403
    token = csrf(c)
    r = c.post("/admin/annotators", data={"csrf_token": token, "name": "mallory"})
    assert r.status_code == 403
    assert "mallory" not in [a["name"] for a in service.list_annotators(studio["db"])]


def test_rotating_a_token_ends_its_sessions(studio):
    c = client(studio, studio["alice"])
    assert c.get("/").status_code == 200
    service.rotate_token(studio["db"], "alice")
    assert c.get("/").status_code == 303  # back to login
    assert c.get("/tasks/1").status_code == 401


# ------------------------------------------------------------------------------------ isolation ----

def test_annotators_cannot_read_or_answer_each_others_tasks(studio):
    alice, bob = client(studio, studio["alice"]), client(studio, studio["bob"])
    aid = start_task(alice, studio["pid"])
    assert alice.get(f"/tasks/{aid}").status_code == 200
    assert bob.get(f"/tasks/{aid}").status_code == 404
    r = bob.post(f"/tasks/{aid}", data={"csrf_token": csrf(bob), "choice": "A"})
    assert r.status_code == 404
    bearer = {"Authorization": f"Bearer {studio['bob']}"}
    assert bob.get(f"/api/tasks/{aid}", headers=bearer).status_code == 404
    assert bob.post(f"/api/tasks/{aid}/label", json={"choice": "A"}, headers=bearer).status_code == 404
    assert service.list_projects(studio["db"])[0]["labels"] == 0


def test_annotators_never_see_other_peoples_labels(studio):
    alice, bob = client(studio, studio["alice"]), client(studio, studio["bob"])
    bid = start_task(bob, studio["pid"])
    r = bob.post(f"/tasks/{bid}", data={"csrf_token": csrf(bob), "choice": "B",
                                        "reason": "SECRET-REASON-OF-BOB"})
    assert r.status_code == 303
    aid = start_task(alice, studio["pid"])  # items closest to completion first: bob's item
    pages = [alice.get("/").text, alice.get(f"/tasks/{aid}").text,
             alice.get("/api/me", headers={"Authorization": f"Bearer {studio['alice']}"}).text]
    for page in pages:
        assert "SECRET-REASON-OF-BOB" not in page and "bob" not in page


# ------------------------------------------------------------------------------------------ CSRF ----

def test_forms_without_a_valid_csrf_token_are_refused(studio):
    c = client(studio, studio["alice"])
    aid = start_task(c, studio["pid"])
    assert c.post(f"/tasks/{aid}", data={"choice": "A"}).status_code == 403
    assert c.post(f"/tasks/{aid}", data={"choice": "A", "csrf_token": "x" * 43}).status_code == 403
    assert c.post(f"/projects/{studio['pid']}/next", data={}).status_code == 403
    # a cookie-authenticated API write also needs the token (header)
    assert c.post(f"/api/tasks/{aid}/label", json={"choice": "A"}).status_code == 403
    r = c.post(f"/api/tasks/{aid}/label", json={"choice": "A"}, headers={"X-CSRF-Token": csrf(c)})
    assert r.status_code == 201
    admin = client(studio, ADMIN)
    assert admin.post("/admin/projects", data={"name": "x", "task_type": "score"}).status_code == 403
    assert admin.post("/admin/annotators", data={"name": "eve"}).status_code == 403
    # the login form is protected by a double-submit token
    anon = client(studio)
    assert anon.post("/login", data={"token": studio["bob"]}).status_code == 403
    page = anon.get("/login")
    ok = anon.post("/login", data={"token": studio["bob"], "csrf_token": CSRF_RE.search(page.text).group(1)})
    assert ok.status_code == 303


# ----------------------------------------------------------------------------- input validation ----

def test_malformed_input_gets_clear_4xx(studio):
    c = client(studio, studio["alice"])
    aid = start_task(c, studio["pid"])
    token = csrf(c)
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "choice": "Z"})
    assert r.status_code == 422 and "expected A, B or tie" in r.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "choice": "A", "reason": "x" * 5000})
    assert r.status_code == 422 and "too long" in r.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": token, "choice": "A", "reason": "y" * 400_000})
    assert r.status_code == 413
    for path in ("/tasks/999999", "/tasks/abc", "/tasks/99999999999999999999", "/tasks/-1"):
        assert c.get(path).status_code == 404, path
    bearer = {"Authorization": f"Bearer {studio['alice']}"}
    r = c.post(f"/api/tasks/{aid}/label", content=b"{not json", headers=bearer)
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    r = c.post(f"/api/tasks/{aid}/label", json=["A"], headers=bearer)
    assert r.status_code == 422
    r = c.post(f"/api/tasks/{aid}/label", json={"choice": 1}, headers=bearer)
    assert r.status_code == 422
    r = c.post("/api/projects/424242/next", headers=bearer)
    assert r.status_code == 404 and "no project" in r.json()["error"]
    assert service.list_projects(studio["db"])[0]["labels"] == 0
    ok = c.post(f"/api/tasks/{aid}/label", json={"choice": "tie"}, headers=bearer)
    assert ok.status_code == 201
    again = c.post(f"/api/tasks/{aid}/label", json={"choice": "tie"}, headers=bearer)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    changed = c.post(f"/api/tasks/{aid}/label", json={"choice": "A"}, headers=bearer)
    assert changed.status_code == 200 and changed.json()["revised"] is True


def test_admin_input_validation(studio):
    admin = client(studio, ADMIN)
    token = csrf(admin, "/admin")
    r = admin.post("/admin/projects", data={"csrf_token": token, "name": "x", "task_type": "poem"})
    assert r.status_code == 422 and "task_type" in r.text
    r = admin.post("/admin/projects", data={"csrf_token": token, "name": "x", "task_type": "score",
                                            "overlap": "lots"})
    assert r.status_code == 422 and "overlap" in r.text
    bad = b'{"prompt": "a", "responses": ["x"]}\n{"prompt": 5}\n'
    r = admin.post("/admin/projects", data={"csrf_token": token, "name": "y", "task_type": "score"},
                   files={"file": ("bad.jsonl", bad, "application/json")})
    assert r.status_code == 422 and "bad.jsonl:2: prompt" in r.text
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    pid = studio["pid"]
    for query in ("format=xml", "method=vote"):
        assert admin.get(f"/admin/projects/{pid}/export?{query}").status_code == 422
    assert admin.get("/admin/projects/777/export").status_code == 404
    r = admin.post("/api/admin/projects", json={"name": "z", "task_type": "score", "colour": 1},
                   headers=bearer)
    assert r.status_code == 422 and "colour: unknown key" in r.json()["error"]
    r = admin.post(f"/api/admin/projects/{pid}/items", json={"records": [{"prompt": "q"}]}, headers=bearer)
    assert r.status_code == 422 and "responses" in r.json()["error"]


# ---------------------------------------------------------------------------------- admin flow ----

def test_admin_creates_project_adds_annotator_and_exports(studio):
    admin = client(studio, ADMIN)
    token = csrf(admin, "/admin")
    upload = "".join(json.dumps({"prompt": f"q{i}", "responses": [f"a{i}", f"b{i}"]}) + "\n"
                     for i in range(2))
    r = admin.post("/admin/projects", data={"csrf_token": token, "name": "web", "task_type": "pairwise",
                                            "overlap": "1", "gold_rate": "0"},
                   files={"file": ("c.jsonl", upload.encode(), "application/json")})
    assert r.status_code == 303
    pid = int(r.headers["location"].rsplit("/", 1)[1])
    r = admin.post("/admin/annotators", data={"csrf_token": token, "name": "carol"})
    assert r.status_code == 200
    link = re.search(r'value="(https://studio.example/login\?token=[^"]+)"', r.text).group(1)
    carol = TestClient(studio["app"], follow_redirects=False)
    assert login(carol, link.split("token=")[1]).status_code == 303
    for _ in range(2):
        aid = start_task(carol, pid)
        view = service.get_task(studio["db"], aid, service.list_annotators(studio["db"])[-1]["id"])
        pick = "A" if view.shown[0].startswith("a") else "B"
        assert carol.post(f"/tasks/{aid}", data={"csrf_token": csrf(carol), "choice": pick}).status_code == 303
    r = carol.post(f"/projects/{pid}/next", data={"csrf_token": csrf(carol)})
    assert r.headers["location"] == f"/projects/{pid}/done"
    page = admin.get(f"/admin/projects/{pid}")
    assert page.status_code == 200 and "Annotator quality" in page.text and "carol" in page.text
    report = admin.get(f"/api/admin/projects/{pid}/report", headers={"Authorization": f"Bearer {ADMIN}"})
    assert report.json()["progress"]["percent"] == 100.0
    r = admin.get(f"/admin/projects/{pid}/export?format=records&method=majority")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert sorted(row["chosen"] for row in rows) == ["a0", "a1"]
    assert all(row["meta"]["annotators"] == ["carol"] for row in rows)
    for fmt in ("labelstudio", "argilla"):
        r = admin.get(f"/admin/projects/{pid}/export?format={fmt}")
        assert r.status_code == 200 and json.loads(r.text)


def test_model_text_is_html_escaped(studio):
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    pid = service.create_project(studio["db"], "xss", "score", overlap=1, gold_rate=0)
    rec = parse_record({"prompt": "<b>q</b>", "response": "<script>alert(1)</script>"}, "t:1")
    service.add_items(studio["db"], pid, items_for_task("score", [rec]))
    c = client(studio, studio["alice"])
    page = c.get(f"/tasks/{start_task(c, pid)}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;q&lt;/b&gt;" in page
