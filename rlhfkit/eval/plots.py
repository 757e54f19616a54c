"""PNG figures of the evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


FORMS = {"bon": ("best-of-N", "fit d(alpha - beta d)", "best-of-N || policy", "N = 1"),
         "rl": ("checkpoints", "fit d(alpha - beta log d)", "checkpoint || reference", "the start")}


def plot_overopt(d: Sequence[float], curves: dict, fits: dict, peak_d: float | None, out_png: str | Path,
                 form: str = "bon", title: str = "") -> Path:
    """Gold and proxy gain against sqrt(KL): measured points and the fitted Gao et al. curve.

    ``curves``: label -> gains (one per d); ``fits``: label -> an object with ``predict(d)``;
    ``peak_d``: where the gold fit peaks (a dashed vertical line), or None; ``form``: bon or rl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rlhfkit.utils.io import atomic_path

    points, fit_label, kl_label, start = FORMS[form]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0.0, max(max(d), (peak_d or 0.0) * 1.2) * 1.05, 200)
    for (label, gains), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green")):
        ax.plot(d, gains, "o", color=color, label=f"{label} ({points})")
        if fits.get(label) is not None:
            ax.plot(grid, fits[label].predict(grid), "-", color=color, alpha=0.7, label=f"{label} {fit_label}")
    if peak_d is not None:
        ax.axvline(peak_d, color="gray", linestyle="--", label=f"gold peak sqrt(KL) = {peak_d:.2f}")
    ax.set_xlabel(f"sqrt(KL({kl_label}))  [sqrt(nats)]")
    ax.set_ylabel(f"score gain over {start}  [std of the reward]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(figure_png(fig))
    return out_png
