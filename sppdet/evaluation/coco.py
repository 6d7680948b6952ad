"""COCO-style metrics (AP, AP50, AP75, AP by object size) through pycocotools.

VOC ``difficult`` objects become ``iscrowd`` regions, pycocotools' way of ignoring them.
Boxes convert from inclusive pixels ``(x1, y1, x2, y2)`` to COCO ``[x, y, x2-x1+1, y2-y1+1]``.
"""
from __future__ import annotations

import contextlib
import io
from typing import Mapping, Sequence

import numpy as np

from ..boxes import to_xywh
from .detections import image_id_of, record_index

COCO_KEYS = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


def coco_ids(records, classes: Sequence[str], category_ids: Mapping[str, int] | None = None
             ) -> tuple[dict[str, int], dict[str, int]]:
    """(image id → COCO image id, class → COCO category id), one scheme for ground truth and results.

    A set read from a COCO file keeps that file's ids (``ImageRecord.coco_id``,
    ``DetectionDataset.category_ids``), so results can be scored against the original file;
    any other set is numbered 1, 2, ... in record and class order.
    """
    if category_ids is not None and all(c in category_ids for c in classes):
        cat_id = {c: int(category_ids[c]) for c in classes}
    else:
        cat_id = {c: i + 1 for i, c in enumerate(classes)}
    own = [r.coco_id for r in records]
    if all(i is not None for i in own) and len(set(own)) == len(own):
        img_id = {r.image_id: int(r.coco_id) for r in records}
    else:
        img_id = {r.image_id: i + 1 for i, r in enumerate(records)}
    return img_id, cat_id


def coco_ground_truth(records, classes: Sequence[str], category_ids: Mapping[str, int] | None = None) -> dict:
    """A COCO ``{"images", "annotations", "categories"}`` dict of ``records``."""
    img_id, cat_id = coco_ids(records, classes, category_ids)
    images, anns = [], []
    for r in records:
        images.append({"id": img_id[r.image_id], "width": r.width, "height": r.height,
                       "file_name": r.path.name})
        for lab, b, diff in zip(r.labels, r.boxes, r.difficult):
            if lab not in cat_id:
                continue
            _, _, w, h = to_xywh(b)
            anns.append({"id": len(anns) + 1, "image_id": img_id[r.image_id], "category_id": cat_id[lab],
                         "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": int(diff)})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": c} for c, i in cat_id.items()]}


def coco_results(records, detections: list[dict], classes: Sequence[str],
                 category_ids: Mapping[str, int] | None = None) -> list[dict]:
    """Detections as a COCO results list (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
    ``score``), as ``COCO.loadRes`` takes it; detections of other images or classes are left out."""
    img_id, cat_id = coco_ids(records, classes, category_ids)
    res = []
    index = record_index(records)
    for d in detections:
        stem = image_id_of(index, d["image"])
        if stem in img_id and d["label"] in cat_id:
            res.append({"image_id": img_id[stem], "category_id": cat_id[d["label"]],
                        "bbox": to_xywh(d["bbox"]), "score": float(d["score"])})
    return res


def evaluate_coco(records, detections: list[dict], classes: Sequence[str],
                  category_ids: Mapping[str, int] | None = None) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = coco_ground_truth(records, classes, category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    res = coco_results(records, detections, classes, category_ids)
    if not res:
        return {k: 0.0 for k in COCO_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(res)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(COCO_KEYS, np.asarray(ev.stats))}
