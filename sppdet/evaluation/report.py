"""Writing an evaluation's outputs: metrics.json, detections.json, coco_results.json with its
ground_truth_coco.json, comp4 files, PR plots."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..fileio import atomic_write_json
from .voc import write_comp4


def write_results(out_dir: str | Path, res: dict, dets: list[dict], classes: Sequence[str], split: str,
                  n_images: int, coco: dict | None = None, plots: bool = False,
                  records: Sequence | None = None, category_ids: Mapping[str, int] | None = None,
                  extra: dict | None = None) -> Path:
    """``res`` is :func:`~sppdet.evaluation.voc.evaluate_voc`'s result for ``dets``; pass the
    split's ``records`` so the comp4 files carry the same image ids the metric used, and so
    ``coco_results.json`` is written with the ids of the ground truth that
    :func:`~sppdet.evaluation.coco.coco_ground_truth` builds (a COCO-sourced set's own ids, given
    its ``category_ids``), for pycocotools' ``COCO.loadRes`` or any COCO tool. ``extra`` entries go
into metrics.json as they are. Every file is
    written atomically (an interrupted write leaves the previous file or none)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"metric": res["metric"], "mAP": res["mAP"], "AP": res["AP"], "npos": res["npos"],
               "images": n_images, "detections": len(dets)}
    if coco is not None:
        metrics["coco"] = coco
    metrics.update(extra or {})
    atomic_write_json(out_dir / "detections.json", dets, indent=None)
    if records is not None:
        from .coco import coco_ground_truth, coco_results

        atomic_write_json(out_dir / "coco_results.json", coco_results(records, dets, classes, category_ids),
                          indent=None)
        # the ground truth those results are scored against, with the same ids, for any source
        # (VOC, YOLO, labelImg have no COCO file of their own): COCO(gt).loadRes(results)
        atomic_write_json(out_dir / "ground_truth_coco.json", coco_ground_truth(records, classes, category_ids),
                          indent=None)
    write_comp4(dets, classes, Path(split).stem, out_dir / "comp4", records)
    atomic_write_json(out_dir / "metrics.json", metrics)  # last: its presence means the rest is there
    if plots:
        from .plots import plot_pr_curves

        plot_pr_curves(res, out_dir / "plots")
    return out_dir
