"""``rlhfkit report RUN_DIR``: one self-contained ``report.html`` a person can read.

Works on any folder rlhfkit wrote: one stage's run folder, a pipeline folder (``sft/``, ``rm/``,
``ppo/`` ... inside), an ``rlhfkit eval`` (overopt, frontier, people) folder, or a folder holding
several of them. For every run folder found (one holding any of :data:`RUN_MARKERS`; ``final/`` and
``checkpoints/`` are skipped) it shows what is there:

* the config (``config.yaml``) and the data files it names;
* training curves drawn from ``metrics.jsonl`` (the keys in :data:`CURVE_KEYS` that were logged),
  the last logged values, and the PNGs the run already drew (``curves.png``, ``overopt.png``);
* evaluation tables (``eval.json``: win rates with CIs, the length-controlled win rate, diversity,
  mode collapse; ``people.json``: win rates from people's studio verdicts;
  ``overopt.json`` / ``frontier.json``: the best-of-N or RL-checkpoint curve against
  sqrt(KL) and where gold peaks; best-of-N
  ``summary.json``), with baseline and policy answers to the same prompts side by side;
* reward-hacking warnings (``hacking.jsonl``) by detector, with example responses.

Plots are embedded as base64 PNG, styles inline: no script, no external asset, so the file can be
mailed or archived alone. Every text from a run is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from rlhfkit.errors import MissingFileError

REPORT_FILE = "report.html"
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "eval.json", "overopt.json", "frontier.json", "people.json")
SKIP_DIRS = ("final", "checkpoints")
CURVE_KEYS = ("loss", "eval/loss", "eval/accuracy", "score", "eval/score", "reward", "kl", "eval/kl",
              "response_length", "entropy", "win_rate")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}pre{background:#f7f7f7;padding:.8em;overflow:auto;
font-size:.85em}.warn{background:#fff4e5}.side td{width:50%;white-space:pre-wrap}img{max-width:100%}
.note{color:#666;font-size:.9em}"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# ----------------------------------------------------------------------------------------------
# Finding the runs


def _started(folder: Path) -> float:
    """When the run in ``folder`` started: the oldest of its marker files (for chronological order)."""
    times = [(folder / m).stat().st_mtime for m in RUN_MARKERS if (folder / m).exists()]
    return min(times, default=float("inf"))


def find_runs(root: Path, depth: int = 3) -> list[Path]:
    """``root`` and the folders under it (up to ``depth`` levels) that hold a run's files; the
    folders of one level in the order they were run (a pipeline: sft, rm, ppo, eval)."""
    found = [root] if any((root / m).exists() for m in RUN_MARKERS) else []
    if depth > 0:
        children = [p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")]
        for child in sorted(children, key=lambda p: (_started(p), p.name)):
            found += find_runs(child, depth - 1)
    return found


# ----------------------------------------------------------------------------------------------
# Parts of one run's section


def config_part(folder: Path) -> str:
    path = folder / "config.yaml"
    if not path.exists():
        return ""
    import yaml

    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    files = sorted({str(v) for v in _leaves(data) if isinstance(v, str)
                    and (v.startswith("demo:") or v.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")))})
    listed = f"<p>data: {esc(', '.join(files))}</p>" if files else ""
    return f"<h3>Config</h3>{listed}<details><summary>config.yaml</summary><pre>{esc(text)}</pre></details>"


def _leaves(data: Any) -> Iterable[Any]:
    if isinstance(data, dict):
        for v in data.values():
            yield from _leaves(v)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v)
    else:
        yield data


def curves_png(rows: Sequence[dict]) -> bytes | None:
    """Small multiples of every :data:`CURVE_KEYS` series logged in ``rows`` (None when none is)."""
    series = {}
    for key in CURVE_KEYS:
        pts = [(r["step"], float(r[key])) for r in rows
               if "step" in r and isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            series[key] = pts
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.eval.plots import figure_png

    cols = min(3, len(series))
    nrows = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    for ax, (key, pts) in zip(axes.ravel(), series.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o-" if len(xs) < 20 else "-", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)


def metrics_part(folder: Path) -> str:
    rows = read_jsonl(folder / "metrics.jsonl")
    if not rows:
        return ""
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    last = {}
    for r in rows:
        last.update({k: v for k, v in r.items() if k not in ("step", "time") and isinstance(v, (int, float))})
    png = curves_png(rows)
    shown = [(k, v) for k, v in last.items() if k in CURVE_KEYS or k.startswith("eval/")]
    return (f"<h3>Training curves</h3><p>{len(rows)} metric rows, steps {min(steps, default=0)}"
            f"-{max(steps, default=0)} (metrics.jsonl)</p>" + (img(png, "training curves") if png else "")
            + ("<p>last logged values:</p>" + table(["metric", "value"], shown) if shown else ""))


def images_part(folder: Path) -> str:
    pngs = sorted(folder.glob("*.png"))
    return "".join(f"<h3>{esc(p.name)}</h3>{img(p.read_bytes(), p.name)}" for p in pngs)


def hacking_part(folder: Path) -> str:
    rows = read_jsonl(folder / "hacking.jsonl")
    if not rows:
        return ""
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r.get("name", "?"), []).append(r)
    out = [f"<h3>Reward-hacking warnings ({len(rows)})</h3>"]
    for name, hits in by_name.items():
        steps = [h.get("step") for h in hits]
        examples = [e for h in hits for e in h.get("examples", [])][:3]
        out.append(f'<div class="warn"><p><b>{esc(name)}</b>: {len(hits)} warnings, steps {esc(min(steps))}'
                   f"-{esc(max(steps))}. Latest: {esc(hits[-1].get('message', ''))}</p>"
                   + "".join(f"<pre>{esc(e)}</pre>" for e in examples) + "</div>")
    return "".join(out)


def eval_part(folder: Path) -> str:
    s = read_json(folder / "eval.json")
    if not s:
        return ""
    rows = []
    for p in [s["baseline"]] + s["policies"]:
        d, c = p["diversity"], p["mode_collapse"]
        rows.append([p["name"] + (" (baseline)" if p is s["baseline"] else ""), p.get("win_rate", ""),
                     p.get("win_rate_ci", ""), f"{p['wins']}/{p['ties']}/{p['losses']}" if "wins" in p else "",
                     p.get("lc_win_rate", ""), p.get("lc_win_rate_ci", ""), p["mean_score"], d["distinct_2"],
                     d["self_bleu_within"] if d["self_bleu_within"] is not None else "",
                     "; ".join(c["reasons"]) or "no"])
    conf = f"{s['confidence']:.0%} CI"
    intro = (f"<p>judge {esc(s['judge'])}: {s['prompts']} prompts x {s['samples_per_prompt']} samples per "
             f"policy, {s['comparisons_per_policy']} comparisons per policy; ties count one half.</p>")
    return ("<h3>Evaluation against the baseline</h3>" + intro
            + table(["policy", "win rate", conf, "W/T/L", "LC win rate", conf, "mean score", "distinct-2",
                     "self-BLEU", "mode collapse"], rows) + side_by_side(folder / "samples.jsonl"))


def side_by_side(path: Path, prompts: int = 3) -> str:
    """The baseline's and each policy's first answer to the first ``prompts`` prompts."""
    rows = [r for r in read_jsonl(path) if r.get("sample") == 0 and r.get("prompt_index", 99) < prompts]
    if not rows:
        return ""
    names = {r["policy_index"]: r["policy"] for r in rows}
    headers = ["prompt"] + [names[i] + (" (baseline)" if i == 0 else "") for i in sorted(names)]
    body = []
    for p in range(prompts):
        mine = {r["policy_index"]: r for r in rows if r["prompt_index"] == p}
        if mine:
            prompt = next(iter(mine.values()))["prompt"]
            text = prompt if isinstance(prompt, str) else (prompt[-1].get("content", "") if prompt else "")
            body.append([text] + [f"{mine[i]['response']}\n[score {mine[i]['score']:.3g}]" if i in mine else ""
                                  for i in sorted(names)])
    return "<p>answers to the same prompts (first sample):</p>" + table(headers, body, cls="side")


def overopt_part(folder: Path) -> str:
    """The best-of-N (overopt.json) or RL-checkpoint (frontier.json) over-optimisation curve."""
    bon = read_json(folder / "overopt.json")
    s = bon or read_json(folder / "frontier.json")
    if not s:
        return ""
    from rlhfkit.eval.overopt import describe_fits

    head = (["N", "KL", "sqrt KL", "proxy", "gold"] if bon else ["point", "step", "KL", "sqrt KL", "proxy", "gold"])
    rows = [([r["n"]] if bon else [r["label"], r["step"]]) + [r["kl"], r["sqrt_kl"], r["proxy"], r["gold"]]
            for r in s["curve"]]
    title = "Best-of-N over-optimisation" if bon else "Reward vs KL across the run's checkpoints"
    return (f"<h3>{title}</h3><p>proxy {esc(s['proxy'])}, gold {esc(s['gold'])}, {s['prompts']} prompts x "
            f"{s['samples_per_prompt']} samples.</p>"
            + "".join(f"<p>{esc(line)}</p>" for line in describe_fits(s, "bon" if bon else "rl"))
            + table(head, rows))


def people_part(folder: Path) -> str:
    """Win rates from people's studio verdicts (people.json, ``rlhfkit eval people``)."""
    s = read_json(folder / "people.json")
    if not s:
        return ""
    conf = f"{s['confidence']:.0%} CI"
    return (f"<h3>Judged by people</h3><p>{s['matched_labels']} of {s['exported_labels']} exported studio "
            "labels matched the answer pairs; ties count one half.</p>"
            + table(["policy", "win rate", conf, "W/T/L", "prompts"],
                    [[p["name"], p["win_rate"], p["win_rate_ci"], f"{p['wins']}/{p['ties']}/{p['losses']}",
                      p["prompts"]] for p in s["policies"]]))


def bon_part(folder: Path) -> str:
    s = read_json(folder / "summary.json")
    if not isinstance(s, dict):
        return ""
    return "<h3>Summary (summary.json)</h3>" + table(["key", "value"], s.items())


def _safe(part: Any, folder: Path) -> str:
    """One part of a section; a file it cannot read becomes a note in the report, not a traceback."""
    try:
        return part(folder)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        what = part.__name__.replace("_part", "")
        return f'<p class="warn">{esc(what)}: could not read this part of {esc(folder)}: {esc(repr(err))}</p>'


def _name(root: Path, folder: Path) -> str:
    return f"{root.name} (top folder)" if folder == root else str(folder.relative_to(root))


def run_section(root: Path, folder: Path, anchor: str) -> str:
    name = _name(root, folder)
    parts = [_safe(part, folder) for part in (config_part, metrics_part, eval_part, people_part, overopt_part,
                                              bon_part, hacking_part, images_part)]
    final = " (model in final/)" if (folder / "final" / "config.json").exists() else ""
    return f'<h2 id="{anchor}">{esc(name)}{esc(final)}</h2>' + "".join(parts)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``) atomically."""
    from rlhfkit.utils.io import atomic_write_text

    root = Path(run_dir).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such run folder")
    runs = find_runs(root)
    if not runs:
        raise MissingFileError(f"{root}: no rlhfkit run here (none of {', '.join(RUN_MARKERS)} in it or below)")
    toc = "".join(f'<li><a href="#run{i}">{esc(_name(root, r))}</a></li>' for i, r in enumerate(runs))
    body = "".join(run_section(root, r, f"run{i}") for i, r in enumerate(runs))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>rlhfkit report: '
            f"{esc(root.name)}</title><style>{STYLE}</style></head><body><h1>rlhfkit report: {esc(root.name)}"
            f'</h1><p class="note">{len(runs)} run folder(s):</p><ul>{toc}</ul>{body}</body></html>\n')
    path = Path(out) if out else root / REPORT_FILE
    atomic_write_text(path, page)
    return path
