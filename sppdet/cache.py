"""Per-image disk caches of a configuration: proposals and conv maps, keyed by the image file.

Records whose image cannot be decoded are dropped with a report entry instead of stopping a
long run.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import Config, config_digest
from .datasets.common import ImageRecord, LoadReport
from .features import FeatureCache, FeatureExtractor
from .images import ImageReadError, read_image
from .progress import progress as tqdm
from .proposals import ProposalCache


def default_cache_root() -> Path:
    """``$SPPDET_CACHE``, else ``$XDG_CACHE_HOME/sppdet``, else ``~/.cache/sppdet``."""
    env = os.environ.get("SPPDET_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sppdet"


def cache_key(record: ImageRecord) -> str:
    """Cache file stem: the image id plus a hash of the file's path, size and mtime, so data
    sets sharing a cache never collide and an edited image is recomputed."""
    st = record.path.stat()
    h = hashlib.sha1(f"{record.path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return f"{record.image_id}-{h}"


class CachedData:
    """Proposal and conv-map caches for a configuration; records whose image is unreadable
    are dropped with a report entry instead of stopping a long run."""

    def __init__(self, cfg: Config, extractor: FeatureExtractor, cache_root: str | Path):
        root = Path(cache_root)
        trunk = extractor.trunk
        # R-CNN has no per-image conv map to cache: its "maps" are the image itself.
        self.per_window = getattr(extractor, "per_window", False)
        # "v2": proposals no longer depend on C rand() history (see proposals._seed_c_rand)
        self.proposals = ProposalCache(root / "proposals" / config_digest(["v2", asdict(cfg.proposals)]),
                                       cfg.proposals)
        # "cl": maps from the channels-last conv (0.2), which may differ from 0.1's in the last bit
        self.features = FeatureCache(root / "features" / config_digest(
            ["cl", trunk.name, trunk.weights_id, extractor.scales, extractor.max_size]), extractor)

    def prepare(self, records: Sequence[ImageRecord], report: LoadReport,
                timings: dict[str, float] | None = None, features: bool = True) -> list[ImageRecord]:
        timings = {} if timings is None else timings
        ok = []
        t0 = time.perf_counter()
        for r in tqdm(records, desc="proposals", unit="img"):
            try:
                self.proposals.get(cache_key(r), lambda r=r: read_image(r.path))
                ok.append(r)
            except ImageReadError as exc:
                report.add("image that cannot be decoded (skipped)", str(exc))
        timings["proposals"] = timings.get("proposals", 0.0) + time.perf_counter() - t0
        if features and not self.per_window:
            t0 = time.perf_counter()
            for r in tqdm(ok, desc="conv features", unit="img"):
                self.features.get(cache_key(r), lambda r=r: read_image(r.path))
            timings["conv"] = timings.get("conv", 0.0) + time.perf_counter() - t0
        return ok

    def boxes(self, r: ImageRecord) -> np.ndarray:
        return self.proposals.get(cache_key(r), lambda: read_image(r.path))

    def maps(self, r: ImageRecord):
        if self.per_window:
            return self.features.extractor.compute(read_image(r.path))
        return self.features.get(cache_key(r), lambda: read_image(r.path))
