"""Training windows of one image (ground truth + proposals) and their overlaps.

IoU uses the inclusive-pixel (+1) convention of the devkit (:func:`sppdet.boxes.iou`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import nms

from .boxes import iou, to_continuous


@dataclass
class ImageWindows:
    """All windows of a training image: rows ``[0, n_gt)`` are ground truth."""

    boxes: np.ndarray  # [K, 4] float32, 0-based inclusive pixels
    n_gt: int
    gt_classes: np.ndarray  # [n_gt] int, class index (0-based, no background)
    max_iou: np.ndarray  # [K] best IoU with any ground truth
    max_class: np.ndarray  # [K] class of that ground truth (-1 when there is none)
    class_iou: np.ndarray  # [K, C] float16, best IoU with a ground truth of each class


def build_windows(gt_boxes: np.ndarray, gt_classes: np.ndarray, proposals: np.ndarray,
                  num_classes: int) -> ImageWindows:
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
    boxes = np.concatenate([gt_boxes, np.asarray(proposals, dtype=np.float32).reshape(-1, 4)])
    k = len(boxes)
    class_iou = np.zeros((k, num_classes), dtype=np.float32)
    if len(gt_boxes):
        ov = iou(boxes, gt_boxes)
        best = ov.argmax(1)
        max_iou = ov[np.arange(k), best].astype(np.float32)
        max_class = gt_classes[best]
        for c in np.unique(gt_classes):
            class_iou[:, c] = ov[:, gt_classes == c].max(1)
    else:
        max_iou = np.zeros(k, dtype=np.float32)
        max_class = np.full(k, -1, dtype=np.int64)
    return ImageWindows(boxes, len(gt_boxes), gt_classes, max_iou, max_class, class_iou.astype(np.float16))


def prune_negatives(boxes: np.ndarray, neg: np.ndarray, thresh: float) -> np.ndarray:
    """SPP-net's negative pruning (He et al. 2014, Sec. 4.2: "Any negative sample is removed if
    it overlaps another negative sample by more than 70%").

    ``neg``: ``[K]`` or ``[K, C]`` boolean mask of candidate negatives (per class). For each
    class, the candidates are visited in window order (the proposals' ranking) and one is kept
    unless it overlaps an already kept candidate by IoU > ``thresh``: greedy NMS with the rank
    as score, so the result does not depend on any classifier. ``thresh`` ≤ 0 or ≥ 1: no pruning.
    """
    neg = np.asarray(neg, dtype=bool)
    if not 0 < thresh < 1:
        return neg
    cols = neg.reshape(len(neg), -1)
    out = np.zeros_like(cols)
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    b = to_continuous(b)
    done: dict[bytes, np.ndarray] = {}  # classes absent from the image share one mask
    for c in range(cols.shape[1]):
        key = np.packbits(cols[:, c]).tobytes()
        if key not in done:
            idx = np.nonzero(cols[:, c])[0]
            kept = idx[:0]
            if len(idx):
                score = -torch.as_tensor(idx, dtype=torch.float64)  # earlier rank = higher score
                kept = idx[nms(b[idx], score, float(thresh)).numpy()]
            done[key] = kept
        out[done[key], c] = True
    return out.reshape(neg.shape)
