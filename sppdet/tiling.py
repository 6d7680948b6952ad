"""Tiled inference for images much larger than the training scale.

A detector trained at a fixed scale (``features.scales``, e.g. 688 px on the short side)
rescales every image it sees to that scale, so a 4000-px photo shrinks six-fold and a 20-px
object becomes 3 px: below one cell of the trunk's stride-16 map. Cutting the image into
overlapping tiles, each rescaled to the training scale on its own, keeps small objects at
the size the detector learned. The whole image is detected too (objects larger than a tile, or
cut by every tile border), and all boxes, mapped back to the full image, go through per-class
NMS (``torchvision.ops.batched_nms``) at ``test.nms``.

A box that a tile cut in two shows up twice: whole in a neighbouring tile (where the overlap
is wider than the object) and truncated against this tile's inner border, where its IoU with
the whole one can be too low for NMS. ``drop_border`` removes tile boxes touching an inner tile
border (as SAHI can), since the overlap or the whole-image pass holds the whole object.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    from .detector import Detections, Detector

Window = tuple[int, int, int, int]  # x0, y0, x1, y1: pixel columns x0..x1-1, rows y0..y1-1


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """The first pixel of each tile along a side of ``length`` pixels: evenly spaced from 0 to
    ``length - tile`` (the last tile flush with the border), as few as keep every two
    neighbours overlapping by at least ``overlap`` of a tile (and at least a pixel apart). A
    side no longer than a tile is one tile."""
    if length <= tile:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    n = math.ceil((length - tile) / step - 1e-9) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class Tiling:
    """``size``-pixel square tiles overlapping by ``overlap`` of a tile (in [0, 1)), plus the
    whole image when ``whole``; ``drop_border``: drop tile boxes within ``border_px`` pixels of
    an inner tile border (see the module)."""

    size: int
    overlap: float = 0.25
    whole: bool = True
    drop_border: bool = False
    border_px: int = 2

    def windows(self, width: int, height: int) -> list[Window]:
        """Every tile of a ``width`` × ``height`` image, row by row."""
        w, h = min(self.size, width), min(self.size, height)
        return [(x, y, x + w, y + h) for y in tile_origins(height, self.size, self.overlap)
                for x in tile_origins(width, self.size, self.overlap)]

    def passes(self, width: int, height: int) -> list[Window]:
        """What is detected: the whole image first (when ``whole``), then the tiles; an image
        no larger than a tile is the one pass."""
        tiles = self.windows(width, height)
        full = (0, 0, width, height)
        if tiles == [full]:
            return [full]
        return ([full] if self.whole else []) + tiles

    def identity(self) -> dict:
        """What a tiled result depends on (for ``detect``'s journal)."""
        return {"size": self.size, "overlap": self.overlap, "whole": self.whole,
                "drop_border": self.drop_border, "border_px": self.border_px}


def make_tiling(tile, overlap, stride: int, whole: bool = True, drop_border: bool = False) -> Tiling | None:
    """``tile`` (pixels, or None: no tiling) and ``overlap`` checked: a tile must hold at
    least one cell of the trunk's map (``stride`` pixels) and the overlap be in [0, 1)."""
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)):
        raise UserError(f"tile (--tile) must be a whole number of pixels, not {tile!r}")
    if tile < stride:
        raise UserError(f"tile (--tile) is {tile} px, below the trunk's stride of {stride} px (one cell of its "
                        f"conv map); give at least {stride}, in practice several hundred")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not math.isfinite(overlap) \
            or not 0 <= overlap < 1:
        raise UserError(f"overlap (--overlap) must be a fraction of a tile in [0, 1), not {overlap!r}")
    return Tiling(int(tile), float(overlap), bool(whole), bool(drop_border))


def _touches_inner_border(boxes: np.ndarray, win: Window, width: int, height: int, margin: int) -> np.ndarray:
    """[N] whether each box (full-image inclusive pixels) lies within ``margin`` px of a border
    of ``win`` that is not the image's own border."""
    x0, y0, x1, y1 = win
    hit = np.zeros(len(boxes), bool)
    if x0 > 0:
        hit |= boxes[:, 0] <= x0 + margin
    if y0 > 0:
        hit |= boxes[:, 1] <= y0 + margin
    if x1 < width:
        hit |= boxes[:, 2] >= x1 - 1 - margin
    if y1 < height:
        hit |= boxes[:, 3] >= y1 - 1 - margin
    return hit


def crop(image: np.ndarray, win: Window) -> np.ndarray:
    x0, y0, x1, y1 = win
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def merge(det: Detector, parts: Sequence[tuple[Window, Detections]], width: int, height: int,
          tiling: Tiling) -> Detections:
    """The passes' detections in the full image's pixels, merged by per-class NMS, best first.
    ``test.max_per_image`` caps each pass, not the merge: a 4000-px image cut into 100 tiles
    can hold far more objects than one image at the training scale (36 BCCD images pasted into
    one 4000-px canvas hold 443 to 502 objects)."""
    import torch
    from torchvision.ops import batched_nms

    from .boxes import to_continuous

    if not parts:
        raise ValueError("nothing to merge: no pass was detected")
    boxes, scores, labels, margins = [], [], [], []
    full = (0, 0, width, height)
    for win, d in parts:
        b = np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4) + np.array(win[:2] * 2, dtype=np.float64)
        keep = np.ones(len(b), bool)
        if win != full and tiling.drop_border:
            keep = ~_touches_inner_border(b, win, width, height, tiling.border_px)
        boxes.append(b[keep])
        scores.append(np.asarray(d.scores, dtype=np.float64)[keep])
        labels.append(np.asarray(d.labels, dtype=np.int64)[keep])
        margins.append(np.asarray(d.margins if d.margins is not None else d.scores, dtype=np.float64)[keep])
    b, s, c, m = (np.concatenate(x) for x in (boxes, scores, labels, margins))
    if len(s):
        keep = batched_nms(to_continuous(torch.from_numpy(b)).float(), torch.from_numpy(s).float(),
                           torch.from_numpy(c), det.cfg.test.nms).numpy()
        keep = keep[np.lexsort((-m[keep], -s[keep]))]
        b, s, c, m = b[keep], s[keep], c[keep], m[keep]
    # a Detections like the passes' (this module does not import the detector's)
    return dataclasses.replace(parts[0][1], boxes=b.reshape(-1, 4), scores=s, labels=c, margins=m, timings={},
                               names=list(det.classes), image=None, path=None, calibrated=det.calibrated)


def detect_tiled(det: Detector, image: np.ndarray, tiling: Tiling, threshold=None,
                 proposals: Sequence[np.ndarray | None] | None = None) -> Detections:
    """Detections in an RGB image from its tiles (and the whole image), see the module.
    ``proposals``: one ``[K, 4]`` array (in that pass's own pixels) or None per entry of
    ``tiling.passes`` (computed beforehand, e.g. by ``detect``'s workers)."""
    h, w = image.shape[:2]
    passes = tiling.passes(w, h)
    if proposals is not None and len(proposals) != len(passes):
        raise ValueError(f"{len(proposals)} proposal arrays for {len(passes)} passes")
    thr = det.thresholds(threshold)
    parts, timings = [], {}
    for i, win in enumerate(passes):
        d = det.detect(crop(image, win) if win != (0, 0, w, h) else image,
                       None if proposals is None else proposals[i], threshold=thr)
        for k, v in d.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        parts.append((win, d))
    t1 = time.perf_counter()
    out = merge(det, parts, w, h, tiling)
    timings["merge"] = time.perf_counter() - t1
    out.timings = timings
    return out
