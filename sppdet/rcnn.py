"""The R-CNN baseline: every proposal is cropped with 16 pixels of context, warped to
224×224 and pushed through the trunk on its own; its conv map is pooled by the same pyramid
(whole-map form), so heads, SVMs and box regression are shared with SPP-net and only the
place where convolution happens differs — once per window instead of once per image.

Training reads each window's vector many times (statistics, positives, fine-tuning, every
mining epoch), so, as R-CNN did, the vectors of every proposal (and ground-truth box) are
computed once and kept in a disk cache at fp16 (:class:`WindowVectorCache`): ≈19 MB per
image at 2,000 windows for MobileNetV2's 4,800-wide vector, against SPP-net's ≈0.5 MB map.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from .boxes import to_continuous, widths_heights
from .backbones import Trunk
from .config import ProposalConfig, config_digest
from .proposals.selective_search import ss_settings
from .features import ScaleMap
from .fileio import (CheckedFileError, ensure_writable_dir, load_checked_arrays, remove_stale_temporaries,
                     write_cache_file)
from .ops import spp_pool

log = logging.getLogger(__name__)


@dataclass
class WindowVectors:
    """An image's cached R-CNN vectors: what :meth:`RCNNExtractor.pool` reads instead of
    convolving. A window not among ``boxes`` is computed from ``image_loader()``."""

    boxes: np.ndarray  # [K, 4] float32, the windows the vectors are for
    vectors: np.ndarray  # [K, dim] float16
    image_loader: Callable[[], np.ndarray]

    def __post_init__(self):
        self._index = {row.tobytes(): k for k, row in enumerate(_canonical(self.boxes))}

    def lookup(self, boxes: np.ndarray) -> np.ndarray:
        """Row of each box in ``self.boxes`` (exact float32 match), -1 where absent."""
        b = _canonical(boxes)
        return np.array([self._index.get(row.tobytes(), -1) for row in b], dtype=np.int64)


def _canonical(boxes: np.ndarray) -> np.ndarray:
    """Contiguous float32 ``[K, 4]`` with -0.0 made +0.0, so that equal boxes have equal bytes
    (``np.unique`` merges the two zeros; a byte lookup would not)."""
    return np.ascontiguousarray(np.asarray(boxes, dtype=np.float32).reshape(-1, 4) + np.float32(0.0))


class RCNNExtractor:
    """R-CNN's :class:`~sppdet.extractors.Extractor`: ``compute`` only holds the image, ``pool``
    warps and convolves each window; its cache holds each window's vector (:class:`WindowVectorCache`)."""

    method = "rcnn"

    def __init__(self, trunk: Trunk, levels: Sequence[int] = (6, 3, 2, 1), device: torch.device | str = "cpu",
                 size: int = 224, context: int = 16, batch_size: int = 64, channels_last: bool = True):
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)  # pooled vector order, as FeatureExtractor's
        self.trunk = trunk.to(self.device).eval()
        self.levels = [int(n) for n in levels]
        self.size, self.context, self.batch_size = size, context, batch_size
        self.timings: dict[str, float] = {}

    @property
    def dim(self) -> int:
        return self.trunk.channels * sum(n * n for n in self.levels)

    def cache_folder(self, root: Path, proposals: ProposalConfig) -> Path:
        """Where under the cache root ``root`` its window vectors go. The proposal settings are
        in the folder's name so that a file holds one setting's windows, not a growing union
        (each file also lists its windows: edited annotations are caught)."""
        return Path(root) / "windows" / config_digest(
            ["v1", self.trunk.name, self.trunk.weights_id, self.levels, self.size, self.context,
             self.channels_last, ss_settings(proposals)])  # 0.3's keys: its caches stay valid

    def open_cache(self, folder: Path) -> "WindowVectorCache":
        return WindowVectorCache(folder, self)

    def cache_windows(self, proposals: Callable[[], np.ndarray], gt_boxes: np.ndarray | None) -> np.ndarray:
        """The windows R-CNN training pools: the ground-truth boxes and the proposals (as float32,
        the form :func:`sppdet.windows.build_windows` gives them)."""
        gt = np.zeros((0, 4), np.float32) if gt_boxes is None else np.asarray(gt_boxes, np.float32).reshape(-1, 4)
        return np.concatenate([gt, np.asarray(proposals(), dtype=np.float32).reshape(-1, 4)])

    def conv_pixels(self, height: int, width: int, n_windows: int) -> int:
        """Input pixels the trunk convolves for one image: every window's warp."""
        return n_windows * self.size * self.size

    def pool_stages(self) -> dict[str, float]:
        """How the last :meth:`pool` call's time divides among bench stages: its convolutions
        happen inside pooling."""
        return dict(self.timings)

    def compute(self, image: np.ndarray) -> list[ScaleMap]:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float().div_(255.0)
        return [ScaleMap(1.0, x)]

    def warp(self, image: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        """Crops ``[K, 3, size, size]``: each box grown so that, once warped, it has ``context``
        pixels of image around it (R-CNN's 'padding 16'), bilinearly resampled; outside the
        image is zero (R-CNN fills with the mean; zero in [0, 1] space after normalisation
        differs only in colour)."""
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32), device=self.device).reshape(-1, 4)
        grow = self.size / (self.size - 2.0 * self.context)
        c = to_continuous(b)
        cx, cy = (c[:, 0] + c[:, 2]) / 2, (c[:, 1] + c[:, 3]) / 2
        w, h = widths_heights(b)
        hw, hh = w * grow / 2, h * grow / 2
        rois = torch.stack([torch.zeros_like(cx), cx - hw, cy - hh, cx + hw, cy + hh], 1)
        return roi_align(image[None], rois, (self.size, self.size), spatial_scale=1.0, sampling_ratio=2,
                         aligned=True)

    def twins(self, maps, boxes: np.ndarray) -> np.ndarray:
        """Each window is warped on its own: its own twin."""
        return np.arange(len(np.asarray(boxes).reshape(-1, 4)), dtype=np.int64)

    @torch.inference_mode()
    def pool(self, maps: Sequence[ScaleMap] | WindowVectors, boxes: np.ndarray,
             reuse_buffer: bool = False) -> torch.Tensor:
        """``[K, dim]`` float32 vectors of ``boxes``: read from ``maps`` when it is a
        :class:`WindowVectors` (the cache), else each window warped and convolved."""
        if isinstance(maps, WindowVectors):
            return self._pool_cached(maps, boxes)
        return self._pool_image(maps[0].fmap, boxes)

    def _pool_cached(self, cached: WindowVectors, boxes: np.ndarray) -> torch.Tensor:
        rows = cached.lookup(boxes)
        out = torch.empty((len(rows), self.dim), dtype=torch.float32, device=self.device)
        hit = np.nonzero(rows >= 0)[0]
        if len(hit):
            out[torch.from_numpy(hit).to(self.device)] = torch.from_numpy(
                cached.vectors[rows[hit]]).to(self.device, torch.float32)
        miss = np.nonzero(rows < 0)[0]
        if len(miss):
            image = self.compute(cached.image_loader())[0].fmap
            fresh = self._pool_image(image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[miss])
            out[torch.from_numpy(miss).to(self.device)] = fresh
        return out

    def _pool_image(self, image: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        import time

        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = torch.empty((len(boxes), self.dim), dtype=torch.float32, device=self.device)
        t_conv = t_pool = 0.0
        for i in range(0, len(boxes), self.batch_size):
            t0 = time.perf_counter()
            fmap = self.trunk(self.warp(image, boxes[i:i + self.batch_size]))
            t1 = time.perf_counter()
            # rounded to fp16, the precision of the cache (and of SPP-net's maps), so that a
            # vector is the same bits whether it was cached (training, eval) or not (detect)
            out[i:i + len(fmap)] = spp_pool(fmap, None, self.levels, channels_last=self.channels_last).half()
            t_pool += time.perf_counter() - t1
            t_conv += t1 - t0
        self.timings = {"conv": t_conv, "pooling": t_pool}
        return out


class WindowVectorCache:
    """One checked ``.npz`` per image with the fp16 R-CNN vectors of its windows and the
    windows themselves (``boxes``), so a changed proposal list or annotation is detected by
    the lookup, not trusted: boxes the file lacks are computed when asked for. Atomic writes;
    a damaged file, or one whose vectors do not fit the extractor, is recomputed with a warning."""

    def __init__(self, root: str | Path, extractor: RCNNExtractor):
        self.root = ensure_writable_dir(root, "cache folder")
        remove_stale_temporaries(self.root)
        self.extractor = extractor

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def has(self, key: str, boxes: np.ndarray | None = None) -> bool:
        """Is there a file for ``key`` holding every window of ``boxes``? Reads only its
        ``boxes`` member (a few KB of a ~19 MB file); :meth:`get` verifies the whole file and
        recomputes it if it is damaged."""
        try:
            b = load_checked_arrays(self.path(key), ("boxes", "vectors"), only=("boxes",))["boxes"]
        except (FileNotFoundError, CheckedFileError):
            return False
        if b.dtype != np.float32 or b.ndim != 2 or b.shape[1] != 4:
            return False
        if boxes is None:
            return True
        known = {row.tobytes() for row in _canonical(b)}
        return all(row.tobytes() in known for row in _canonical(boxes))

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        p = self.path(key)
        try:
            z = load_checked_arrays(p, ("boxes", "vectors"))
            b, v = z["boxes"], z["vectors"]
            if b.dtype != np.float32 or b.ndim != 2 or b.shape[1] != 4:
                raise CheckedFileError(f"boxes are {b.dtype} {b.shape}, expected float32 [K, 4]")
            if v.dtype != np.float16 or v.shape != (len(b), self.extractor.dim):
                raise CheckedFileError(f"vectors are {v.dtype} {v.shape}, expected float16 "
                                       f"[{len(b)}, {self.extractor.dim}] for this trunk and pyramid")
            return b, v
        except FileNotFoundError:
            return None
        except CheckedFileError as exc:
            log.warning("damaged window cache file %s (%s); recomputing", p, exc)
            return None

    def get(self, key: str, image_loader: Callable[[], np.ndarray], boxes: np.ndarray) -> WindowVectors:
        """The cached vectors of ``key``; computed for ``boxes`` (and cached) when there are
        none, or when the file lacks some of ``boxes``."""
        boxes = np.unique(_canonical(boxes), axis=0)
        got = self.load(key)
        known = np.zeros((0, 4), np.float32), np.zeros((0, self.extractor.dim), np.float16)
        if got is not None:
            cached = WindowVectors(got[0], got[1], image_loader)
            missing = cached.lookup(boxes) < 0
            if not missing.any():
                return cached
            known, boxes = got, boxes[missing]  # convolve only the windows the file lacks
        image = image_loader()
        fresh = self.extractor.pool(self.extractor.compute(image), boxes).cpu().half().numpy()
        all_boxes, vectors = np.concatenate([known[0], boxes]), np.concatenate([known[1], fresh])
        write_cache_file(self.path(key), {"boxes": all_boxes, "vectors": vectors})
        return WindowVectors(all_boxes, vectors, lambda: image)
