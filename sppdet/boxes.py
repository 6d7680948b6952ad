"""Box arithmetic in the one convention sppdet uses: inclusive pixels (VOC's ``+1``).

A box ``[x1, y1, x2, y2]`` covers the pixels ``x1..x2`` and ``y1..y2`` *inclusive*, so a box
with ``x1 == x2`` is one pixel wide: ``width = x2 - x1 + 1``. Every stage (proposals, training
windows, detection, box regression, evaluation, data loading) measures, clips and compares boxes
through this module, so the ``+1`` is written here and nowhere else.

torchvision.ops uses the continuous convention (``width = x2 - x1``); :func:`to_continuous` /
:func:`from_continuous` convert (shift the far corner by one pixel), and :func:`iou` is
``torchvision.ops.box_iou`` on converted boxes.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

_FAR = np.array([0.0, 0.0, 1.0, 1.0])


def widths_heights(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights of ``[..., 4]`` inclusive-pixel boxes (a one-pixel box is 1 × 1)."""
    return boxes[..., 2] - boxes[..., 0] + 1, boxes[..., 3] - boxes[..., 1] + 1


def area(boxes: np.ndarray) -> np.ndarray:
    """Pixel areas of ``[..., 4]`` inclusive-pixel boxes."""
    w, h = widths_heights(boxes)
    return w * h


def to_continuous(boxes):
    """Inclusive-pixel boxes to torchvision's continuous convention (``x2 + 1``, ``y2 + 1``);
    a numpy array or a torch tensor, of the same type and dtype back."""
    return boxes + _far_like(boxes)


def from_continuous(boxes):
    """Inverse of :func:`to_continuous`."""
    return boxes - _far_like(boxes)


def _far_like(boxes):
    """``[0, 0, 1, 1]`` in the array type and float dtype of ``boxes``."""
    if isinstance(boxes, torch.Tensor):
        return torch.as_tensor(_FAR, dtype=boxes.dtype if boxes.is_floating_point() else torch.float64,
                               device=boxes.device)
    dtype = np.asarray(boxes).dtype
    return _FAR.astype(dtype) if dtype.kind == "f" else _FAR


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[N, M]`` (float64) of inclusive-pixel boxes ``[N, 4]`` × ``[M, 4]``."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return box_iou(to_continuous(a), to_continuous(b)).numpy()


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to a ``width`` × ``height`` image: coordinates in ``[0, width - 1]`` and
    ``[0, height - 1]`` (the last pixel, inclusive)."""
    return np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])


def min_size_mask(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Boolean mask of the boxes at least ``min_size`` pixels wide *and* high (inclusive
    pixels: the test of ``torchvision.ops.remove_small_boxes``, as a mask)."""
    w, h = widths_heights(boxes)
    return (w >= min_size) & (h >= min_size)


def to_xywh(box) -> list[float]:
    """One box as COCO's ``[x, y, width, height]`` (inclusive-pixel width and height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
