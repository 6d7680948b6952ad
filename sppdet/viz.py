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


def label_style(height: int, width: int) -> dict:
    """Line width and label font that scale with the image, so that labels stay readable on a
    3,000-px photo as on a 500-px one: about 1/300 and 1/45 of the longer side. The font is
    matplotlib's DejaVu Sans (torchvision's default bitmap font cannot grow); labels get a
    filled background where torchvision can draw one."""
    import inspect

    side = max(height, width)
    style: dict = {"width": max(1, round(side / 300))}
    try:
        from matplotlib import font_manager

        style.update(font=font_manager.findfont("DejaVu Sans", fallback_to_default=True),
                     font_size=max(10, round(side / 45)))
    except Exception:  # noqa: BLE001 - no matplotlib font: torchvision's small default
        pass
    if "fill_labels" in inspect.signature(draw_bounding_boxes).parameters:
        style.update(fill_labels=True, label_colors="white")
    return style


def draw(image: np.ndarray, boxes: np.ndarray, labels: list[str], scores: np.ndarray,
         class_names: list[str]) -> np.ndarray:
    """``image`` with labelled boxes (0-based inclusive pixels) drawn on it, a new array."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if len(boxes):
        b = to_continuous(torch.as_tensor(np.asarray(boxes, dtype=np.float32)))
        colors = [PALETTE[class_names.index(lab) % len(PALETTE)] if lab in class_names else "#ffffff"
                  for lab in labels]
        img = draw_bounding_boxes(img, b, [f"{lab} {s:.2f}" for lab, s in zip(labels, scores)],
                                  colors=colors, **label_style(*image.shape[:2]))
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
