"""Writing an evaluation's outputs: metrics.json, detections.json, comp4 files, PR plots."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..fileio import atomic_write_json
from .voc import write_comp4


def write_results(out_dir: str | Path, res: dict, dets: list[dict], classes: Sequence[str], split: str,
                  n_images: int, coco: dict | None = None, plots: bool = False,
                  records: Sequence | None = None) -> Path:
    """``res`` is :func:`~sppdet.evaluation.voc.evaluate_voc`'s result for ``dets``; pass the
    split's ``records`` so the comp4 files carry the same image ids the metric used. Every
    file is written atomically (an interrupted write leaves the previous file or none)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"metric": res["metric"], "mAP": res["mAP"], "AP": res["AP"], "npos": res["npos"],
               "images": n_images, "detections": len(dets)}
    if coco is not None:
        metrics["coco"] = coco
    atomic_write_json(out_dir / "detections.json", dets, indent=None)
    write_comp4(dets, classes, Path(split).stem, out_dir / "comp4", records)
    atomic_write_json(out_dir / "metrics.json", metrics)  # last: its presence means the rest is there
    if plots:
        from .plots import plot_pr_curves

        plot_pr_curves(res, out_dir / "plots")
    return out_dir
