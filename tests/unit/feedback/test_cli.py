"""``rlhfkit studio ...`` through the argparse entry point (no server)."""

import argparse
import json

import pytest

from rlhfkit.feedback import cli


def run(capsys, *argv):
    code = cli.main(["studio", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_register_adds_studio_with_help_for_every_subcommand(capsys):
    parser = argparse.ArgumentParser(prog="rlhfkit")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    names = ["serve", "create-project", "import", "generate", "add-annotator", "new-link", "report",
             "export", "import-labelstudio", "export-labelstudio", "import-argilla", "export-argilla",
             "archive", "delete"]
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["studio", name, "--help"])
        assert exit_info.value.code == 0
        assert "--db" in capsys.readouterr().out
    args = parser.parse_args(["studio", "export", "demo", "--out", "x.jsonl"])
    assert callable(args.func) and args.method == "majority"


def test_cli_project_lifecycle(tmp_path, capsys):
    db = str(tmp_path / "s.sqlite3")
    cands = tmp_path / "c.jsonl"
    cands.write_text("".join(json.dumps({"prompt": f"q{i}", "responses": [f"a{i}", f"b{i}"]}) + "\n"
                             for i in range(3)))
    code, out, _ = run(capsys, "create-project", "demo", "--task", "pairwise", "--overlap", "1",
                       "--gold-rate", "0", "--db", db, "--file", str(cands))
    assert code == 0 and "imported 3 items" in out
    code, out, _ = run(capsys, "add-annotator", "alice", "--db", db, "--base-url", "http://h:1")
    assert code == 0 and "http://h:1/login?token=" in out
    token = out.strip().splitlines()[-1].split("token=")[1]

    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database

    store = open_database(db)
    me = service.annotator_by_token(store, token)["id"]
    while (view := service.next_task(store, "demo", me)) is not None:
        service.submit_label(store, view.assignment_id, me,
                             {"choice": "A" if view.shown[0].startswith("a") else "B"})
    code, out, _ = run(capsys, "report", "demo", "--db", db)
    assert code == 0 and "100.0%" in out and "alice: 3 labels" in out
    code, out, _ = run(capsys, "report", "demo", "--db", db, "--json")
    assert json.loads(out)["progress"]["complete_items"] == 3
    dest = tmp_path / "out" / "prefs.jsonl"
    code, out, _ = run(capsys, "export", "demo", "--db", db, "--out", str(dest))
    assert code == 0 and "wrote 3 records" in out
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert sorted(r["chosen"] for r in rows) == ["a0", "a1", "a2"]
    for fmt in ("labelstudio", "argilla"):
        path = tmp_path / f"{fmt}.json"
        assert run(capsys, f"export-{fmt}", "demo", "--db", db, "--out", str(path))[0] == 0
        run(capsys, "create-project", f"copy-{fmt}", "--task", "pairwise", "--db", db)
        code, out, _ = run(capsys, f"import-{fmt}", f"copy-{fmt}", str(path), "--db", db)
        assert code == 0 and "imported 3 items and 3 labels" in out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    db = str(tmp_path / "s.sqlite3")
    code, _, err = run(capsys, "import", "nope", str(tmp_path / "x.jsonl"), "--db", db)
    assert code == 2 and err.startswith("rlhfkit studio: error: no project 'nope'")
    run(capsys, "create-project", "p", "--task", "score", "--db", db)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "response": "fine"}\n{"response": "no prompt"}\n')
    code, _, err = run(capsys, "import", "p", str(bad), "--db", db)
    assert code == 2 and "bad.jsonl:2: prompt: missing" in err
    code, _, err = run(capsys, "export", "p", "--db", db, "--out", str(tmp_path / "o.jsonl"),
                       "--method", "mean")
    assert code == 0
    code, _, err = run(capsys, "create-project", "p", "--task", "score", "--db", db)
    assert code == 2 and "already exists" in err
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = run(capsys, "import", "p", str(deep), "--db", db)
    assert code == 2 and "nested too deeply" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "create-project", "q", "--task", "score", "--db", db, "--gold-rate", "inf")
    assert code == 2 and err.startswith("rlhfkit studio: error: gold_rate:")


def test_create_with_a_bad_file_leaves_nothing_and_projects_archive_and_delete(tmp_path, capsys):
    """Issue 11 item 18 through the CLI."""
    db = str(tmp_path / "s.sqlite3")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "responses": ["a", "b"]}\n{"prompt": "q2", "responses": ["a"]}\n')
    code, _, err = run(capsys, "create-project", "demo", "--task", "pairwise", "--db", db, "--file", str(bad))
    assert code == 2 and "bad.jsonl:2" in err
    bad.write_text('{"prompt": "q", "responses": ["a", "b"]}\n')
    code, out, _ = run(capsys, "create-project", "demo", "--task", "pairwise", "--db", db, "--file",
                       str(bad), "--assignment-minutes", "15")
    assert code == 0 and "imported 1 items" in out  # the name was still free
    assert run(capsys, "archive", "demo", "--db", db)[0] == 0
    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database

    info = service.project_info(open_database(db), "demo")
    assert info["archived"] and info["assignment_minutes"] == 15
    assert run(capsys, "archive", "demo", "--reopen", "--db", db)[0] == 0
    code, _, err = run(capsys, "delete", "demo", "--db", db)
    assert code == 2 and "--yes" in err
    code, out, _ = run(capsys, "delete", "demo", "--db", db, "--yes")
    assert code == 0 and service.list_projects(open_database(db)) == []
    code, out, _ = run(capsys, "add-annotator", "eve", "--db", db, "--expires-days", "2")
    assert code == 0 and service.list_annotators(open_database(db))[0]["expires"] is not None


def test_generate_with_the_tiny_model(tmp_path, capsys):
    db = str(tmp_path / "s.sqlite3")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Say hello"}\n{"prompt": "Name a fruit"}\n')
    run(capsys, "create-project", "gen", "--task", "ranking", "--db", db)
    code, out, err = run(capsys, "generate", "gen", str(prompts), "--model", "tiny", "-k", "3",
                         "--max-new-tokens", "4", "--db", db)
    assert code == 0, err
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.report import load_project

    _info, items, _labels = load_project(open_database(db), "gen")
    assert len(items) == 2 and all(len(i.candidates) == 3 for i in items)
    assert items[0].prompt[0].content == "Say hello"


def test_cli_labelstudio_emails_users_ground_truth_and_reimport(tmp_path, capsys):
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "label_studio"
    db = str(tmp_path / "s.sqlite3")
    run(capsys, "create-project", "ls", "--task", "pairwise", "--db", db)
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"id": 2, "email": "alice@example.com"}, {"id": 3, "email": "bob@example.com"}]))
    emails = tmp_path / "emails.json"
    emails.write_text(json.dumps({"alice": "alice@example.com"}))
    args = ["import-labelstudio", "ls", str(fixtures / "pairwise.json"), "--db", db, "--users", str(users),
            "--emails", str(emails), "--ground-truth", "gold"]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "imported 3 items and 3 labels" in out  # bob's flagged answer is a gold answer
    assert "imported 0 items and 0 labels" in run(capsys, *args)[1]
    out_file = tmp_path / "back.json"
    assert run(capsys, "export-labelstudio", "ls", "--db", db, "--out", str(out_file), "--emails", str(emails))[0] == 0
    tasks = json.loads(out_file.read_text())
    people = [a["completed_by"] for t in tasks for a in t["annotations"]]
    models = sorted(p["model_version"] for t in tasks for p in t["predictions"])
    assert people == [{"email": "alice@example.com"}]
    assert models == ["rlhfkit:bob@example.com"] * 2
    emails.write_text(json.dumps({"alice": "alice"}))
    code, _, err = run(capsys, "export-labelstudio", "ls", "--db", db, "--out", str(out_file), "--emails", str(emails))
    assert code == 2 and err.strip().count("\n") == 0 and "emails.json: alice: expected an email address" in err
