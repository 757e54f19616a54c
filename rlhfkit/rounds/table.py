"""The round table: one row per evaluated round, read from the state file, printed, and written as
``rounds.json`` and ``rounds.png`` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TABLE_FILE = "rounds.json"
PLOT_FILE = "rounds.png"


def round_table(state: Any) -> list[dict]:
    """Rows for every round whose eval step is finished."""
    rows, total = [], 0
    for r in sorted(state.done):
        steps = state.done[r]
        label = steps.get("label", {})
        total += label.get("labels", 0)
        if "eval" not in steps:
            continue
        ev, rm, sel = steps["eval"], steps.get("rm", {}), steps.get("select", {})
        rows.append({
            "round": r, "labels": label.get("labels"), "labels_total": total, "source": label.get("source"),
            "selection": sel.get("strategy"), "rm_heldout_accuracy": rm.get("heldout_accuracy"),
            "rm_heldout_pairs": rm.get("heldout_pairs"),
            "win_vs_previous": ev["vs_previous"]["win_rate"], "win_vs_previous_ci": ev["vs_previous"]["win_rate_ci"],
            "win_vs_sft": ev["vs_sft"]["win_rate"], "win_vs_sft_ci": ev["vs_sft"]["win_rate_ci"],
            "kl_to_reference": ev["kl_to_reference"], "reference": ev["reference"], "eval_judge": ev["judge"],
            "confidence": ev.get("confidence"),
        })
    return rows


def _num(x: Any, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def format_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["no round evaluated yet"]
    head = (f"{'round':>5}  {'labels':>6}  {'total':>5}  {'source':<22} {'RM held-out acc':>15}  "
            f"{'win vs prev [CI]':>22}  {'win vs SFT [CI]':>22}  {'KL to ref':>9}")
    lines = [head]
    for row in rows:
        prev = f"{_num(row['win_vs_previous'])} [{_num(row['win_vs_previous_ci'][0])}, {_num(row['win_vs_previous_ci'][1])}]"
        sft = f"{_num(row['win_vs_sft'])} [{_num(row['win_vs_sft_ci'][0])}, {_num(row['win_vs_sft_ci'][1])}]"
        lines.append(f"{row['round']:>5}  {row['labels']:>6}  {row['labels_total']:>5}  {str(row['source']):<22} "
                     f"{_num(row['rm_heldout_accuracy']):>15}  {prev:>22}  {sft:>22}  {_num(row['kl_to_reference']):>9}")
    lines.append(f"eval judge: {rows[-1]['eval_judge']}; CIs: {_num(rows[-1].get('confidence') or 0.95, '.0%')} "
                 "percentile bootstrap over eval prompts; a tie counts one half")
    return lines


def plot_table(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.eval.plots import figure_png
    from rlhfkit.utils.io import atomic_path

    x = [row["round"] for row in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("win_vs_previous", "vs previous round"), ("win_vs_sft", "vs SFT")):
        y = [row[key] for row in rows]
        err = [[v - row[key + "_ci"][0] for v, row in zip(y, rows)], [row[key + "_ci"][1] - v for v, row in zip(y, rows)]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="round", ylabel="win rate", ylim=(0, 1), title=f"judged by {rows[-1]['eval_judge']}")
    ax.legend()
    acc = [row["rm_heldout_accuracy"] for row in rows]
    ax2.plot(x, [a if a is not None else float("nan") for a in acc], marker="o", label="RM held-out accuracy")
    ax2.plot(x, [row["kl_to_reference"] for row in rows], marker="s", label="KL to reference (nats)")
    ax2.set(xlabel="round")
    ax2.legend()
    for a in (ax, ax2):
        a.set_xticks(x)
    fig.tight_layout()
    png = figure_png(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


def write_table(out: Path, rows: list[dict]) -> Path | None:
    """``rounds.json`` always, ``rounds.png`` when a round was evaluated; returns the PNG path."""
    from rlhfkit.utils.io import write_json

    write_json(out / TABLE_FILE, {"rounds": rows})
    if not rows:
        return None
    plot_table(rows, out / PLOT_FILE)
    return out / PLOT_FILE
