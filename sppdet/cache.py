"""Per-image disk caches of a configuration: proposals and conv maps, keyed by the image file.

Records whose image cannot be decoded are dropped with a report entry instead of stopping a
long run.
"""
from __future__ import annotations

import functools
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
from .fileio import remove_stale_temporaries
from .images import ImageReadError
from .progress import progress as tqdm
from .proposals import ProposalCache


def default_cache_root() -> Path:
    """``$SPPDET_CACHE``, else ``$XDG_CACHE_HOME/sppdet``, else ``~/.cache/sppdet``."""
    env = os.environ.get("SPPDET_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sppdet"


@functools.lru_cache(maxsize=1 << 16)
def _content_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """blake2b of the file's bytes, remembered per path and stat (ctime changes on every write
    and cannot be set back), so one run reads each file once however often it asks."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(record: ImageRecord) -> str:
    """Cache file stem: the image id plus a hash of the image file's CONTENT (and of the EXIF
    orientation setting, which changes the pixels). Editing an image, even keeping its mtime
    (``cp -p``, rsync), gives a new key; a renamed or moved file keeps its cache entries."""
    try:
        st = record.path.stat()
        digest = _content_digest(os.path.abspath(record.path), st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                 st.st_ino)
    except OSError as exc:
        raise ImageReadError(f"{record.path}: cannot read ({exc.strerror or exc})") from None
    return f"{record.image_id}-{digest}{'-t' if record.exif_transpose else ''}"


class CachedData:
    """Proposal and conv-map caches for a configuration; records whose image is unreadable
    are dropped with a report entry instead of stopping a long run."""

    def __init__(self, cfg: Config, extractor: FeatureExtractor, cache_root: str | Path):
        root = Path(cache_root)
        for kind in ("proposals", "features"):  # temporaries left by sppdet < 0.3 in any config's folder
            for folder in (root / kind).glob("*/") if (root / kind).is_dir() else ():
                remove_stale_temporaries(folder)
        trunk = extractor.trunk
        # R-CNN has no per-image conv map to cache: its "maps" are the image itself.
        self.per_window = getattr(extractor, "per_window", False)
        # "v2": proposals no longer depend on C rand() history (see proposals._seed_c_rand);
        # "v3": checked .npz files keyed by the image's content
        self.proposals = ProposalCache(root / "proposals" / config_digest(["v3", asdict(cfg.proposals)]),
                                       cfg.proposals)
        # "cl": maps from the channels-last conv (0.2), which may differ from 0.1's in the last bit;
        # "v3": checked .npz files keyed by the image's content
        self.features = FeatureCache(root / "features" / config_digest(
            ["cl", "v3", trunk.name, trunk.weights_id, extractor.scales, extractor.max_size]), extractor)

    def prepare(self, records: Sequence[ImageRecord], report: LoadReport,
                timings: dict[str, float] | None = None, features: bool = True) -> list[ImageRecord]:
        timings = {} if timings is None else timings
        ok = []
        t0 = time.perf_counter()
        for r in tqdm(records, desc="proposals", unit="img"):
            try:
                self.proposals.get(cache_key(r), r.read)
                ok.append(r)
            except ImageReadError as exc:
                report.add("image that cannot be decoded (skipped)", str(exc))
        timings["proposals"] = timings.get("proposals", 0.0) + time.perf_counter() - t0
        if features and not self.per_window:
            t0 = time.perf_counter()
            for r in tqdm(ok, desc="conv features", unit="img"):
                self.features.get(cache_key(r), r.read)
            timings["conv"] = timings.get("conv", 0.0) + time.perf_counter() - t0
        return ok

    def boxes(self, r: ImageRecord) -> np.ndarray:
        return self.proposals.get(cache_key(r), r.read)

    def maps(self, r: ImageRecord):
        if self.per_window:
            return self.features.extractor.compute(r.read())
        return self.features.get(cache_key(r), r.read)
