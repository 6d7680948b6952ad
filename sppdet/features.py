"""Conv feature maps computed once per image per scale, a fp16 disk cache, and pooling.

Caching the conv maps (≈0.5 MB per 688-px image at fp16 for MobileNetV2) rather than the
pooled window vectors (≈20 MB per image at 2,000 windows) keeps a VOC07-sized cache at a
few GB; pooling from a cached map costs a few percent of the conv (see tools/bench_pool.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from .backbones import Trunk
from .config import ProposalConfig, config_digest
from .fileio import (CheckedFileError, ensure_writable_dir, load_checked_arrays, remove_stale_temporaries,
                     write_cache_file)
from .ops import best_scale, first_twins, map_windows, spp_pool

log = logging.getLogger(__name__)


@dataclass
class ScaleMap:
    """One scale of an image pyramid: its conv map and the resize factor that made it."""

    factor: float  # scaled image size / original size
    fmap: torch.Tensor  # [C, h, w], float16 for SPP-net maps (the precision they are cached at)


def scale_factors(height: int, width: int, scales: Sequence[int], max_size: int) -> list[float]:
    """Resize factors for shorter side = s, each capped so the longer side stays ≤ max_size."""
    short, long_ = min(height, width), max(height, width)
    return [min(float(s) / short, float(max_size) / long_) for s in scales]


def pyramid_sizes(height: int, width: int, scales: Sequence[int], max_size: int) -> list[tuple[float, int, int]]:
    """``(factor, height, width)`` of each scaled image: what the trunk convolves per scale."""
    return [(f, max(1, int(round(height * f))), max(1, int(round(width * f))))
            for f in scale_factors(height, width, scales, max_size)]


def resized_pyramid(image: np.ndarray, scales: Sequence[int], max_size: int) -> list[tuple[float, np.ndarray]]:
    """``(factor, resized [h, w, 3] uint8)`` per scale: the images the trunk convolves (area
    interpolation when shrinking, bilinear when enlarging), before any normalisation."""
    h, w = image.shape[:2]
    out = []
    for f, nh, nw in pyramid_sizes(h, w, scales, max_size):
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        out.append((f, cv2.resize(image, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image))
    return out


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from .errors import UserError

        raise UserError("device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


class FeatureExtractor:
    """Computes a trunk's conv maps at several scales (once per image) and pools windows.

    SPP-net's :class:`~sppdet.extractors.Extractor`: it caches each image's conv maps, whatever
    the windows (:class:`FeatureCache`)."""

    method = "spp"

    def __init__(self, trunk: Trunk, scales: Sequence[int] = (688,), max_size: int = 2000,
                 levels: Sequence[int] = (6, 3, 2, 1), device: torch.device | str = "cpu",
                 channels_last: bool = True):
        self.device = torch.device(device)
        # Order of each pyramid level in the pooled vector: [n, n, C] (faster on CPU, see
        # spp_pool) or [C, n, n] (runs saved before sppdet 0.2). Heads are trained on one order.
        self.channels_last = bool(channels_last)
        self.trunk = trunk.to(self.device).eval()
        self.scales = [int(s) for s in scales]
        self.max_size = int(max_size)
        self.levels = [int(n) for n in levels]
        self._buffer: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.trunk.channels * sum(n * n for n in self.levels)

    def cache_folder(self, root: Path, proposals: ProposalConfig) -> Path:
        """Where under the cache root ``root`` its conv maps go: named by what the maps depend
        on (not by the proposals: maps are per image)."""
        # "cl": maps from the channels-last conv (0.2), which may differ from 0.1's in the last bit;
        # "v3": checked .npz files keyed by the image's content
        return Path(root) / "features" / config_digest(
            ["cl", "v3", self.trunk.name, self.trunk.weights_id, self.scales, self.max_size])

    def open_cache(self, folder: Path) -> "FeatureCache":
        return FeatureCache(folder, self)

    def cache_windows(self, proposals, gt_boxes) -> None:
        """Windows the cache must hold for an image: none, the maps serve every window."""
        return None

    def conv_pixels(self, height: int, width: int, n_windows: int) -> int:
        """Input pixels the trunk convolves for one image: every scale of the pyramid."""
        return sum(nh * nw for _, nh, nw in pyramid_sizes(height, width, self.scales, self.max_size))

    def pool_stages(self) -> dict[str, float]:
        """How the last :meth:`pool` call's time divides among bench stages: all pooling."""
        return {}

    def scaled_images(self, image: np.ndarray) -> list[tuple[float, torch.Tensor]]:
        """``image``: ``[H, W, 3]`` RGB uint8 → ``(factor, [1, 3, h, w] float in [0, 1])`` per
        configured scale: what the trunk convolves."""
        out = []
        for f, resized in resized_pyramid(image, self.scales, self.max_size):
            x = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device)
            out.append((f, x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)))
        return out

    @torch.inference_mode()
    def compute(self, image: np.ndarray) -> list[ScaleMap]:
        """``image``: ``[H, W, 3]`` RGB uint8 → one conv map per configured scale."""
        # Kept at fp16, as the disk cache stores it, so that a cached and an uncached run
        # compute exactly the same detections (and pooling moves half the bytes).
        return [ScaleMap(f, self.trunk(x)[0].half()) for f, x in self.scaled_images(image)]

    def feature_boxes(self, maps: Sequence[ScaleMap], boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best scale per window and its feature-cell box at that scale."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        which = best_scale(boxes, [m.factor for m in maps])
        cells = np.zeros((len(boxes), 4), dtype=np.int64)
        for k, m in enumerate(maps):
            sel = which == k
            if sel.any():
                _, mh, mw = m.fmap.shape
                cells[sel] = map_windows(boxes[sel] * m.factor, self.trunk.stride, self.trunk.offset, mh, mw)
        return which, cells

    def twins(self, maps: Sequence[ScaleMap], boxes: np.ndarray) -> np.ndarray:
        """Each window's first twin: the first window pooled from the same scale and cells
        (:func:`sppdet.ops.first_twins`)."""
        return first_twins(*self.feature_boxes(maps, boxes))

    def pool(self, maps: Sequence[ScaleMap], boxes: np.ndarray, reuse_buffer: bool = False) -> torch.Tensor:
        """Pool each original-image box at its best scale → ``[K, dim]`` float32.

        ``reuse_buffer=True`` writes into a buffer kept by the extractor (valid until the
        next such call): the detector consumes each image's vectors before the next image.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return torch.empty((0, self.dim), dtype=torch.float32, device=self.device)
        if reuse_buffer:
            if self._buffer is None or self._buffer.shape[0] < len(boxes) or self._buffer.device != self.device:
                self._buffer = torch.empty((max(len(boxes), 2048), self.dim), dtype=torch.float32,
                                           device=self.device)
            out = self._buffer[: len(boxes)]
        else:
            out = torch.empty((len(boxes), self.dim), dtype=torch.float32, device=self.device)
        which, cells = self.feature_boxes(maps, boxes)
        for k, m in enumerate(maps):
            idx = np.nonzero(which == k)[0]
            if len(idx) == 0:
                continue
            fmap = m.fmap.to(self.device)
            sel = torch.from_numpy(cells[idx]).to(self.device)
            if len(idx) == len(boxes):  # every window at this scale: write in place
                spp_pool(fmap, sel, self.levels, out=out, channels_last=self.channels_last)
            else:
                out.index_copy_(0, torch.from_numpy(idx).to(self.device),
                                spp_pool(fmap, sel, self.levels, channels_last=self.channels_last))
        return out


class FeatureCache:
    """One checked ``.npz`` per image holding its fp16 conv maps (a CRC-32 of the
    content inside); atomic writes; a damaged file, or one whose maps do not fit the trunk
    and scales, is recomputed with a warning."""

    def __init__(self, root: str | Path, extractor: FeatureExtractor):
        self.root = ensure_writable_dir(root, "cache folder")
        remove_stale_temporaries(self.root)
        self.extractor = extractor

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.npz"

    def has(self, image_id: str, windows: np.ndarray | None = None) -> bool:
        """Are the maps of ``image_id`` cached? (``windows``: unused, the maps serve all.)"""
        return self.load(image_id) is not None

    def load(self, image_id: str) -> list[ScaleMap] | None:
        p = self.path(image_id)
        n = len(self.extractor.scales)
        try:
            z = load_checked_arrays(p, ("factors", *(f"map{k}" for k in range(n))))
            factors = z["factors"]
            if factors.shape != (n,) or not (np.isfinite(factors) & (factors > 0)).all():
                raise CheckedFileError(f"scale factors {factors!r}")
            channels = self.extractor.trunk.channels
            for k in range(n):
                m = z[f"map{k}"]
                if m.dtype != np.float16 or m.ndim != 3 or m.shape[0] != channels or min(m.shape) < 1:
                    raise CheckedFileError(f"map{k} is {m.dtype} {m.shape}, expected float16 "
                                           f"[{channels}, h, w] for this trunk")
            return [ScaleMap(float(factors[k]), torch.from_numpy(z[f"map{k}"])) for k in range(n)]
        except FileNotFoundError:
            return None
        except CheckedFileError as exc:
            log.warning("damaged feature cache file %s (%s); recomputing", p, exc)
            return None

    def save(self, image_id: str, maps: Sequence[ScaleMap]) -> None:
        arrays = {f"map{k}": m.fmap.detach().to("cpu", torch.float16).numpy() for k, m in enumerate(maps)}
        write_cache_file(self.path(image_id), {"factors": np.array([m.factor for m in maps], dtype=np.float64),
                                               **arrays})

    def get(self, image_id: str, image_loader, windows: np.ndarray | None = None) -> list[ScaleMap]:
        """Cached maps for ``image_id``, computing (and caching) them from ``image_loader()``
        (``windows``: unused, the maps serve all)."""
        maps = self.load(image_id)
        if maps is None:
            maps = self.extractor.compute(image_loader())
            self.save(image_id, maps)
        return maps
