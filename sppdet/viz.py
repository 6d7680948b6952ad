"""Painted detections with ``torchvision.utils.draw_bounding_boxes``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from .boxes import to_continuous

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def draw(image: np.ndarray, boxes: np.ndarray, labels: list[str], scores: np.ndarray,
         class_names: list[str]) -> np.ndarray:
    """``image`` with labelled boxes (0-based inclusive pixels) drawn on it, a new array."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if len(boxes):
        b = to_continuous(torch.as_tensor(np.asarray(boxes, dtype=np.float32)))
        colors = [PALETTE[class_names.index(lab) % len(PALETTE)] if lab in class_names else "#ffffff"
                  for lab in labels]
        width = max(1, round(max(image.shape[:2]) / 300))
        img = draw_bounding_boxes(img, b, [f"{lab} {s:.2f}" for lab, s in zip(labels, scores)],
                                  colors=colors, width=width)
    return img.permute(1, 2, 0).contiguous().numpy()


def paint(image: np.ndarray, boxes: np.ndarray, labels: list[str], scores: np.ndarray,
          class_names: list[str], out_path: str | Path) -> Path:
    """:func:`draw`, saved to ``out_path`` (format from its suffix) atomically."""
    from .fileio import atomic_path

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        Image.fromarray(draw(image, boxes, labels, scores, class_names)).save(
            tmp, format=Image.registered_extensions().get(out_path.suffix.lower(), "JPEG"))
    return out_path
