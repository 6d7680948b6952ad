"""Precision–recall curves as PNG, one per class."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .voc import class_file_part


def plot_pr_curves(result: dict, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, (rec, prec) in result["curves"].items():
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ap = result["AP"][c]
        if len(rec) and not np.isnan(rec).all():
            ax.plot(rec, prec, lw=1.5)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{c}: AP {'n/a' if ap is None else f'{ap:.3f}'} ({result['metric']})")
        ax.grid(alpha=0.3)
        p = out_dir / f"pr_{class_file_part(c)}.png"
        fig.tight_layout()
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(p)
    return paths
