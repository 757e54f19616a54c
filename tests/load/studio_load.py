"""Load test of the feedback studio: many simulated annotators label at once over loopback HTTP.

The server runs as a real ``rlhfkit studio serve`` subprocess (uvicorn) on 127.0.0.1; each simulated
annotator is a thread with its own HTTP connection that asks for a task, answers it (re-sending its
first and every 20th answer, as a client retrying after a lost response would), until the time is up or the work is done.
Afterwards the database is checked: every acknowledged label is stored exactly once, with the
acknowledged value, and no regular item has more than ``overlap`` labels.

    python tests/load/studio_load.py --duration 60                  # SQLite, then PostgreSQL
    python tests/load/studio_load.py --backend sqlite --annotators 100

PostgreSQL is a throwaway server started in a temp dir with Debian's initdb / pg_ctl (run as the
``postgres`` user when we are root, since PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ADMIN = "load-test-admin-token-0123456789"
REPO = Path(__file__).resolve().parents[2]


class Unavailable(RuntimeError):
    """A backend cannot be started here (the message says why)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ PostgreSQL ----

def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise Unavailable(f"PostgreSQL's {name} not found (apt-get install -y postgresql)")
    return found


@contextlib.contextmanager
def temp_postgres():
    """Start a throwaway PostgreSQL on 127.0.0.1; yields its SQLAlchemy URL; removes it afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed (pip install 'psycopg[binary]')") from None
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    data, port = root / "data", free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run PostgreSQL") from None
        if not runuser:
            raise Unavailable("running as root and runuser is missing")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    run = lambda *cmd: subprocess.run(prefix + list(cmd), check=True, capture_output=True, text=True,  # noqa: E731
                                      timeout=120)
    try:
        run(initdb, "-D", str(data), "-U", "studio", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c shared_buffers=64MB")
        run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log.txt"), "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"could not start PostgreSQL: {(err.stderr or err.stdout).strip()[:300]}") from None
    try:
        yield f"postgresql+psycopg://studio@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------- server ----

@contextlib.contextmanager
def studio_server(db_url: str):
    """``rlhfkit studio serve`` in a subprocess; yields its base URL."""
    import httpx

    port = free_port()
    env = dict(os.environ, RLHFKIT_STUDIO_ADMIN_TOKEN=ADMIN,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "rlhfkit.feedback.cli", "studio", "serve", "--db", db_url,
           "--port", str(port), "--log-level", "warning"]
    log = tempfile.NamedTemporaryFile("w+", prefix="studio-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"studio server exited: {Path(log.name).read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("studio server did not come up in 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        text = Path(log.name).read_text()
        os.unlink(log.name)
        if "Traceback" in text or "ERROR" in text:
            print(f"studio server log (tail):\n{text[-3000:]}", file=sys.stderr)


# ----------------------------------------------------------------------------------------- load ----

@dataclass
class LoadResult:
    backend: str
    annotators: int
    duration: float
    acked: dict = field(default_factory=dict)  # label_id -> (annotator, assignment_id, choice)
    label_latency: list = field(default_factory=list)
    next_latency: list = field(default_factory=list)
    duplicates_acked: int = 0
    errors: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def percentile(self, values: list, q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    def summary(self) -> str:
        lat, nxt = self.label_latency or [float("nan")], self.next_latency or [float("nan")]
        rate = len(self.acked) / self.duration if self.duration else 0.0
        return (f"[{self.backend}] {self.annotators} annotators, {self.duration:.1f} s: "
                f"{len(self.acked)} labels acknowledged ({rate:.0f}/s), {self.duplicates_acked} repeats "
                f"acknowledged as duplicates; label latency median {statistics.median(lat) * 1000:.1f} ms, "
                f"p99 {self.percentile(lat, 0.99) * 1000:.1f} ms; next-task latency median "
                f"{statistics.median(nxt) * 1000:.1f} ms, p99 {self.percentile(nxt, 0.99) * 1000:.1f} ms; "
                f"errors {len(self.errors)}; integrity problems {len(self.problems)}")


def _setup(db_url: str, annotators: int, items: int, overlap: int):
    from rlhfkit.feedback import service
    from rlhfkit.feedback.db import open_database
    from rlhfkit.feedback.ingest import ItemSpec
    from rlhfkit.data.records import Message

    db = open_database(db_url)
    pid = service.create_project(db, "load", "pairwise", overlap=overlap, gold_rate=0.05)
    specs = [ItemSpec((Message("user", f"prompt {i}"),), [f"answer a{i}", f"answer b{i}"],
                      {"preferred": 0} if i % 20 == 0 else None, f"load:{i}") for i in range(items)]
    service.add_items(db, pid, specs)
    tokens = {f"ann{j:03d}": service.add_annotator(db, f"ann{j:03d}")[1] for j in range(annotators)}
    return db, pid, tokens


def _worker(url, pid, name, token, stop_at, result: LoadResult, lock, seed):
    import httpx

    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    n_done = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            r = client.post(f"/api/projects/{pid}/next")
            t1 = time.perf_counter()
            if r.status_code != 200:
                with lock:
                    result.errors.append(("next", r.status_code, r.text[:200]))
                continue
            task = r.json()
            if task.get("done"):
                break
            choice = rng.choice(["A", "B", "tie"])
            body = {"choice": choice, "reason": f"{name} says {choice}"}
            t2 = time.perf_counter()
            r = client.post(f"/api/tasks/{task['assignment_id']}/label", json=body)
            t3 = time.perf_counter()
            with lock:
                result.next_latency.append(t1 - t0)
                result.label_latency.append(t3 - t2)
                if r.status_code == 201:
                    result.acked[r.json()["label_id"]] = (name, task["assignment_id"], choice)
                else:
                    result.errors.append(("label", r.status_code, r.text[:200]))
            n_done += r.status_code == 201
            if r.status_code == 201 and n_done % 20 == 1:  # a client retry of the same answer
                again = client.post(f"/api/tasks/{task['assignment_id']}/label", json=body)
                with lock:
                    if again.status_code == 200 and again.json()["label_id"] == r.json()["label_id"]:
                        result.duplicates_acked += 1
                    else:
                        result.errors.append(("repeat", again.status_code, again.text[:200]))


def _verify(db, pid, result: LoadResult, overlap: int) -> None:
    import json

    from sqlalchemy import func, select

    from rlhfkit.feedback.models import Annotator, Assignment, Item, Label

    with db.read() as s:
        rows = s.execute(select(Label.id, Annotator.name, Label.assignment_id, Label.display_choice,
                                Label.value_json).join(Annotator, Annotator.id == Label.annotator_id)
                         .where(Label.project_id == pid)).all()
        per_item = s.execute(select(Label.item_id, func.count(Label.id)).join(Item, Item.id == Label.item_id)
                             .where(Label.project_id == pid, Item.is_gold.is_(False))
                             .group_by(Label.item_id)).all()
        dup_pairs = s.execute(select(Label.item_id, Label.annotator_id, func.count(Label.id))
                              .where(Label.project_id == pid).group_by(Label.item_id, Label.annotator_id)
                              .having(func.count(Label.id) > 1)).all()
        over = s.execute(select(Assignment.item_id, func.count(Assignment.id))
                         .join(Item, Item.id == Assignment.item_id)
                         .where(Assignment.project_id == pid, Item.is_gold.is_(False))
                         .group_by(Assignment.item_id).having(func.count(Assignment.id) > overlap)).all()
    stored = {r[0]: r for r in rows}
    shown = {"A": "left", "B": "right", "tie": "tie"}
    for label_id, (name, aid, choice) in result.acked.items():
        row = stored.get(label_id)
        if row is None:
            result.problems.append(f"acknowledged label {label_id} is missing")
        elif (row[1], row[2], row[3]) != (name, aid, shown[choice]) or \
                json.loads(row[4])["reason"] != f"{name} says {choice}":
            result.problems.append(f"label {label_id} differs from what was acknowledged: {row}")
    if len(rows) != len(result.acked):
        result.problems.append(f"{len(rows)} labels stored but {len(result.acked)} acknowledged")
    result.problems += [f"item {i} has {n} labels > overlap {overlap}" for i, n in per_item if n > overlap]
    result.problems += [f"item {i} annotator {a} has {n} labels" for i, a, n in dup_pairs]
    result.problems += [f"item {i} has {n} assignments > overlap" for i, n in over]


def run_load(db_url: str, backend: str, annotators: int = 50, duration: float = 20.0,
             items: int = 3000, overlap: int = 3) -> LoadResult:
    """Run the load against ``db_url``; returns timings, acknowledgements and integrity problems."""
    db, pid, tokens = _setup(db_url, annotators, items, overlap)
    result = LoadResult(backend, annotators, 0.0)
    lock = threading.Lock()
    with studio_server(db_url) as url:
        start = time.monotonic()
        stop_at = start + duration
        threads = [threading.Thread(target=_worker, args=(url, pid, n, t, stop_at, result, lock, i),
                                    daemon=True) for i, (n, t) in enumerate(tokens.items())]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=duration + 120)
        result.duration = time.monotonic() - start
    _verify(db, pid, result, overlap)
    db.close()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per backend")
    ap.add_argument("--annotators", type=int, default=50, help="concurrent simulated annotators")
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--overlap", type=int, default=3)
    args = ap.parse_args(argv)
    ok = True
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        try:
            with contextlib.ExitStack() as stack:
                if backend == "sqlite":
                    tmp = stack.enter_context(tempfile.TemporaryDirectory())
                    url = str(Path(tmp) / "load.sqlite3")
                else:
                    url = stack.enter_context(temp_postgres())
                res = run_load(url, backend, args.annotators, args.duration, args.items, args.overlap)
        except Unavailable as err:
            print(f"[{backend}] skipped: {err}")
            continue
        print(res.summary())
        for p in (res.problems + [str(e) for e in res.errors])[:20]:
            print("  ", p)
        ok &= not res.problems and not res.errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
