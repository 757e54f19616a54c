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


# ------------------------------------------------------------------ hardening (issue 11) ----

def test_tokens_are_redacted_from_the_access_log(studio, capfd):
    """Item 12: a login link opened against the real server leaves no token in its log."""
    import httpx

    from rlhfkit.feedback.app import BackgroundServer

    with BackgroundServer(studio["app"], log_level="info") as url:
        assert httpx.get(f"{url}/login?token={studio['alice']}").status_code == 200
        assert httpx.get(f"{url}/login?token={ADMIN}&x=1").status_code == 200
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert "GET /login?token=[redacted]" in text and "token=[redacted]&x=1" in text
    assert studio["alice"] not in text and ADMIN not in text


def test_login_link_is_a_confirmation_that_never_switches_a_session_silently(studio):
    """Item 13: opening someone else's link shows a page; only a same-site POST logs in, and an
    existing session is replaced only when the person confirms the switch."""
    alice = client(studio, studio["alice"])
    page = alice.get(f"/login?token={studio['bob']}")  # what a hostile site would send
    assert page.status_code == 200 and "Switch to bob" in page.text and "logged in as" in page.text
    assert "Hello alice" in alice.get("/").text  # a GET changes nothing
    # a cross-site form post has neither the login nonce cookie nor its CSRF token
    forged = TestClient(studio["app"], follow_redirects=False)
    forged.cookies.set("studio_session", alice.cookies.get("studio_session"))
    assert forged.post("/login", data={"token": studio["bob"]}).status_code == 403
    # the pasted-token form while logged in: asks first (409), switches only when confirmed
    form = alice.get("/login")
    token = CSRF_RE.findall(form.text)[-1]
    r = alice.post("/login", data={"token": studio["bob"], "csrf_token": token})
    assert r.status_code == 409 and "Switch to bob" in r.text
    assert "Hello alice" in alice.get("/").text
    r = login(alice, studio["bob"])  # the confirmation page's own button (carries "replace")
    assert r.status_code == 303 and "Hello bob" in alice.get("/").text
    same = alice.get(f"/login?token={studio['bob']}")  # already bob: straight through
    assert same.status_code == 303


def test_logout_ends_the_session_on_the_server(studio):
    """Item 14: a copy of the cookie taken before logout no longer works."""
    alice = client(studio, studio["alice"])
    stolen = TestClient(studio["app"], follow_redirects=False)
    stolen.cookies.set("studio_session", alice.cookies.get("studio_session"))
    assert stolen.get("/").status_code == 200
    assert alice.post("/logout", data={"csrf_token": csrf(alice)}).status_code == 303
    assert stolen.get("/").status_code == 303 and stolen.get("/tasks/1").status_code == 401
    admin = client(studio, ADMIN)
    copy = TestClient(studio["app"], follow_redirects=False)
    copy.cookies.set("studio_session", admin.cookies.get("studio_session"))
    admin.post("/logout", data={"csrf_token": csrf(admin, "/admin")})
    assert copy.get("/admin").status_code == 401
    assert client(studio, studio["alice"]).get("/").status_code == 200  # logging in again works


def test_expired_link_is_refused(studio):
    """Item 12: an optional expiry on login links (and their sessions)."""
    import datetime as dt

    from rlhfkit.feedback.models import Annotator

    aid, token = service.add_annotator(studio["db"], "temp", expires_days=0.5)
    c = client(studio, token)
    assert c.get("/").status_code == 200
    with studio["db"].transaction() as s:
        s.get(Annotator, aid).token_expires_at -= dt.timedelta(days=1)
    assert c.get("/").status_code == 303
    r = c.get(f"/login?token={token}")
    assert r.status_code == 401 and "expired" in r.text
    bearer = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/me", headers=bearer).status_code == 401


def test_an_answer_can_be_changed_from_the_next_page(studio):
    """Item 15: after an answer the next page offers to change it; the change is kept with its
    history, and refused once the project is closed."""
    c = client(studio, studio["alice"])
    aid = start_task(c, studio["pid"])
    r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c), "choice": "A"})
    assert r.status_code == 303 and r.headers["location"].endswith(f"?saved={aid}")
    nxt = c.get(r.headers["location"])
    assert f'href="/tasks/{aid}" data-testid="undo-last"' in nxt.text
    page = c.get(f"/tasks/{aid}")
    assert "You can change your answer" in page.text and "choose-A" in page.text
    r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c, f"/tasks/{aid}"), "choice": "B"})
    assert r.status_code == 303
    label = service.get_task(studio["db"], aid, 1)
    assert label.answer["choice"] == "B"
    from rlhfkit.feedback.report import load_project

    _info, _items, labels = load_project(studio["db"], studio["pid"])
    assert [lab.display_choice for lab in labels] == ["right"]
    assert [h["display_choice"] for h in service.label_history(studio["db"], labels[0].label_id)] == ["left"]
    service.set_archived(studio["db"], studio["pid"])
    r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c), "choice": "A"})
    assert r.status_code == 409 and "closed" in r.text
    assert "can no longer change" in c.get(f"/tasks/{aid}").text


def test_shortcut_keys_select_and_enter_confirms():
    """Item 15 (script side): a key only selects; Enter saves (checked in the browser test too)."""
    from pathlib import Path

    js = (Path(service.__file__).parent / "static" / "studio.js").read_text()
    assert "form.requestSubmit(selected)" in js and "button.click()" not in js


BAD_JSON = [
    b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the parser goes
    b'{"choice": "A", "n": ' + b"9" * 5000 + b"}",  # an integer over 4,300 digits
]


def test_every_malformed_input_is_a_4xx(studio):
    """Item 16: inputs that crashed with 500 now get 422/404 with a message."""
    alice = client(studio)
    bearer = {"Authorization": f"Bearer {studio['alice']}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    aid = alice.post(f"/api/projects/{studio['pid']}/next", headers=bearer).json()["assignment_id"]
    for body in BAD_JSON:
        r = alice.post(f"/api/tasks/{aid}/label", content=body, headers=bearer)
        assert r.status_code == 422, r.text[:200]
        r = alice.post("/api/admin/projects", content=body, headers=admin)
        assert r.status_code == 422, r.text[:200]
    lone = '{"choice": "A", "reason": "bad \\ud800 text"}'.encode()
    r = alice.post(f"/api/tasks/{aid}/label", content=lone, headers=bearer)
    assert r.status_code == 422 and "reason" in r.json()["error"]
    r = alice.post(f"/api/tasks/{aid}/label", json={"choice": "A", "reason": "nul \x00"}, headers=bearer)
    assert r.status_code == 422 and "NUL" in r.json()["error"]
    for path in ("/api/tasks/²", "/api/tasks/1²"):
        assert alice.get(path, headers=bearer).status_code == 404, path
    assert alice.get("/api/admin/projects/³/report", headers=admin).status_code == 404
    r = alice.post(f"/api/tasks/{aid}/label", json={"choice": "A", "reason": 7}, headers=bearer)
    assert r.status_code == 422
    assert alice.post("/api/projects/²/next", headers=bearer).status_code == 404
    for overlap in ("Infinity", "1e400", "NaN"):
        body = f'{{"name": "x{overlap}", "task_type": "score", "overlap": {overlap}}}'.encode()
        r = alice.post("/api/admin/projects", content=body, headers=admin)
        assert r.status_code == 422 and "overlap" in r.json()["error"], r.text
    r = alice.post("/api/admin/projects", content=b'{"name": "y", "task_type": "score", "min_gold": 1e400}',
                   headers=admin)
    assert r.status_code == 422 and "min_gold" in r.json()["error"]
    r = alice.post("/api/admin/projects", content=b'{"name": "bad\\ud800", "task_type": "score"}',
                   headers=admin)
    assert r.status_code == 422 and "name: contains invalid Unicode" in r.json()["error"]
    r = alice.post("/api/admin/projects", json={"name": "p2", "task_type": "pairwise",
                                                "records": [{"prompt": "q\x00", "responses": ["a", "b"]}]},
                   headers=admin)
    assert r.status_code == 422 and "NUL" in r.json()["error"]
    assert [p["name"] for p in service.list_projects(studio["db"])] == ["p"]
    web = client(studio, ADMIN)
    tok = csrf(web, "/admin")
    r = web.post("/admin/projects", data={"csrf_token": tok, "name": "g", "task_type": "pairwise",
                                          "generate": "on", "model": "/no/such/model/dir"},
                 files={"file": ("p.jsonl", b'{"prompt": "hi"}\n', "application/json")})
    assert r.status_code == 422 and "model" in r.text
    r = web.post("/admin/projects", data={"csrf_token": tok, "name": "deep", "task_type": "score"},
                 files={"file": ("d.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "application/json")})
    assert r.status_code == 422 and "d.jsonl" in r.text
    assert [p["name"] for p in service.list_projects(studio["db"])] == ["p"]


@pytest.mark.parametrize("order", [[2.0, 1.0], [2.5, 1], [True, 2], "1.5,2"])
def test_rankings_refuse_floats_and_booleans(studio, order):
    """Item 17."""
    from rlhfkit.feedback.ingest import items_for_task, parse_record

    pid = service.create_project(studio["db"], "rank", "ranking", overlap=1)
    rec = parse_record({"prompt": "p", "responses": ["r0", "r1"]}, "t:1")
    service.add_items(studio["db"], pid, items_for_task("ranking", [rec]))
    c = client(studio)
    bearer = {"Authorization": f"Bearer {studio['alice']}"}
    aid = c.post(f"/api/projects/{pid}/next", headers=bearer).json()["assignment_id"]
    r = c.post(f"/api/tasks/{aid}/label", json={"order": order}, headers=bearer)
    assert r.status_code == 422 and "whole numbers" in r.json()["error"]
    assert c.post(f"/api/tasks/{aid}/label", json={"order": [2, 1]}, headers=bearer).status_code == 201


def test_api_refuses_an_empty_prompt(studio):
    """Item 17."""
    admin = TestClient(studio["app"])
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    r = admin.post(f"/api/admin/projects/{studio['pid']}/items",
                   json={"records": [{"prompt": "  ", "responses": ["a", "b"]}]}, headers=bearer)
    assert r.status_code == 422 and "prompt: must not be empty" in r.json()["error"]


def test_failed_import_creates_no_project_and_admin_archives_or_deletes(studio):
    """Item 18: create + import is one transaction; archive hides, delete removes."""
    admin = client(studio, ADMIN)
    token = csrf(admin, "/admin")
    bad = b'{"prompt": "a", "responses": ["x", "y"]}\n{"prompt": "b", "responses": ["only one"]}\n'
    r = admin.post("/admin/projects", data={"csrf_token": token, "name": "new", "task_type": "pairwise"},
                   files={"file": ("bad.jsonl", bad, "application/json")})
    assert r.status_code == 422 and "bad.jsonl:2" in r.text
    assert "new" not in [p["name"] for p in service.list_projects(studio["db"])]
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    r = admin.post("/api/admin/projects", headers=bearer, json={
        "name": "new", "task_type": "pairwise", "records": [{"prompt": "a", "responses": ["x", "y"]}]})
    assert r.status_code == 201 and r.json()["items"] == 1
    alice = client(studio, studio["alice"])
    assert "new" in alice.get("/").text
    pid = r.json()["id"]
    assert admin.post(f"/admin/projects/{pid}/archive",
                      data={"csrf_token": token, "archived": "1"}).status_code == 303
    assert "new" not in alice.get("/").text
    assert alice.post(f"/projects/{pid}/next", data={"csrf_token": csrf(alice)}).status_code == 409
    r = admin.post(f"/admin/projects/{pid}/delete", data={"csrf_token": token, "confirm": "nope"})
    assert r.status_code == 422
    r = admin.post(f"/admin/projects/{pid}/delete", data={"csrf_token": token, "confirm": "new"})
    assert r.status_code == 303 and admin.get(f"/admin/projects/{pid}").status_code == 404
    assert admin.delete(f"/api/admin/projects/{studio['pid']}", headers=bearer).json() == {"deleted": "p"}
    assert service.list_projects(studio["db"]) == []


def test_admin_page_items_base_url_413_headers_and_head(studio):
    """Item 20."""
    admin = client(studio, ADMIN)
    page = admin.get("/admin", headers={"Host": "evil.example"})
    assert f'data-testid="items-{studio["pid"]}">3<' in page.text and "built-in method" not in page.text
    r = admin.post("/admin/annotators", data={"csrf_token": csrf(admin, "/admin"), "name": "dan"},
                   headers={"Host": "evil.example"})
    assert "https://studio.example/login?token=" in r.text and "evil.example" not in r.text
    big = admin.post("/login", content=b"x" * 300_000, headers={"Content-Type": "text/plain"})
    assert big.status_code == 413
    assert big.headers["x-frame-options"] == "DENY" and "default-src" in big.headers["content-security-policy"]
    anon = TestClient(studio["app"], follow_redirects=False)
    head = anon.head("/")
    assert head.status_code == 303 and head.content == b""
    assert anon.head("/login").status_code == 200 and anon.head("/healthz").status_code == 200


def test_annotators_see_progress_and_a_clear_end(studio):
    """Item 21: done / left per project, a finished note instead of the button, empty and
    archived projects hidden."""
    service.create_project(studio["db"], "empty-one", "pairwise")
    c = client(studio, studio["alice"])
    home = c.get("/")
    assert "empty-one" not in home.text
    assert re.search(r'data-testid="progress-\d+"><strong>0</strong> done · <strong>3</strong> left', home.text)
    pid = studio["pid"]
    for _ in range(3):
        aid = start_task(c, pid)
        page = c.get(f"/tasks/{aid}")
        assert 'data-testid="progress"' in page.text and "left" in page.text
        c.post(f"/tasks/{aid}", data={"csrf_token": csrf(c), "choice": "A"})
    home = c.get("/")
    assert f'data-testid="finished-{pid}"' in home.text and f"start-{pid}" not in home.text
    assert "<strong>3</strong> done · <strong>0</strong> left" in home.text
    me = c.get("/api/me", headers={"Authorization": f"Bearer {studio['alice']}"}).json()
    assert me["projects"] == [{"id": pid, "name": "p", "task_type": "pairwise", "done": 3, "remaining": 0}]
