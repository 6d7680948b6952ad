"""How good are the proposals? Recall of the ground truth at IoU 0.5 and 0.7, mean best IoU,
and recall against the number of windows kept: the ceiling proposals put on a detector's AP,
measurable before any training (an object no window covers can never be detected).

An object counts as recalled at threshold ``t`` when some window has IoU ≥ ``t`` with it
(Hosang et al.'s convention). IoU uses the devkit's inclusive-pixel (+1) convention, as
:mod:`sppdet.evaluation.voc`. Difficult objects are left out, as the VOC evaluation leaves them.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..fileio import atomic_write_json
from ..boxes import iou

if TYPE_CHECKING:
    from ..datasets.common import ImageRecord

THRESHOLDS = (0.5, 0.7)
# the budgets the methods are compared at (sppdet proposals with several methods)
BUDGETS = (100, 300, 1000, 2000)


def window_grid(max_windows: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … and the :data:`BUDGETS` below ``max_windows``, then
    ``max_windows`` itself."""
    grid = sorted({m * 10 ** e for e in range(8) for m in (1, 2, 5)} | set(BUDGETS))
    return [k for k in grid if k < max_windows] + [max(1, int(max_windows))]


def evaluate_proposals(records: Sequence["ImageRecord"], boxes_of: Callable[["ImageRecord"], np.ndarray],
                       classes: Sequence[str], out_dir: str | Path | None = None,
                       seconds_per_image: float | None = None) -> dict:
    """Recall and best-IoU statistics of ``boxes_of(record)`` (``[K, 4]``, 0-based inclusive,
    in ranking order) over the non-difficult objects of ``records``.

    Writes ``proposals.json`` and ``proposal_recall.png`` into ``out_dir`` (when given) and
    returns the same dict: ``windows_per_image`` (median), ``seconds_per_image``,
    ``recall[thr][class]``, ``mean_best_iou[class]`` (``None`` for a class without objects),
    plus ``recall_curve`` (``k`` and, per threshold, per class and ``"all"``, the recall of the
    top ``k`` windows), ``objects`` per class, ``images``, and the totals over all classes.
    """
    classes = list(classes)
    cidx = {c: i for i, c in enumerate(classes)}
    counts, best_parts, cum_parts, cls_parts = [], [], [], []
    for r in records:
        props = np.asarray(boxes_of(r), dtype=np.float64).reshape(-1, 4)
        counts.append(len(props))
        keep = [not d and lab in cidx for lab, d in zip(r.labels, r.difficult)]
        gt = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)[np.asarray(keep, dtype=bool)]
        if len(gt) == 0:
            continue
        cls_parts.append(np.array([cidx[lab] for lab, k in zip(r.labels, keep) if k], dtype=np.int64))
        ov = iou(gt, props) if len(props) else np.zeros((len(gt), 0))
        best_parts.append(ov.max(1) if ov.shape[1] else np.zeros(len(gt)))
        cum_parts.append(np.maximum.accumulate(ov, axis=1) if ov.shape[1] else np.zeros((len(gt), 0)))
    ks = window_grid(max(counts) if counts else 1)
    obj_cls = np.concatenate(cls_parts) if cls_parts else np.zeros(0, np.int64)
    best = np.concatenate(best_parts) if best_parts else np.zeros(0)
    # best IoU among each object's image's top-k windows, for every k of the grid
    at_k = np.concatenate([c[:, np.minimum(np.array(ks), c.shape[1]) - 1] if c.shape[1]
                           else np.zeros((len(c), len(ks))) for c in cum_parts]) if cum_parts \
        else np.zeros((0, len(ks)))

    def frac(mask: np.ndarray, sel: np.ndarray) -> float | None:
        return float(mask[sel].mean()) if sel.any() else None

    result: dict = {
        "windows_per_image": float(np.median(counts)) if counts else 0.0,
        "seconds_per_image": None if seconds_per_image is None else float(seconds_per_image),
        "recall": {}, "mean_best_iou": {}, "recall_curve": {"k": ks},
        "objects": {c: int((obj_cls == i).sum()) for i, c in enumerate(classes)},
        "images": len(counts), "windows_per_image_mean": float(np.mean(counts)) if counts else 0.0,
    }
    everyone = np.ones(len(best), dtype=bool)
    for t in THRESHOLDS:
        key = str(t)
        result["recall"][key] = {c: frac(best >= t, obj_cls == i) for i, c in enumerate(classes)}
        curve = {c: [frac(at_k[:, j] >= t, obj_cls == i) for j in range(len(ks))]
                 for i, c in enumerate(classes)}
        curve["all"] = [frac(at_k[:, j] >= t, everyone) for j in range(len(ks))]
        result["recall_curve"][key] = curve
    result["mean_best_iou"] = {c: frac(best, obj_cls == i) for i, c in enumerate(classes)}
    result["recall_all"] = {str(t): frac(best >= t, everyone) for t in THRESHOLDS}
    result["mean_best_iou_all"] = frac(best, everyone)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_recall_curve(result, out / "proposal_recall.png")
        atomic_write_json(out / "proposals.json", result)
    return result


def plot_recall_curve(result: dict, path: str | Path) -> Path:
    """Recall at IoU 0.5 (solid) and 0.7 (dashed) against the number of top windows kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["recall_curve"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    names = [c for c in curve[str(THRESHOLDS[0])] if c != "all"] + ["all"]
    for i, name in enumerate(names):
        color = "black" if name == "all" else f"C{i}"
        for t, style in zip(THRESHOLDS, ("-", "--")):
            ys = [np.nan if v is None else v for v in curve[str(t)][name]]
            if not np.isnan(ys).all():
                ax.plot(curve["k"], ys, style, color=color, lw=2 if name == "all" else 1.3,
                        label=f"{name} @{t}")
    ax.set_xscale("log")
    ax.set(xlabel="windows per image (top k of the ranking)", ylabel="recall", ylim=(0, 1.02),
           title=f"proposal recall (median {result['windows_per_image']:.0f} windows/image)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def recall_at(result: dict, k: int, thr: float, name: str = "all") -> float | None:
    """Recall at IoU ``thr`` of the top ``k`` windows (all of them when an image has fewer)."""
    curve = result["recall_curve"]
    ks = curve["k"]
    j = max((i for i, v in enumerate(ks) if v <= k), default=0)
    return curve[str(thr)][name][j]


def compare_proposals(results: dict[str, dict], out_dir: str | Path) -> str:
    """Methods side by side (``results``: name → :func:`evaluate_proposals`'s dict): recall at
    IoU 0.5 and 0.7 at each budget of windows, overall and per class, and seconds per image.
    Writes ``comparison.md``, ``comparison.json`` and ``proposal_recall.png`` (one curve per
    method); returns the markdown."""
    out = Path(out_dir)
    names = list(results)
    classes = [c for c in next(iter(results.values()))["objects"]]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| method | windows/img | s/img | " + " | ".join(f"R@0.5 / R@0.7 top {k}" for k in BUDGETS) + " |",
             "|---" * (3 + len(BUDGETS)) + "|"]
    table: dict = {}
    for n in names:
        r = results[n]
        sec = r["seconds_per_image"]
        row = {k: {str(t): recall_at(r, k, t) for t in THRESHOLDS} for k in BUDGETS}
        per_class = {c: {k: {str(t): recall_at(r, k, t, c) for t in THRESHOLDS} for k in BUDGETS} for c in classes}
        table[n] = {"windows_per_image": r["windows_per_image"], "seconds_per_image": sec, "all": row,
                    "per_class": per_class}
        lines.append(f"| {n} | {r['windows_per_image']:.0f} | {'cached' if sec is None else f'{sec:.3f}'} | "
                     + " | ".join(f"{fmt(row[k]['0.5'])} / {fmt(row[k]['0.7'])}" for k in BUDGETS) + " |")
    lines += ["", "Per class, recall at IoU 0.7 (top 300 / top 1000 windows):", "",
              "| method | " + " | ".join(classes) + " |", "|---" * (1 + len(classes)) + "|"]
    for n in names:
        pc = table[n]["per_class"]
        lines.append(f"| {n} | " + " | ".join(f"{fmt(pc[c][300]['0.7'])} / {fmt(pc[c][1000]['0.7'])}"
                                              for c in classes) + " |")
    md = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", table)
    from ..fileio import atomic_write

    atomic_write(out / "comparison.md", md)
    _plot_comparison(results, out / "proposal_recall.png")
    return md


def _plot_comparison(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (n, r) in enumerate(results.items()):
        curve = r["recall_curve"]
        for t, style in zip(THRESHOLDS, ("-", "--")):
            ys = [np.nan if v is None else v for v in curve[str(t)]["all"]]
            ax.plot(curve["k"], ys, style, color=f"C{i}", lw=1.6, label=f"{n} @{t}")
    ax.set_xscale("log")
    ax.set(xlabel="windows per image (top k of the ranking)", ylabel="recall (all classes)", ylim=(0, 1.02),
           title="proposal recall by method")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
