"""Box arithmetic in the one convention sppdet uses: inclusive pixels (VOC's ``+1``).

A box ``[x1, y1, x2, y2]`` covers the pixels ``x1..x2`` and ``y1..y2`` *inclusive*, so a box
with ``x1 == x2`` is one pixel wide: ``width = x2 - x1 + 1``. Every stage (proposals, training
windows, detection, box regression, evaluation, data loading) measures, clips and compares boxes
through this module, so the ``+1`` is written here and nowhere else.

torchvision.ops uses the continuous convention (``width = x2 - x1``); :func:`to_continuous` /
:func:`from_continuous` convert (shift the far corner by one pixel), :func:`iou` is
``torchvision.ops.box_iou`` on converted boxes, and :class:`BoxCoder` is torchvision's box
coding (box regression, the upper head and the RPN all code boxes through it).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torchvision.models.detection._utils import BoxCoder as _TorchvisionBoxCoder
from torchvision.ops import box_iou

_FAR = np.array([0.0, 0.0, 1.0, 1.0])


def extent(first, last):
    """How many pixels (or feature cells) ``first..last`` covers, inclusive: ``last - first + 1``
    (numpy arrays, tensors or numbers)."""
    return last - first + 1


def widths_heights(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights of ``[..., 4]`` inclusive-pixel boxes (a one-pixel box is 1 × 1)."""
    return extent(boxes[..., 0], boxes[..., 2]), extent(boxes[..., 1], boxes[..., 3])


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


# torchvision's default bound on a decoded log size ratio: exp(dw) is at most 1000 / 16
TORCHVISION_LOG_CLIP = math.log(1000.0 / 16)


class BoxCoder(_TorchvisionBoxCoder):
    """torchvision's box coding (``(dx, dy, dw, dh)``: centre shifts in units of the reference
    box's size and log size ratios, each times its weight), in sppdet's inclusive pixels.

    Why one class: box regression, the upper head and the RPN all code boxes, and the formulas
    were written three times. It *is* torchvision's ``BoxCoder`` (so torchvision's RPN takes it
    as its ``box_coder``, and ``encode_single``/``decode_single`` work on continuous boxes as
    there); :meth:`encode_pixels`/:meth:`decode_pixels` add the ``+1`` convention through
    :func:`to_continuous`/:func:`from_continuous`.

    ``clip`` bounds ``dw``, ``dh`` (after dividing by their weights) when decoding:
    ``(low, high)``. torchvision bounds them above only, at :data:`TORCHVISION_LOG_CLIP`;
    R-CNN's box regression here bounds them at ``(-4, 4)``.

    Numbers are computed in the input's dtype (numpy arrays go through torch as they are, so
    float64 in computes in float64) and come back as the input's type: numpy in, numpy out.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clip: tuple[float, float] = (-math.inf, TORCHVISION_LOG_CLIP)):
        low, high = (float(v) for v in clip)
        super().__init__(tuple(float(w) for w in weights), bbox_xform_clip=high)
        self.low_clip = low

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """torchvision's ``decode_single`` (continuous boxes), with ``dw``, ``dh`` also bounded
        below at ``clip[0]``."""
        if self.low_clip > -math.inf:
            rel_codes = rel_codes.clone()
            for j in (2, 3):
                rel_codes[:, j::4] = torch.clamp(rel_codes[:, j::4], min=self.low_clip * self.weights[j])
        return super().decode_single(rel_codes, boxes)

    def encode_pixels(self, boxes, targets):
        """The codes ``[K, 4]`` that take inclusive-pixel ``boxes`` ``[K, 4]`` to ``targets``
        ``[K, 4]`` (numpy arrays or tensors)."""
        b, numpy_in = _as_tensor(boxes)
        t, _ = _as_tensor(targets)
        codes = self.encode_single(to_continuous(t.reshape(-1, 4)), to_continuous(b.reshape(-1, 4)))
        return codes.numpy() if numpy_in else codes

    def decode_pixels(self, boxes, codes):
        """The inverse of :meth:`encode_pixels`: ``boxes`` ``[K, 4]`` moved by ``codes``
        ``[K, 4 n]`` (n sets of codes per box, as class-specific regression gives) →
        inclusive-pixel boxes ``[K, 4 n]``, float64. Decoded in the wider dtype of the two (float64 boxes
        and float32 codes: float64); the far corner's ``- 1`` is taken in float64 so that it adds
        no float32 rounding."""
        b, numpy_in = _as_tensor(boxes)
        d, _ = _as_tensor(codes)
        b = b.reshape(-1, 4)
        d = d.reshape(len(b), d.shape[-1]).to(torch.promote_types(b.dtype, d.dtype))
        pred = self.decode_single(d, to_continuous(b))
        out = from_continuous(pred.reshape(len(b), d.shape[1] // 4, 4).double()).reshape(pred.shape)
        return out.cpu().numpy() if numpy_in else out


def _as_tensor(a) -> tuple[torch.Tensor, bool]:
    """``a`` as a tensor (numpy shares its memory and dtype) and whether it was not one."""
    if isinstance(a, torch.Tensor):
        return a, False
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.result_type(np.asarray(a).dtype, np.float32))), True
