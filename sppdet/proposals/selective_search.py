"""Selective search proposals (Uijlings et al. 2013) through OpenCV's ``cv2.ximgproc``: the
paper's ~2,000 class-independent windows per image, computed from the pixels alone."""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Sequence

import cv2
import numpy as np

from ..boxes import clip, min_size_mask
from ..config import COLOR_SPACES, SIMILARITIES, ProposalConfig
from ..errors import UserError
from .base import Proposer

log = logging.getLogger(__name__)


def _seed_c_rand(seed: int = 0) -> None:
    """OpenCV's selective search ranks regions with C ``rand()`` (process-global state), so
    without this an image's proposals would depend on how many images the process handled
    before it: a resumed run would not reproduce an uninterrupted one."""
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c") or ctypes.util.find_library("msvcrt")
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        libc.srand(ctypes.c_uint(seed))
    except (OSError, AttributeError, TypeError):  # pragma: no cover - exotic platforms
        log.debug("could not seed C rand(); selective search may not be repeatable")


def _color_space(bgr: np.ndarray, name: str) -> np.ndarray:
    """One of selective search's colour spaces (Uijlings et al. 2013, as OpenCV's quality mode
    builds them) from a BGR image."""
    name = name.lower()
    if name == "hsv":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    if name == "lab":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    if name == "ycrcb":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    if name == "rgb":
        return bgr
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if name == "gray":
        return gray
    if name == "hue":
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 0])
    if name == "rgi":  # normalised-ish r, g and intensity, as OpenCV's quality mode
        return cv2.merge([bgr[:, :, 2], bgr[:, :, 1], gray])
    raise UserError(f"unknown selective search colour space {name!r}; use one of {', '.join(COLOR_SPACES)}")


def _strategy(spec: str):
    seg = cv2.ximgproc.segmentation
    make = {"color": seg.createSelectiveSearchSegmentationStrategyColor,
            "fill": seg.createSelectiveSearchSegmentationStrategyFill,
            "size": seg.createSelectiveSearchSegmentationStrategySize,
            "texture": seg.createSelectiveSearchSegmentationStrategyTexture}
    parts = [p for p in str(spec).lower().split("+") if p]
    if not parts or any(p not in make for p in parts):
        raise UserError(f"unknown selective search strategy {spec!r}; join some of {', '.join(SIMILARITIES)} with '+'")
    if len(parts) == 1:
        return make[parts[0]]()
    multiple = seg.createSelectiveSearchSegmentationStrategyMultiple()
    for p in parts:  # equal weights, as OpenCV's own fast/quality modes
        multiple.addStrategy(make[p](), 1.0 / len(parts))
    return multiple


def _graph_segmentation(k: float, sigma: float):
    # set like OpenCV's presets do (its default min_size is kept)
    gs = cv2.ximgproc.segmentation.createGraphSegmentation()
    gs.setK(float(k))
    gs.setSigma(float(sigma))
    return gs


def _raw_selective_search(bgr: np.ndarray, mode: str, color_spaces: Sequence[str], ks: Sequence[float],
                          sigma: float, strategies: Sequence[str]) -> np.ndarray:
    """OpenCV's rectangles ``[K, 4]`` (x, y, w, h) in its ranking order."""
    seg = cv2.ximgproc.segmentation
    ss = seg.createSelectiveSearchSegmentation()
    if mode in ("fast", "quality"):
        ss.setBaseImage(bgr)
        (ss.switchToSelectiveSearchFast if mode == "fast" else ss.switchToSelectiveSearchQuality)()
    elif mode == "custom":
        # the same building blocks as OpenCV's switchToSelectiveSearchFast/Quality: every colour
        # space × every k × every strategy is one hierarchical grouping, all ranked together
        for name in color_spaces:
            ss.addImage(_color_space(bgr, name))
        for k in ks:
            ss.addGraphSegmentation(_graph_segmentation(k, sigma))
        for spec in strategies:
            ss.addStrategy(_strategy(spec))
    else:
        raise UserError(f"selective search mode must be fast, quality or custom, not {mode!r}")
    # one OpenCV thread: its ranking draws from C's rand(), which threads running the groupings in
    # parallel would consume in a different order each time (other windows for the same image)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        _seed_c_rand(0)
        return np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
    finally:
        cv2.setNumThreads(threads)


def selective_search(image: np.ndarray, mode: str = "fast", max_boxes: int = 2000,
                     work_size: int = 500, min_size: int = 8, *, work_sizes: Sequence[int] = (),
                     color_spaces: Sequence[str] = ("hsv", "lab"), ks: Sequence[float] = (150, 300, 450),
                     sigma: float = 0.8,
                     strategies: Sequence[str] = ("color+fill+size+texture", "fill+size+texture")) -> np.ndarray:
    """Selective search on an RGB image resized so its longer side is ``work_size``.

    ``mode``: OpenCV's ``fast`` or ``quality`` presets, or ``custom``: the colour spaces ×
    graph-segmentation ``ks`` (with ``sigma``) × grouping ``strategies`` given (the defaults are
    exactly OpenCV's fast preset). With ``work_sizes``, selective search runs at each size
    and the rankings are interleaved (round robin), so the top windows come from every size.

    Returns up to ``max_boxes`` unique boxes ``[K, 4]`` (float32, 0-based inclusive
    pixels of the original image) in selective search's own ranking order.
    """
    if not hasattr(cv2, "ximgproc"):
        raise UserError("selective search needs OpenCV's contrib modules: "
                        "pip install opencv-contrib-python-headless (and uninstall opencv-python)")
    h, w = image.shape[:2]
    runs = []
    for size in (list(work_sizes) or [work_size]):
        f = min(1.0, float(size) / max(h, w)) if size else 1.0
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA) if f < 1.0 else image
        if min(small.shape[:2]) < 2:  # degenerate images: the whole image is the only proposal
            continue
        rects = _raw_selective_search(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mode, color_spaces, ks,
                                      sigma, strategies)
        boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2] - 1,
                          rects[:, 1] + rects[:, 3] - 1], 1) / f
        runs.append(boxes)
    if not runs:
        return np.array([[0, 0, w - 1, h - 1]], dtype=np.float32)
    if len(runs) == 1:
        boxes = runs[0]
    else:  # round robin: rank r of every run before rank r + 1 of any
        rank = np.concatenate([np.arange(len(b)) for b in runs])
        run = np.concatenate([np.full(len(b), i) for i, b in enumerate(runs)])
        boxes = np.concatenate(runs)[np.lexsort((run, rank))]
    boxes = clip(np.round(boxes), w, h)
    keep = min_size_mask(boxes, min_size)
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][:max_boxes]
    if len(boxes) == 0:
        boxes = np.array([[0, 0, w - 1, h - 1]], dtype=np.float64)
    return boxes.astype(np.float32)


def selective_search_cfg(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """:func:`selective_search` with every setting taken from ``cfg``."""
    return selective_search(image, cfg.mode, cfg.max_boxes, cfg.work_size, cfg.min_size,
                            work_sizes=cfg.work_sizes, color_spaces=cfg.color_spaces, ks=cfg.ks,
                            sigma=cfg.sigma, strategies=cfg.strategies)




def ss_settings(cfg: ProposalConfig) -> dict:
    """The settings selective search's windows depend on (those of sppdet 0.3, so that its
    caches stay valid: the other methods' keys are left out)."""
    return {k: v for k, v in asdict(cfg).items() if not k.startswith("rpn_")}


class SelectiveSearch(Proposer):
    """Selective search on the pixels, with every setting from ``proposals.*``."""

    name = "selective_search"

    def __init__(self, cfg: ProposalConfig):
        self.cfg = cfg

    def cache_id(self) -> list:
        return ["v3", ss_settings(self.cfg)]

    def propose(self, image_id, image, maps=None, size=None) -> np.ndarray:
        return selective_search_cfg(image(), self.cfg)
