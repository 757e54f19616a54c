"""PNG curves from a run's ``metrics.jsonl`` (matplotlib, Agg backend: no display needed).

:func:`plot_rl_curves` draws the two curves an RL run is judged by: the reward-model score per
iteration (with the KL-shaped total reward) and the KL to the reference per iteration (with the
adaptive controller's target when there is one), plus held-out evaluation points when logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _series(rows: Sequence[dict], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and value == value:
            xs.append(row["step"])
            ys.append(float(value))
    return xs, ys


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over up to ``window`` points (the first points average fewer)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_rl_curves(metrics: str | Path, out_png: str | Path, target_kl: float | None = None,
                   title: str = "") -> Path | None:
    """Write RM score and KL per step to ``out_png``; returns the path, or None without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.monitor.metrics import read_metrics

    rows = read_metrics(metrics) if Path(metrics).exists() else []
    steps, score = _series(rows, "score")
    if not steps:
        return None
    window = max(1, len(steps) // 10)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, score, alpha=0.35 if window > 1 else 1.0, color="tab:blue", label="RM score (batch mean)")
    if window > 1:
        ax1.plot(steps, smooth(score, window), color="tab:blue", label=f"RM score (mean of {window} iterations)")
    xs, total = _series(rows, "reward")
    if xs:
        ax1.plot(xs, smooth(total, window), color="tab:green", label="score - beta * KL")
    ex, es = _series(rows, "eval/score")
    if ex:
        ax1.plot(ex, es, "o-", color="tab:red", label="held-out score (fixed prompts)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("reward")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    kx, kl = _series(rows, "kl")
    if kx:
        ax2.plot(kx, kl, alpha=0.35 if window > 1 else 1.0, color="tab:orange",
                 label="KL(pi || pi_ref) per response")
        if window > 1:
            ax2.plot(kx, smooth(kl, window), color="tab:orange", label=f"KL (mean of {window} iterations)")
    ekx, ekl = _series(rows, "eval/kl")
    if ekx:
        ax2.plot(ekx, ekl, "o", color="tab:red", label="held-out KL")
    if target_kl is not None:
        ax2.axhline(target_kl, color="gray", linestyle="--", label=f"target {target_kl}")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("nats")
    if ax2.get_lines():
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no KL logged (no reference model)", ha="center", transform=ax2.transAxes)
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    from rlhfkit.utils.io import atomic_path

    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out_png

