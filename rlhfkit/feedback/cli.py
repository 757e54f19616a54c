"""``rlhfkit studio ...``: run the feedback studio and manage its projects from the shell.

``register(subparsers)`` adds the ``studio`` command to the main ``rlhfkit`` parser; every
sub-command sets ``func`` (``handler(args) -> exit code``). Heavy imports (FastAPI, uvicorn, torch)
happen inside the handlers. ``python -m rlhfkit.feedback.cli studio ...`` runs it standalone.

Typical session::

    rlhfkit studio create-project demo --task pairwise --overlap 3 --db studio.sqlite3
    rlhfkit studio generate demo prompts.jsonl --model default -k 2     # or: studio import demo cands.jsonl
    rlhfkit studio add-annotator alice                                  # prints alice's login link
    rlhfkit studio serve                                                # prints the admin login link
    rlhfkit studio report demo
    rlhfkit studio export demo --out prefs.jsonl --method dawid-skene   # PreferencePair JSONL
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from rlhfkit.feedback import TASK_TYPES

DB_ENV = "RLHFKIT_STUDIO_DB"
ADMIN_ENV = "RLHFKIT_STUDIO_ADMIN_TOKEN"
DEFAULT_DB = "studio.sqlite3"


def _db_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", default=os.environ.get(DB_ENV, DEFAULT_DB),
                   help=f"SQLite file path or database URL, e.g. postgresql+psycopg://user@host/db "
                        f"(default: ${DB_ENV} or {DEFAULT_DB})")
    return p


def _open(args):
    from rlhfkit.feedback.db import open_database

    return open_database(args.db)


def _fail(message: str) -> int:
    from rlhfkit.errors import error_exit

    return error_exit("studio", message)


def _guard(handler):
    """Turn every user error (:class:`rlhfkit.errors.RlhfkitError`) into one line on stderr and
    exit code 2."""

    def run(args) -> int:
        from rlhfkit.errors import RlhfkitError, error_exit

        try:
            return handler(args)
        except RlhfkitError as err:
            return error_exit("studio", err)
        except RecursionError:  # a JSON file nested deeper than the parser goes
            return _fail("the input is nested too deeply to read (JSON depth)")

    run.__doc__ = handler.__doc__
    return run


# --------------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    import uvicorn

    from rlhfkit.feedback.app import create_app

    token = args.admin_token or os.environ.get(ADMIN_ENV)
    generated = not token
    token = token or secrets.token_urlsafe(24)
    if len(token) < 16:
        return _fail("the admin token must be at least 16 characters")
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = (args.base_url or f"http://{shown_host}:{args.port}").rstrip("/")
    app = create_app(args.db, token, secure_cookies=args.secure_cookies, base_url=url)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("warning: listening beyond this machine; put the studio behind HTTPS and use "
              "--secure-cookies", file=sys.stderr)
    print(f"feedback studio on {url} (database: {args.db})")
    if generated:
        print(f"admin login: {url}/login?token={token}")
    else:
        print(f"admin login: {url}/login?token=<the admin token you set>")
    sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_create_project(args) -> int:
    from rlhfkit.feedback import service
    from rlhfkit.feedback.ingest import items_for_task, read_prompt_file

    db = _open(args)
    items = items_for_task(args.task, read_prompt_file(args.file)) if args.file else []
    pid = service.create_project(db, args.name, args.task, overlap=args.overlap,
                                 gold_rate=args.gold_rate, gold_threshold=args.gold_threshold,
                                 min_gold=args.min_gold, instructions=args.instructions,
                                 assignment_minutes=args.assignment_minutes, items=items)
    print(f"project {args.name!r} created (id {pid}, task {args.task}, {args.overlap} annotators per item)")
    if args.file:
        print(f"imported {len(items)} items from {args.file}")
    return 0


def cmd_archive(args) -> int:
    from rlhfkit.feedback import service

    service.set_archived(_open(args), args.project, not args.reopen)
    print(f"project {args.project!r} {'reopened' if args.reopen else 'archived (closed)'}")
    return 0


def cmd_delete(args) -> int:
    from rlhfkit.feedback import service

    if not args.yes:
        return _fail(f"deleting {args.project!r} removes all its items and labels; add --yes to confirm")
    name = service.delete_project(_open(args), args.project)
    print(f"project {name!r} deleted")
    return 0


def _import_file(db, project, path) -> int:
    from rlhfkit.feedback import service
    from rlhfkit.feedback.ingest import items_for_task, read_prompt_file

    task = service.project_info(db, project)["task_type"]
    n = service.add_items(db, project, items_for_task(task, read_prompt_file(path)))
    print(f"imported {n} items from {path}")
    return 0


def cmd_import(args) -> int:
    return _import_file(_open(args), args.project, args.file)


def cmd_generate(args) -> int:
    from rlhfkit.feedback import service
    from rlhfkit.feedback.generate import generate_candidates
    from rlhfkit.feedback.ingest import items_for_task, read_prompt_file

    db = _open(args)
    task = service.project_info(db, args.project)["task_type"]
    records = read_prompt_file(args.file)
    todo = [r for r in records if not r.responses] if not args.regenerate else records
    print(f"sampling {args.k} candidates for {len(todo)} prompts with model {args.model!r} ...")
    outs = generate_candidates([r.prompt for r in todo], model=args.model, k=args.k,
                               max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_p=args.top_p, seed=args.seed)
    for rec, cands in zip(todo, outs):
        rec.responses = cands
    n = service.add_items(db, args.project, items_for_task(task, records))
    print(f"imported {n} items into {args.project!r}")
    return 0


def cmd_add_annotator(args) -> int:
    from rlhfkit.feedback import service

    _aid, token = service.add_annotator(_open(args), args.name, args.expires_days)
    print(f"annotator {args.name!r} added; login link (shown once):")
    print(f"{args.base_url.rstrip('/')}/login?token={token}")
    return 0


def cmd_new_link(args) -> int:
    from rlhfkit.feedback import service

    token = service.rotate_token(_open(args), args.name, args.expires_days)
    print(f"new login link for {args.name!r} (the old one no longer works):")
    print(f"{args.base_url.rstrip('/')}/login?token={token}")
    return 0


def cmd_report(args) -> int:
    from rlhfkit.feedback.report import project_report

    report = project_report(_open(args), args.project)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    g, a = report["progress"], report["agreement"]
    print(f"{report['project']['name']} ({report['project']['task_type']}): {g['percent']}% "
          f"({g['regular_labels']}/{g['target_labels']} labels, {g['complete_items']}/{g['items']} items complete)")
    for key in ("fleiss_kappa", "alpha_nominal", "alpha_ordinal", "alpha_interval", "cohen_mean"):
        if key in a:
            print(f"  {key}: {a[key] if a[key] is not None else 'n/a'}")
    if "position_bias" in report:
        b = report["position_bias"]
        print(f"  left chosen: {b['left_rate']} of {b['left'] + b['right']} decisive choices (p={b['p_value']})")
    for row in report["annotators"]:
        flag = "  FLAGGED" if row["flagged"] else ""
        print(f"  {row['annotator']}: {row['labels']} labels, gold {row['gold_correct']}/"
              f"{row['gold_answered']}, reliability {row['reliability']}{flag}")
    return 0


def cmd_export(args) -> int:
    from collections import Counter

    from rlhfkit.feedback.export import export_jsonl

    dropped: Counter = Counter()
    n = export_jsonl(_open(args), args.project, args.out, method=args.method, soft=args.soft,
                     include_gold=args.include_gold, min_labels=args.min_labels, as_pairs=args.as_pairs,
                     dropped=dropped)
    left_out = ", ".join(f"{reason}: {k}" for reason, k in sorted(dropped.items()))
    print(f"wrote {n} records to {args.out}" + (f" (left out: {left_out})" if left_out else ""))
    return 0


def _interop_db(args):
    """The database, once the project's task type is known to have an interop mapping."""
    from rlhfkit.feedback import service

    db = _open(args)
    service.check_interop(db, args.project)
    return db


def _say_imported(counts, path) -> None:
    print(f"imported {counts.items} items and {counts.labels} labels from {path}")
    if counts.differing:
        print(f"warning: {counts.differing} answers differ from the label their annotator already has on "
              "that item; the stored labels were kept", file=sys.stderr)


def cmd_import_labelstudio(args) -> int:
    from rlhfkit.feedback.interop import import_labelstudio, read_emails, read_labelstudio_users

    emails = read_emails(args.emails) if args.emails else None
    users = read_labelstudio_users(args.users) if args.users else None
    _say_imported(import_labelstudio(_interop_db(args), args.project, args.file, emails=emails, users=users,
                                     ground_truth=args.ground_truth), args.file)
    return 0


def cmd_export_labelstudio(args) -> int:
    from rlhfkit.feedback.interop import export_labelstudio, read_emails

    emails = read_emails(args.emails) if args.emails else None
    n = export_labelstudio(_interop_db(args), args.project, args.out, args.config, emails=emails)
    print(f"wrote {n} Label Studio tasks to {args.out}" + (f" (config: {args.config})" if args.config else ""))
    return 0


def cmd_import_argilla(args) -> int:
    from rlhfkit.feedback.interop import import_argilla

    _say_imported(import_argilla(_interop_db(args), args.project, args.file), args.file)
    return 0


def cmd_export_argilla(args) -> int:
    from rlhfkit.feedback.interop import export_argilla

    n = export_argilla(_interop_db(args), args.project, args.out)
    print(f"wrote {n} Argilla records to {args.out}")
    return 0


# --------------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------------

def _add(sub, name: str, handler, help_text: str, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, parents=parents,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(func=_guard(handler))
    return p


def _register_server_and_projects(sub, db) -> None:
    """``serve``, ``create-project``, ``archive`` and ``delete``."""
    p = _add(sub, "serve", cmd_serve, "start the web server (migrates the database first)", db)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--admin-token", default=None,
                   help=f"admin credential (default: ${ADMIN_ENV}, else a new random one is printed)")
    p.add_argument("--secure-cookies", action="store_true",
                   help="mark session cookies Secure (when served over HTTPS)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--base-url", default=None,
                   help="public address login links are built from, e.g. https://studio.example.org "
                        "(default: http://HOST:PORT); never taken from a request's Host header")

    p = _add(sub, "create-project", cmd_create_project, "create a project", db)
    p.add_argument("name", help="project name (unique)")
    p.add_argument("--task", required=True, choices=list(TASK_TYPES),
                   help="what annotators do: compare two answers, rank k, score 1-7, critique, "
                        "thumbs up/down on one answer (binary), or mark each step (steps)")
    p.add_argument("--overlap", type=int, default=3, help="annotators per item (r)")
    p.add_argument("--gold-rate", type=float, default=0.1,
                   help="probability that a task is an unannounced gold item")
    p.add_argument("--gold-threshold", type=float, default=0.7,
                   help="flag annotators whose gold accuracy is below this")
    p.add_argument("--min-gold", type=int, default=3, help="gold answers needed before flagging")
    p.add_argument("--instructions", default="", help="guidelines shown on every task")
    p.add_argument("--assignment-minutes", type=int, default=60,
                   help="an unanswered task goes back to the pool after this many minutes")
    p.add_argument("--file", default=None,
                   help="also import this prompt/candidate file (same transaction: a bad file "
                        "creates nothing)")

    p = _add(sub, "archive", cmd_archive, "archive (close) a project: annotators no longer see it "
             "and answers can no longer change; reports and exports keep working", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("--reopen", action="store_true", help="reopen an archived project instead")

    p = _add(sub, "delete", cmd_delete, "delete a project with all its items and labels", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")


_EMAILS_HELP = "JSON file {studio annotator name: Label Studio member email}"


def _register_interchange(sub, db) -> None:
    """``import-`` / ``export-labelstudio`` and ``import-`` / ``export-argilla``."""
    for fmt, imp, exp in (("labelstudio", cmd_import_labelstudio, cmd_export_labelstudio),
                          ("argilla", cmd_import_argilla, cmd_export_argilla)):
        p = _add(sub, f"import-{fmt}", imp, f"import a {fmt} JSON export (items and labels)", db)
        p.add_argument("project", help="project name or id (its task type decides the shape)")
        p.add_argument("file", help="JSON file" + (" (Label Studio's JSON or JSON_MIN export)"
                                                   if fmt == "labelstudio" else ""))
        if fmt == "labelstudio":
            p.add_argument("--emails", default=None, help=_EMAILS_HELP + "; those emails come back "
                           "as the studio names")
            p.add_argument("--users", default=None, help="Label Studio's user list (GET /api/users) "
                           "to name annotators by email when the export gives only user ids")
            p.add_argument("--ground-truth", default="vote", choices=["vote", "gold"],
                           help="Label Studio's ground-truth flag: 'vote' keeps the flagged "
                                "annotation as a normal vote; 'gold' makes it the item's gold "
                                "answer (the item becomes a gold item) instead of a vote")
        p = _add(sub, f"export-{fmt}", exp, f"export the project as {fmt} JSON", db)
        p.add_argument("project", help="project name or id")
        p.add_argument("--out", required=True, help="output JSON file")
        if fmt == "labelstudio":
            p.add_argument("--config", default=None, help="also write the labelling config (XML) here")
            p.add_argument("--emails", default=None, help=_EMAILS_HELP + "; the labels of annotators "
                           "it names become their annotations, all others predictions 'rlhfkit:<name>'")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``studio`` and its sub-commands to an ``argparse`` sub-parser collection."""
    studio = subparsers.add_parser(
        "studio", help="human-feedback collection web app (projects, annotators, export)",
        description="The feedback studio: collect pairwise / ranking / score / critique labels, "
                    "measure agreement, screen annotators with gold items, export records.")
    sub = studio.add_subparsers(dest="studio_command", metavar="COMMAND", required=True)
    db = [_db_parent()]

    _register_server_and_projects(sub, db)
    p = _add(sub, "import", cmd_import,
             "import items: JSONL of {prompt, responses}, {prompt, chosen, rejected}, {prompt, "
             "response} or chat {messages}; a 'gold' key marks gold items", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("file", help="JSONL / JSONL.gz / JSON file")

    p = _add(sub, "generate", cmd_generate,
             "sample k candidates per prompt with a model and import them as items", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("file", help="prompt file (records without responses are sampled)")
    p.add_argument("--model", default="default", help="model name or folder ('default', 'tiny', ...)")
    p.add_argument("-k", "--k", type=int, default=2, help="candidates per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regenerate", action="store_true",
                   help="sample for every prompt, replacing responses present in the file")

    for name, handler, text in (("add-annotator", cmd_add_annotator, "add an annotator and print the login link"),
                                ("new-link", cmd_new_link, "issue a new login link (revokes the old one)")):
        p = _add(sub, name, handler, text, db)
        p.add_argument("name", help="annotator name")
        p.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the studio is served")
        p.add_argument("--expires-days", type=float, default=None,
                       help="the link stops working after this many days (default: never)")

    p = _add(sub, "report", cmd_report, "progress, agreement and annotator quality of a project", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")

    p = _add(sub, "export", cmd_export,
             "export labels as rlhfkit records (PreferencePair / Ranking / ScoreFeedback / "
             "LanguageFeedback / BinaryFeedback / StepFeedback JSONL)", db)
    p.add_argument("project", help="project name or id")
    p.add_argument("--out", required=True, help="output JSONL file (written atomically)")
    p.add_argument("--method", default="majority", choices=["majority", "dawid-skene", "raw", "mean"],
                   help="aggregation: majority vote, reliability-weighted Dawid-Skene, every label "
                        "(raw), or mean score")
    p.add_argument("--soft", action="store_true", help="pairwise: label = P(chosen better) from votes")
    p.add_argument("--include-gold", action="store_true", help="also export gold items")
    p.add_argument("--min-labels", type=int, default=1, help="skip items with fewer labels")
    p.add_argument("--as-pairs", action="store_true", help="ranking: expand into preference pairs")

    _register_interchange(sub, db)
    return studio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rlhfkit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
