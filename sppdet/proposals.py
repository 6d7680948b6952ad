"""Region proposals: OpenCV selective search (``cv2.ximgproc``), external proposal files,
and a per-image on-disk cache (atomic writes, so an interrupted run resumes)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .boxes import clip, min_size_mask
from .config import COLOR_SPACES, SIMILARITIES, ProposalConfig
from .errors import UserError
from .fileio import (CheckedFileError, ensure_writable_dir, load_checked_arrays, remove_stale_temporaries,
                     write_cache_file)

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
    _seed_c_rand(0)
    return np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)


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


def _checked_boxes(arr, source: Path | str, width: int, height: int) -> np.ndarray:
    """External boxes as float32 ``[K, 4]`` clipped to the image; a file with a count of
    numbers that is not a multiple of 4, or with NaN/inf, is a :class:`UserError`."""
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"proposals in {source} are not numbers") from None
    if arr.size % 4:
        raise UserError(f"proposals in {source}: {arr.size} numbers, not 4 per box (x1 y1 x2 y2)")
    if not np.isfinite(arr).all():
        raise UserError(f"proposals in {source} contain NaN or infinite coordinates")
    arr = arr.reshape(-1, 4)
    return clip(arr, width, height).astype(np.float32)


def selective_search_cfg(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """:func:`selective_search` with every setting taken from ``cfg``."""
    return selective_search(image, cfg.mode, cfg.max_boxes, cfg.work_size, cfg.min_size,
                            work_sizes=cfg.work_sizes, color_spaces=cfg.color_spaces, ks=cfg.ks,
                            sigma=cfg.sigma, strategies=cfg.strategies)


def load_external(directory: str | Path, image_id: str, width: int, height: int) -> np.ndarray:
    """Proposals for one image from ``<dir>/<image_id>.{npy,txt,csv}`` (x1 y1 x2 y2, 0-based)."""
    d = Path(directory)
    for ext in (".npy", ".txt", ".csv"):
        p = d / f"{image_id}{ext}"
        if p.is_file():
            try:
                arr = np.load(p, allow_pickle=False) if ext == ".npy" else np.loadtxt(
                    p, delimiter="," if ext == ".csv" else None, ndmin=2)
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read proposals file {p}: {exc}") from None
            return _checked_boxes(arr, p, width, height)
    raise UserError(f"no proposals for image {image_id} in {d} (expected {image_id}.npy/.txt/.csv)")


def load_rcnn_mat(mat_path: str | Path) -> dict[str, np.ndarray]:
    """R-CNN / Fast R-CNN ``selective_search_data/*.mat``: ``images`` ids and ``boxes`` stored
    as 1-based ``(y1, x1, y2, x2)`` → image id → 0-based ``(x1, y1, x2, y2)``."""
    import scipy.io

    try:
        m = scipy.io.loadmat(str(mat_path))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise UserError(f"cannot read {mat_path}: {exc} (MATLAB v7.3 files need converting)") from None
    if "images" not in m or "boxes" not in m:
        raise UserError(f"{mat_path} lacks the 'images'/'boxes' variables of selective_search_data")
    ids = [str(np.asarray(x).ravel()[0]) for x in m["images"].ravel()]
    out = {}
    for image_id, b in zip(ids, m["boxes"].ravel()):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        out[image_id] = (b[:, [1, 0, 3, 2]] - 1).astype(np.float32)
    return out


class ProposalCache:
    """Proposals per image, computed once and kept in ``root`` (one checked ``.npz`` per image:
    a damaged or tampered file is recomputed, never used)."""

    def __init__(self, root: str | Path, cfg: ProposalConfig):
        self.root = ensure_writable_dir(root, "cache folder")
        remove_stale_temporaries(self.root)
        self.cfg = cfg
        self._mat: dict[str, np.ndarray] | None = None
        if cfg.method == "external" and cfg.external_dir and str(cfg.external_dir).endswith(".mat"):
            self._mat = load_rcnn_mat(cfg.external_dir)

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.npz"

    def has(self, image_id: str) -> bool:
        return self.load(image_id) is not None

    def compute(self, image_id: str, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if self.cfg.method == "external":
            if self._mat is not None:
                if image_id not in self._mat:
                    raise UserError(f"{self.cfg.external_dir} has no proposals for image {image_id}")
                return _checked_boxes(self._mat[image_id], f"{self.cfg.external_dir} ({image_id})", w, h)
            return load_external(self.cfg.external_dir, image_id, w, h)
        return selective_search_cfg(image, self.cfg)

    def load(self, image_id: str) -> np.ndarray | None:
        """The cached boxes, or None when absent or damaged (with a warning)."""
        p = self.path(image_id)
        try:
            boxes = load_checked_arrays(p, ("boxes",))["boxes"]
            if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
                raise CheckedFileError(f"boxes of {boxes.dtype} {boxes.shape}, expected float32 [K, 4]")
            if not np.isfinite(boxes).all():
                raise CheckedFileError("non-finite boxes")
            return boxes
        except FileNotFoundError:
            return None
        except CheckedFileError as exc:
            log.warning("damaged proposal cache file %s (%s); recomputing", p, exc)
            return None

    def get(self, key: str, image_loader, image_id: str | None = None) -> np.ndarray:
        """The boxes cached under ``key``, computing them from ``image_loader()`` when absent.
        ``image_id`` (default: ``key``) is the name external proposal files use: cache keys
        add a content hash to it."""
        boxes = self.load(key)
        if boxes is not None:
            return boxes
        boxes = np.ascontiguousarray(self.compute(image_id or key, image_loader()), dtype=np.float32)
        write_cache_file(self.path(key), {"boxes": boxes})
        return boxes

