"""External proposals: per-image files (.npy/.txt/.csv) or R-CNN's ``selective_search_data`` .mat."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..boxes import clip
from ..config import ProposalConfig
from ..errors import UserError
from .base import Proposer
from .selective_search import SelectiveSearch, ss_settings


def checked_boxes(arr, source: Path | str, width: int, height: int) -> np.ndarray:
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
            return checked_boxes(arr, p, width, height)
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




class External(Proposer):
    """The user's own windows: ``proposals.external_dir`` holds one file per image, or is an
    R-CNN ``selective_search_data`` .mat. New images (``detect``) have no such file: they get
    selective search with the same ``proposals.*`` settings, with a warning."""

    name = "external"

    def __init__(self, cfg: ProposalConfig):
        self.cfg = cfg
        d = str(cfg.external_dir or "")
        self._mat = load_rcnn_mat(d) if d.endswith(".mat") else None

    def cache_id(self) -> list:
        return ["v3", ss_settings(self.cfg)]

    def propose(self, image_id, image, maps=None, size=None) -> np.ndarray:
        img = image()
        h, w = img.shape[:2]
        if self._mat is not None:
            if image_id not in self._mat:
                raise UserError(f"{self.cfg.external_dir} has no proposals for image {image_id}")
            return checked_boxes(self._mat[image_id], f"{self.cfg.external_dir} ({image_id})", w, h)
        return load_external(self.cfg.external_dir, image_id, w, h)

    def for_new_images(self) -> Proposer:
        warnings.warn("this run was trained on external proposals (proposals.method=external); new images get "
                      f"selective search (proposals.mode={self.cfg.mode}) instead: pass proposals= (Python) to "
                      "use your own", stacklevel=3)
        return SelectiveSearch(self.cfg)
