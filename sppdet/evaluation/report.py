"""Writing an evaluation's outputs: metrics.json, detections.json, comp4 files, PR plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .voc import write_comp4


def write_results(out_dir: str | Path, res: dict, dets: list[dict], classes: Sequence[str], split: str,
                  n_images: int, coco: dict | None = None, plots: bool = False) -> Path:
    """``res`` is :func:`~sppdet.evaluation.voc.evaluate_voc`'s result for ``dets``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"metric": res["metric"], "mAP": res["mAP"], "AP": res["AP"], "npos": res["npos"],
               "images": n_images, "detections": len(dets)}
    if coco is not None:
        metrics["coco"] = coco
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "detections.json").write_text(json.dumps(dets))
    write_comp4(dets, classes, Path(split).stem, out_dir / "comp4")
    if plots:
        from .plots import plot_pr_curves

        plot_pr_curves(res, out_dir / "plots")
    return out_dir
