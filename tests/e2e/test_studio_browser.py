"""End to end in a real browser: admin sets up projects, two annotators log in by link (a
confirmation step; a link for someone else never switches a session silently), label (keyboard
shortcuts select, Enter saves; one shortcut label undone and changed), see their progress, and the
admin reads agreement and exports preference pairs.

Drives Debian's Chromium (``/usr/bin/chromium``, or ``$RLHFKIT_CHROMIUM``) headless through
Playwright for Python against the real server (uvicorn on a free loopback port). Skips with the
reason when Playwright or Chromium is missing. A second session gives thumbs up/down and step
labels with the keyboard and the mouse. ``collect_preferences_in_browser(workdir)`` returns
the exported PreferencePair JSONL path so a later stage (``rlhfkit rm train``) can reuse it.
Set ``RLHFKIT_UPDATE_SCREENSHOTS=1`` to refresh docs/images/studio-*.png.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADMIN = "e2e-admin-token-0123456789abcdef"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROMPTS = [
    {"prompt": "What is the capital of France?", "responses": [
        "The capital of France is Paris.", "France does not have a capital city."]},
    {"prompt": "Give me a tip for sleeping better.", "responses": [
        "Drink three espressos at night.", "Keep a regular schedule and avoid screens for an hour before bed."]},
    {"prompt": "Translate 'thank you' into Spanish.", "responses": [
        "Gracias.", "Merci."]},
]
GOOD = {"The capital of France is Paris.", "Keep a regular schedule and avoid screens for an hour before bed.",
        "Gracias."}
RANK_PROMPTS = [{"prompt": "Write a one-line greeting."}, {"prompt": "Name a primary colour."}]
RANK_FALLBACK = [{"prompt": "Name a primary colour.", "responses": ["Red.", "Maybe red?", "Purple."]}]


def _chromium() -> str:
    path = os.environ.get("RLHFKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    return path


def _tiny_model_ok() -> bool:
    try:
        import torch  # noqa: F401

        from rlhfkit.models import resolve_model_path

        resolve_model_path("tiny")
        return True
    except Exception:  # noqa: BLE001 - any failure means "import candidates instead"
        return False


def _admin_create(page, name, task, upload: Path, overlap=2, generate=False):
    page.goto("/admin")
    form = page.locator("form[data-testid=create-project]")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=task_type]").select_option(task)
    form.locator("input[name=overlap]").fill(str(overlap))
    form.locator("input[name=gold_rate]").fill("0")
    form.locator("input[name=file]").set_input_files(str(upload))
    if generate:
        form.locator("input[name=generate]").check()
        form.locator("input[name=model]").fill("tiny")
        form.locator("input[name=k]").fill("3")
        form.locator("input[name=max_new_tokens]").fill("8")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/admin/projects/*")
    return int(page.url.rsplit("/", 1)[1])


def _add_annotator(page, name) -> str:
    page.goto("/admin")
    form = page.locator("form[data-testid=add-annotator]")
    form.locator("input[name=name]").fill(name)
    form.locator("button[type=submit]").click()
    link = page.locator("[data-testid=login-link]").input_value()
    return "/login" + link.split("/login", 1)[1]  # the path: the server's base URL is a default


def _open_link(page, link, name):
    """A login link shows a confirmation page; the session starts only with the click."""
    page.goto(link)
    assert page.locator("[data-testid=login-confirm]").is_visible()
    with page.expect_navigation():
        page.locator("[data-testid=confirm-login]").click()
    assert ("Hello " + name in page.content()) if name != "admin" else page.url.endswith("/admin")


def _answer(page, action):
    """A button click saves at once; a shortcut key only selects, and Enter saves."""
    if action.startswith("choose-"):
        with page.expect_navigation():
            page.locator(f"[data-testid={action}]").click()
        return
    page.keyboard.press(action)
    assert "press Enter to save" in page.locator("[data-testid=selection]").inner_text()
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _label_pairs(page, pid, decide, shot: Path | None = None, undo_first=False) -> int:
    """decide(left_text, right_text, i) -> key to press (1/2/3/a/b/t) or a button test id.
    ``undo_first``: answer the first task with the opposite key, then undo that from the next page
    and give the decided answer instead."""
    page.goto("/")
    page.locator(f"[data-testid=start-{pid}]").click()
    done = 0
    while "/done" not in page.url:
        page.wait_for_selector("[data-testid=candidate-A]")
        assert "left" in page.locator("[data-testid=progress]").inner_text()
        if shot is not None and done == 0:
            page.screenshot(path=str(shot), full_page=True)
        left = page.locator("[data-testid=candidate-A] .response").inner_text()
        right = page.locator("[data-testid=candidate-B] .response").inner_text()
        action = decide(left, right, done)
        if undo_first and done == 0:
            _answer(page, {"1": "2", "2": "1"}.get(action, "1"))  # the wrong side
            with page.expect_navigation():
                page.locator("[data-testid=undo-last]").click()
            assert page.locator("[data-testid=already-done]").is_visible()
        _answer(page, action)
        done += 1
    return done


def _start(page, pid, ready: str):
    """Open the project's first task from the start page; wait until ``ready`` (a test id) shows."""
    page.goto("/")
    page.locator(f"[data-testid=start-{pid}]").click()
    page.wait_for_selector(f"[data-testid={ready}]")


def _stray_typing_stores_nothing(page, pid):
    """Typing a sentence outside the reason box selects at most one answer and saves none."""
    _start(page, pid, "candidate-A")
    url = page.url
    page.keyboard.type("the left one is better")
    page.keyboard.press("Escape")
    assert page.url == url and page.locator("[data-testid=selection]").inner_text() == ""


def _label_rankings(page, pid) -> int:
    page.goto("/")
    page.locator(f"[data-testid=start-{pid}]").click()
    done = 0
    while "/done" not in page.url:
        page.wait_for_selector("[data-testid=rank-1]")
        k = page.locator(".rankable").count()
        if done == 0:  # keyboard: answers k, k-1, ... then Enter
            for n in range(k, 1, -1):
                page.keyboard.press(str(n))
            assert page.locator("[data-testid=order]").input_value() == ",".join(
                str(n) for n in range(k, 0, -1))
            with page.expect_navigation():
                page.keyboard.press("Enter")
        else:  # mouse: click from first to last
            for n in range(1, k + 1):
                page.locator(f"[data-testid=rank-{n}]").click()
            with page.expect_navigation():
                page.locator("[data-testid=submit-ranking]").click()
        done += 1
    return done


def collect_preferences_in_browser(workdir: Path) -> Path:
    """Run the whole browser session; returns the exported PreferencePair JSONL file."""
    from playwright.sync_api import sync_playwright

    from rlhfkit.feedback.app import BackgroundServer, create_app

    chromium = _chromium()
    workdir.mkdir(parents=True, exist_ok=True)
    upload = workdir / "candidates.jsonl"
    upload.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    generate = _tiny_model_ok()
    rank_upload = workdir / "rank_prompts.jsonl"
    rank_upload.write_text("".join(json.dumps(p) + "\n" for p in (RANK_PROMPTS if generate else RANK_FALLBACK)))
    shots = {"compare": workdir / "studio-compare.png", "quality": workdir / "studio-quality.png"}
    export_path = workdir / "studio_preferences.jsonl"

    app = create_app(str(workdir / "studio.sqlite3"), ADMIN)
    with BackgroundServer(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            view = {"width": 1280, "height": 860}
            admin = browser.new_context(base_url=url, viewport=view, accept_downloads=True).new_page()
            _open_link(admin, f"/login?token={ADMIN}", "admin")
            pairs_id = _admin_create(admin, "helpfulness-pairs", "pairwise", upload)
            rank_id = _admin_create(admin, "greetings-ranking", "ranking", rank_upload, generate=generate)
            links = {name: _add_annotator(admin, name) for name in ("alice", "bob")}

            people = {}
            for name, link in links.items():
                people[name] = browser.new_context(base_url=url, viewport=view).new_page()
                _open_link(people[name], link, name)
            # bob's link opened in alice's browser (as a hostile page could do): a warning, no switch
            people["alice"].goto(links["bob"])
            assert "Switch to bob" in people["alice"].locator("[data-testid=login-switch]").inner_text() + \
                people["alice"].locator("[data-testid=confirm-login]").inner_text()
            people["alice"].goto("/")
            assert "Hello alice" in people["alice"].content()
            progress = people["alice"].locator(f"[data-testid=progress-{pairs_id}]").inner_text()
            assert progress == "0 done · 3 left", progress
            _stray_typing_stores_nothing(people["alice"], pairs_id)

            def alice(left, right, i):  # prefers the good answer; keyboard "1"/"2" for A/B
                return "1" if left in GOOD else "2"

            def bob(left, right, i):  # agrees except on the Spanish item (tie); a button, then letters
                if "Gracias." in (left, right):
                    return "t"
                if i == 0:
                    return "choose-A" if left in GOOD else "choose-B"
                return "a" if left in GOOD else "b"

            assert _label_pairs(people["alice"], pairs_id, alice, shots["compare"], undo_first=True) == 3
            assert _label_pairs(people["bob"], pairs_id, bob) == 3
            assert "You finished" in people["bob"].content()
            people["bob"].goto("/")
            assert people["bob"].locator(f"[data-testid=finished-{pairs_id}]").is_visible()
            assert "3 done · 0 left" in people["bob"].locator(f"[data-testid=progress-{pairs_id}]").inner_text()
            for name in people:
                assert _label_rankings(people[name], rank_id) >= 1

            admin.goto(f"/admin/projects/{pairs_id}")
            admin.wait_for_selector("[data-testid=annotator-quality]")
            fleiss = admin.locator("[data-testid=fleiss]").inner_text()
            assert fleiss != "n/a" and -1.0 <= float(fleiss) <= 1.0
            # alice (0, 1, 0) vs bob (0, 1, tie) in candidate terms: p_o = 2/3, p_e = 1/3 -> 0.5
            assert admin.locator("[data-testid=cohen-mean]").inner_text() == "0.500"
            assert admin.locator("[data-testid=cohen-pairs]").inner_text().count("alice") == 1
            assert "100.0%" in admin.locator("[data-testid=progress]").inner_text()
            admin.screenshot(path=str(shots["quality"]), full_page=True)
            with admin.expect_download() as download:
                admin.locator("[data-testid=export-majority]").click()
            download.value.save_as(str(export_path))
            admin.goto(f"/admin/projects/{rank_id}")
            assert "100.0%" in admin.locator("[data-testid=progress]").inner_text()
        finally:
            browser.close()
    if os.environ.get("RLHFKIT_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        for shot in shots.values():
            shutil.copy(shot, REPO / "docs" / "images" / shot.name)
    return export_path


def _read_pairs(path: Path) -> list:
    """Read the export back as PreferencePair records (readers module when present)."""
    from rlhfkit.data.records import PreferencePair, as_conversation

    try:
        from rlhfkit.data.readers import read_records  # type: ignore[import-not-found]
    except ImportError:
        read_records = None
    if read_records is not None:
        try:
            return list(read_records(path))
        except TypeError:
            pass
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        out.append(PreferencePair(as_conversation(row["prompt"], f"{path}:{n}"), row["chosen"],
                                  row["rejected"], row.get("margin"), row.get("label", 1.0),
                                  f"{path}:{n}", row.get("meta", {})))
    return out


def test_browser_session_collects_preferences(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                                                      "(pip install playwright)")
    _chromium()
    export_path = collect_preferences_in_browser(tmp_path / "studio")
    pairs = _read_pairs(export_path)
    from rlhfkit.data.records import PreferencePair

    assert len(pairs) == 3 and all(isinstance(p, PreferencePair) for p in pairs)
    by_prompt = {p.prompt[-1].content: p for p in pairs}
    for spec in PROMPTS[:2]:  # both annotators preferred the good answer
        pair = by_prompt[spec["prompt"]]
        good, bad = sorted(spec["responses"], key=lambda r: r not in GOOD)
        assert (pair.chosen, pair.rejected, pair.label) == (good, bad, 1.0)
        assert sorted(pair.meta["annotators"]) == ["alice", "bob"]
    split = by_prompt[PROMPTS[2]["prompt"]]  # alice: good, bob: tie -> no majority -> tie label
    assert split.label == 0.5 and split.meta["split"] is True
    assert (tmp_path / "studio" / "studio-compare.png").stat().st_size > 10_000
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.models import LabelHistory

    db = open_database(str(tmp_path / "studio" / "studio.sqlite3"))
    with db.read() as s:  # alice's undone shortcut answer is kept as history
        assert len(s.query(LabelHistory).all()) == 1
    db.close()
    # the export feeds the reward stage as it is (the split item is a tie label: BCE objective)
    from tests.conftest import run_cli

    rm_out = tmp_path / "rm"
    assert run_cli("rm", "train", "model=tiny", f"data.train={export_path}", "data.dev_fraction=0", "objective.pairwise=bce",
                   "normalize.reference=train", f"train.output_dir={rm_out}", "train.max_steps=2",
                   "train.progress=false") == 0
    assert (rm_out / "final" / "config.json").exists()


THUMBS = [{"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."},
          {"prompt": "What is 3 + 3?", "response": "3 + 3 = 7."}]
STEPS = [{"prompt": "Start with 12, add 7, then multiply by 3.",
          "response": "1. 12 + 7 = 19\n2. 19 * 3 = 56\n3. The answer is 56."}]


def _thumbs(page, pid):
    """First task: the U key selects thumbs up, Enter saves; second: a reason typed (its letters
    select nothing), then a click on thumbs down."""
    _start(page, pid, "thumb-up")
    _answer(page, "u")
    page.wait_for_selector("[data-testid=thumb-down]")
    page.locator("textarea[name=reason]").fill("")
    page.locator("textarea[name=reason]").type("wrong sum, should be 6")
    assert page.locator("[data-testid=selection]").inner_text() == ""
    with page.expect_navigation():
        page.locator("[data-testid=thumb-down]").click()
    assert "/done" in page.url


def _step_marks(page, pid):
    """G marks step 1 good; Enter with steps 2 and 3 unmarked saves nothing and says so; a click
    marks step 2 neutral, then Shift+B marks it and the step after it bad; Enter saves."""
    _start(page, pid, "step-1")
    url = page.url
    page.keyboard.press("g")
    page.keyboard.press("Enter")
    assert page.url == url and "Step 2 is not marked" in page.locator("[data-testid=selection]").inner_text()
    page.locator("[data-testid=step-2-neutral]").click()
    assert "1 step(s) still to mark" in page.locator("[data-testid=selection]").inner_text()
    page.keyboard.press("Shift+B")
    assert page.locator("[data-testid=step-3-bad]").is_checked()
    assert "All steps marked" in page.locator("[data-testid=selection]").inner_text()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/done" in page.url


def test_browser_thumbs_and_step_labels(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                                                      "(pip install playwright)")
    from playwright.sync_api import sync_playwright

    from rlhfkit.feedback.app import BackgroundServer, create_app
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.export import export_records

    chromium = _chromium()
    uploads = {}
    for name, rows in (("thumbs", THUMBS), ("steps", STEPS)):
        uploads[name] = tmp_path / f"{name}.jsonl"
        uploads[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    db_path = str(tmp_path / "studio.sqlite3")
    with BackgroundServer(create_app(db_path, ADMIN)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            admin = browser.new_context(base_url=url).new_page()
            _open_link(admin, f"/login?token={ADMIN}", "admin")
            thumbs_id = _admin_create(admin, "thumbs", "binary", uploads["thumbs"], overlap=1)
            steps_id = _admin_create(admin, "steps", "steps", uploads["steps"], overlap=1)
            link = _add_annotator(admin, "carol")
            carol = browser.new_context(base_url=url).new_page()
            _open_link(carol, link, "carol")
            _thumbs(carol, thumbs_id)
            _step_marks(carol, steps_id)
        finally:
            browser.close()
    db = open_database(db_path)
    try:
        thumbs = export_records(db, thumbs_id, method="raw")
        steps = export_records(db, steps_id, method="raw")
    finally:
        db.close()
    # the items come in random order: the first got the U key (up), the second the reason and a click
    assert sorted((t.label, t.meta["reason"]) for t in thumbs) == [(False, "wrong sum, should be 6"), (True, "")]
    (step,) = steps
    assert step.steps == ("1. 12 + 7 = 19", "2. 19 * 3 = 56", "3. The answer is 56.")
    assert step.step_labels == (1, -1, -1)
