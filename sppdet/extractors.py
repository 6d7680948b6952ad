"""Window feature extractors: the one interface SPP-net and R-CNN share, and the registry.

An extractor turns an image and its windows into one vector per window. SPP-net
(:class:`~sppdet.features.FeatureExtractor`) convolves the image once per scale and pools each
window from the maps; R-CNN (:class:`~sppdet.rcnn.RCNNExtractor`) warps each window and
convolves it on its own. Everything downstream (caches, training, detection, bench) talks to
the :class:`Extractor` protocol only. A third method is one new module with a class following
the protocol, plus one line in :data:`EXTRACTORS` (and the ``method`` choice in config.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from .backbones import Trunk
from .config import BackboneConfig, Config, FeatureConfig, ProposalConfig
from .features import FeatureExtractor
from .rcnn import RCNNExtractor


class Extractor(Protocol):
    method: str  # the config's ``method`` it implements
    trunk: Trunk
    device: torch.device
    levels: list[int]
    channels_last: bool  # order of each pyramid level in a vector (heads are trained on one)

    @property
    def dim(self) -> int:
        """Length of a window's vector."""

    def compute(self, image: np.ndarray) -> Any:
        """The per-image step on an ``[H, W, 3]`` RGB uint8 image (SPP-net: its conv maps)."""

    def pool(self, maps: Any, boxes: np.ndarray, reuse_buffer: bool = False) -> torch.Tensor:
        """``[K, dim]`` float32 vectors of ``boxes`` from what :meth:`compute` (or the cache) gave."""

    def twins(self, maps: Any, boxes: np.ndarray) -> np.ndarray:
        """``[K]``: for each window, the first window whose vector is the same by construction
        (the detector gives twins one score)."""

    def cache_folder(self, root: Path, proposals: ProposalConfig) -> Path:
        """Its per-image cache's folder under the cache root, named by what the entries depend on."""

    def open_cache(self, folder: Path) -> Any:
        """Its per-image disk cache in ``folder`` (the cache class): ``has(key, windows)`` and
        ``get(key, image_loader, windows)``, ``get`` returning what :meth:`pool` takes."""

    def cache_windows(self, proposals: Callable[[], np.ndarray], gt_boxes: np.ndarray | None) -> np.ndarray | None:
        """The windows an image's cache entry must cover (None: it serves any window, and
        ``proposals`` is not called)."""

    def conv_pixels(self, height: int, width: int, n_windows: int) -> int:
        """Input pixels the trunk convolves for one image (bench's cost model)."""

    def pool_stages(self) -> dict[str, float]:
        """How the last :meth:`pool` call's seconds divide among bench stages (``{}``: all pooling)."""


def _spp(f: FeatureConfig, trunk: Trunk, device) -> Extractor:
    return FeatureExtractor(trunk, f.scales, f.max_size, f.levels, device)


def _rcnn(f: FeatureConfig, trunk: Trunk, device) -> Extractor:
    return RCNNExtractor(trunk, f.levels, device)


# config ``method`` → builder of its extractor (from the ``features`` section)
EXTRACTORS: dict[str, Callable[[FeatureConfig, Trunk, Any], Extractor]] = {"spp": _spp, "rcnn": _rcnn}


def make_extractor(method: str, features: FeatureConfig, trunk: Trunk, device) -> Extractor:
    """SPP-net's once-per-image extractor (``method="spp"``), or R-CNN's once-per-window one
    (``"rcnn"``), on ``trunk``'s maps with ``features``' scales and pyramid levels."""
    return EXTRACTORS[method](features, trunk, device)


def extractor_from_config(cfg: Config, trunk: Trunk, device) -> Extractor:
    """:func:`make_extractor` with a whole config's ``method`` and ``features``."""
    return make_extractor(cfg.method, cfg.features, trunk, device)


@dataclass(frozen=True)
class ExtractorSettings:
    """What builds an extractor in any process, the trunk included: a cache task carries these
    (small and picklable) to a worker, which builds its own (:func:`sppdet.cache.task_extractor`)."""

    method: str  # config ``method``: spp | rcnn
    backbone: BackboneConfig
    features: FeatureConfig

    @classmethod
    def from_config(cls, cfg: Config) -> "ExtractorSettings":
        return cls(cfg.method, cfg.backbone, cfg.features)

    def build(self, trunk: Trunk, device) -> Extractor:
        return make_extractor(self.method, self.features, trunk, device)


__all__: Sequence[str] = ("Extractor", "EXTRACTORS", "ExtractorSettings", "extractor_from_config", "make_extractor")
