"""Pascal VOC average precision, computed as py-faster-rcnn's ``voc_eval.py`` (the de-facto
reference, itself a port of the devkit's VOCevaldet.m) computes it.

Details that change the last digit and are kept on purpose: boxes in 1-based pixels with the
+1 width convention; a detection is a true positive when its best IoU is strictly > 0.5 with a
ground truth not matched before (greedy, by descending score); a detection whose best match is
``difficult`` counts as neither TP nor FP; detections are ordered with ``np.argsort(-score)``
(numpy's default, unstable quicksort) over the per-class list in file order, so equal scores
break exactly as the reference breaks them; precision uses ``max(tp + fp, eps)``.

One deliberate difference: for a class with no (non-difficult) ground truth the reference
divides by zero (AP 0 or NaN by accident of the metric); here its AP is ``None`` and it is left
out of the mAP, as in most toolkits.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..boxes import iou
from ..datasets.common import safe_image_id
from ..fileio import atomic_write
from .detections import image_id_of, record_index

# One detection: (image id, score, [x1, y1, x2, y2] in 1-based pixels).
Detection = tuple[str, float, Sequence[float]]


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = True) -> float:
    """VOC07 11-point interpolated AP, or VOC2010+ area under the monotone PR curve."""
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = rec >= t
            ap += (np.max(prec[above]) if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, right to left
    change = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def eval_class(gt: dict[str, tuple[np.ndarray, np.ndarray]], dets: list[Detection],
               iou_thresh: float = 0.5, use_07_metric: bool = True):
    """AP of one class. ``gt``: image id → (boxes ``[N, 4]`` 1-based, difficult ``[N]``) for
    every image of the split. Returns ``(recall, precision, ap, n_positives)``; ap is None
    when the class has no non-difficult ground truth."""
    npos = int(sum(int((~d).sum()) for _, d in gt.values()))
    matched = {img: np.zeros(len(b), dtype=bool) for img, (b, _) in gt.items()}
    scores = np.array([float(d[1]) for d in dets], dtype=np.float64)
    order = np.argsort(-scores)  # the reference's exact call: ties break as it breaks them
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for rank, k in enumerate(order):
        image_id, _, box = dets[k]
        if image_id not in gt:
            raise KeyError(image_id)
        boxes, difficult = gt[image_id]
        if len(boxes) == 0:
            fp[rank] = 1.0
            continue
        ious = iou(np.asarray(box, dtype=np.float64)[None], boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] > iou_thresh:
            if difficult[j]:
                continue
            if matched[image_id][j]:
                fp[rank] = 1.0
            else:
                tp[rank] = 1.0
                matched[image_id][j] = True
        else:
            fp[rank] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if npos == 0:
        return np.full(len(dets), np.nan), prec, None, 0
    rec = tp / float(npos)
    return rec, prec, voc_ap(rec, prec, use_07_metric), npos


def ground_truth_by_class(records, classes: Sequence[str]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """class → image id → (1-based boxes, difficult) over every image of the split."""
    out: dict[str, dict] = {c: {} for c in classes}
    for r in records:
        objs = r.eval_objects()
        for c in classes:
            sel = [o for o in objs if o[0] == c]
            out[c][r.image_id] = (np.array([o[1] for o in sel], dtype=np.float64).reshape(-1, 4),
                                  np.array([o[2] for o in sel], dtype=bool))
    return out


def detections_by_class(detections: Iterable[dict], classes: Sequence[str],
                        image_ids: dict[str, str] | None = None) -> dict[str, list[Detection]]:
    """Detections (``{"image", "label", "score", "bbox"}`` with 0-based bbox) → per-class
    lists of 1-based detections, in input order (the order the comp4 files are written in).

    ``image_ids`` (from :func:`~sppdet.evaluation.detections.record_index`) maps a detection's
    image to its record's id; without it the id is the file stem, whitespace replaced by ``_``
    as the readers do."""
    out: dict[str, list[Detection]] = {c: [] for c in classes}
    for d in detections:
        if d["label"] in out:
            image = d["image"]
            image_id = image_id_of(image_ids, image) if image_ids is not None else None
            if image_id is None:
                image_id = safe_image_id(Path(image).stem)
            out[d["label"]].append((image_id, float(d["score"]), [float(v) + 1.0 for v in d["bbox"]]))
    return out


def evaluate_voc(records, detections: list[dict], classes: Sequence[str], metric: str = "voc07",
                 iou_thresh: float = 0.5, never_detected: Sequence[str] = ()) -> dict:
    """Per-class AP and mAP. Returns ``{"metric", "mAP", "AP", "npos", "curves"}``.

    ``never_detected``: classes the model cannot detect (their SVM never trained). Without
    ground truth in the split they get AP 0, not None, and count in the mAP: that is what the
    devkit computes for a class without detections (no division by zero then), and the mAP
    says how the model does on every class it lists."""
    use_07 = metric == "voc07"
    gt = ground_truth_by_class(records, classes)
    dets = detections_by_class(detections, classes, record_index(records))
    ap, npos, curves = {}, {}, {}
    for c in classes:
        rec, prec, a, n = eval_class(gt[c], dets[c], iou_thresh, use_07)
        if a is None and c in never_detected and not dets[c]:
            a = 0.0
        ap[c], npos[c], curves[c] = a, n, (rec, prec)
    valid = [a for a in ap.values() if a is not None]
    return {"metric": metric, "mAP": float(np.mean(valid)) if valid else None, "AP": ap,
            "npos": npos, "curves": curves}


_UNSAFE = re.compile(r"[^\w.+-]")


def class_file_part(name: str) -> str:
    """A class name as it can appear in a file name: unchanged when it is safe; otherwise
    unsafe characters (``/``, spaces, ``:`` ...) become ``_`` and a short hash of the real
    name keeps two such classes apart."""
    safe = _UNSAFE.sub("_", name)[:80]
    if safe == name and not name.startswith("."):
        return name
    return f"{safe.lstrip('.') or 'class'}-{hashlib.blake2b(name.encode(errors='surrogateescape'), digest_size=3).hexdigest()}"


def write_comp4(detections: list[dict], classes: Sequence[str], split: str, out_dir: str | Path,
                records: Sequence | None = None) -> list[Path]:
    """VOC ``comp4_det_<split>_<class>.txt`` files (``image_id score x1 y1 x2 y2``, 1-based),
    written at full float precision so the official devkit sees exactly the numbers evaluated
    here. Image ids are the records' ids when ``records`` are given. A class name that is not
    safe in a file name is written as :func:`class_file_part` gives it. Each file is written
    atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_part = class_file_part(split)
    paths = []
    index = record_index(records) if records is not None else None
    for c, dets in detections_by_class(detections, classes, index).items():
        p = out_dir / f"comp4_det_{split_part}_{class_file_part(c)}.txt"
        atomic_write(p, "".join(f"{image_id} {score!r} {b[0]!r} {b[1]!r} {b[2]!r} {b[3]!r}\n"
                                for image_id, score, b in dets))
        paths.append(p)
    return paths


def format_table(result: dict) -> str:
    lines = [f"{'class':>20s}  {'AP':>7s}  {'#gt':>6s}"]
    for c, a in result["AP"].items():
        lines.append(f"{c:>20s}  {'n/a' if a is None else f'{a:.4f}':>7s}  {result['npos'][c]:6d}"
                     + ("  never trained (no training objects)" if c in result.get("untrained", ()) else ""))
    m = result["mAP"]
    lines.append(f"{'mAP (' + result['metric'] + ')':>20s}  {'n/a' if m is None else f'{m:.4f}':>7s}")
    return "\n".join(lines)
