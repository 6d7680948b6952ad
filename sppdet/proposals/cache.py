"""A per-image on-disk cache of one proposal method's windows (atomic writes, so an
interrupted run resumes; a damaged or tampered file is recomputed, never used)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..fileio import (CheckedFileError, ensure_writable_dir, load_checked_arrays, remove_stale_temporaries,
                      write_cache_file)
from .base import Proposer
from .registry import make_proposer

log = logging.getLogger(__name__)


class ProposalCache:
    """Windows per image, computed once by ``proposer`` and kept in ``root`` (one checked
    ``.npz`` per image)."""

    def __init__(self, root: str | Path, proposer: Proposer):
        """``proposer``: the method (a ProposalConfig, as in sppdet 0.3, stands for the
        pixel-based method it configures)."""
        self.root = ensure_writable_dir(root, "cache folder")
        remove_stale_temporaries(self.root)
        if not isinstance(proposer, Proposer):
            proposer = make_proposer(proposer)
        self.proposer = proposer
        self.computed, self.busy_s = 0, 0.0  # windows computed here, and the proposer's seconds

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.load(key) is not None

    def load(self, key: str) -> np.ndarray | None:
        """The cached boxes, or None when absent or damaged (with a warning)."""
        p = self.path(key)
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

    def compute(self, image_id: str, image_loader, maps_loader=None, size=None) -> np.ndarray:
        """The proposer's windows for one image (uncached)."""
        return self.proposer.propose(image_id, image_loader, maps_loader, size)

    def get(self, key: str, image_loader: Callable[[], np.ndarray], image_id: str | None = None,
            maps_loader: Callable | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """The boxes cached under ``key``, else computed by the proposer (from
        ``image_loader()``, or from ``maps_loader()`` for a method that reads the conv map) and
        cached. ``image_id`` (default: ``key``) is the name external proposal files use: cache
        keys add a content hash to it; ``size`` is the image's ``(width, height)``."""
        boxes = self.load(key)
        if boxes is not None:
            return boxes
        t0 = time.perf_counter()
        boxes = self.compute(image_id or key, image_loader, maps_loader, size)
        self.busy_s += time.perf_counter() - t0
        self.computed += 1
        boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        write_cache_file(self.path(key), {"boxes": boxes})
        return boxes
