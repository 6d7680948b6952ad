"""Per-image disk caches of a configuration: proposals and conv maps (R-CNN: window vectors),
keyed by the image file.

Records whose image cannot be decoded are dropped with a report entry instead of stopping a
long run.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import Config, ProposalConfig, config_digest
from .errors import UserError
from .datasets.common import ImageRecord, LoadReport
from .extractors import Extractor, ExtractorSettings
from .fileio import remove_stale_temporaries
from .images import ImageReadError, read_image
from .parallel import Executor, SerialExecutor, process_local, set_process_local
from .proposals import ProposalCache, make_proposer
from .runtime import single_threaded

log = logging.getLogger("sppdet")


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
    image_id = record.image_id
    raw = os.fsencode(image_id)
    if len(raw) > 120:  # file names are limited to 255 bytes: a long id keeps its start and a hash of all
        image_id = f"{raw[:100].decode('utf-8', errors='ignore')}~{hashlib.blake2b(raw, digest_size=6).hexdigest()}"
    return f"{image_id}-{digest}{'-t' if record.exif_transpose else ''}"


@dataclass
class CacheJob:
    """One image's caching task: small and picklable (a path, the settings, cache folders)."""

    path: Path
    key: str
    image_id: str  # what external proposal files are named by
    proposal_cfg: ProposalConfig
    extraction: ExtractorSettings
    proposals_dir: Path | None  # None: no proposals here (a method that reads the conv maps)
    features_dir: Path | None
    weights_id: str  # the trunk the driver's caches are for; a node with other weights refuses
    exif_transpose: bool = False  # as the record's boxes were measured (data.exif_transpose)
    maps: bool = True  # compute the conv maps (R-CNN: window vectors) too (on ``device``)
    return_image: bool = False  # send the decoded image back (the driver convolves it)
    device: str = "cpu"
    windows: np.ndarray | None = None  # R-CNN: windows to cache besides the proposals (ground truth)
    channels_last: bool = True  # the pooled vectors' order (runs of sppdet 0.1: channel-major)
    proposals: bool = True  # compute the proposals here (not for a method that reads the conv maps)


@dataclass
class CacheResult:
    key: str
    error: str | None = None  # the image could not be decoded
    image: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _extractor_key(s: ExtractorSettings, device: str, channels_last: bool = True) -> tuple:
    f = s.features
    return ("extractor", s.method, s.backbone.name, s.backbone.weights, tuple(f.scales), f.max_size,
            tuple(f.levels), device, channels_last)


def task_extractor(s: ExtractorSettings, weights_id: str, device: str = "cpu",
                   channels_last: bool = True) -> Extractor:
    """This process' extractor for ``s`` (built on first use and kept), checked against
    the weights the driver's caches are keyed by."""
    def build():
        from .backbones import build_trunk

        ext = s.build(build_trunk(s.backbone.name, s.backbone.weights), device)
        ext.channels_last = channels_last
        return ext

    ext = process_local(_extractor_key(s, device, channels_last), build)
    if ext.trunk.weights_id != weights_id:
        raise UserError(f"the {s.backbone.name} weights on this node (sha256 {ext.trunk.weights_id[:16]}…) "
                        f"differ from the driver's ({weights_id[:16]}…); give every node the same file")
    return ext


def cache_image_task(job: CacheJob) -> CacheResult:
    """Decode one image, compute (or load) its proposals and, with ``job.maps``, its conv maps,
    writing both caches (atomic writes: two tasks on one image cannot leave a broken file).

    Runs on one thread whatever the machine (see :func:`sppdet.runtime.single_threaded`), so
    the maps are the same bits from any worker count."""
    out = CacheResult(job.key)
    image: list[np.ndarray] = []

    def load() -> np.ndarray:
        if not image:
            t0 = time.perf_counter()
            image.append(read_image(job.path, exif_transpose=job.exif_transpose))
            out.seconds["decode"] = time.perf_counter() - t0
        return image[0]

    with single_threaded():
        try:
            t0 = time.perf_counter()
            boxes = None
            if job.proposals:
                props = process_local(("proposal-cache", str(job.proposals_dir)),
                                      lambda: ProposalCache(job.proposals_dir, make_proposer(job.proposal_cfg)))
                boxes = props.get(job.key, load, job.image_id)
            out.seconds["proposals"] = time.perf_counter() - t0 - out.seconds.get("decode", 0.0)
            if job.maps:
                ext = task_extractor(job.extraction, job.weights_id, job.device, job.channels_last)
                t0 = time.perf_counter()
                # one per process, like the proposal cache: opening one checks the folder is
                # writable and lists it for stale temporaries, which per image would cost O(N²)
                feats = process_local(("feature-cache", str(job.features_dir), id(ext)),
                                      lambda: ext.open_cache(job.features_dir))
                feats.get(job.key, load, ext.cache_windows(lambda: boxes, job.windows))
                out.seconds["conv"] = time.perf_counter() - t0
            elif job.return_image:
                out.image = load()
        except ImageReadError as exc:
            out.error = str(exc)
    return out


class CachedData:
    """Proposal and conv-map (R-CNN: window-vector) caches for a configuration; records whose
    image is unreadable are dropped with a report entry instead of stopping a long run."""

    def __init__(self, proposals: ProposalConfig, extraction: ExtractorSettings, extractor: Extractor | None,
                 cache_root: str | Path, rpn=None):
        """``proposals``: how the windows are found; ``extraction``: what builds ``extractor``
        (in the cache's worker processes; its ``features.scales`` are the maps an RPN reads).
        ``extractor=None``: proposals only (no trunk to load, e.g. ``sppdet proposals``).
        ``rpn``: the trained proposal network of ``proposals.method=rpn`` (or later, with
        :meth:`attach_rpn`: training caches the maps it learns from first)."""
        root = Path(cache_root)
        self.root = root
        for kind in ("proposals", "features", "windows"):  # temporaries left by sppdet < 0.3 in any config's folder
            for folder in (root / kind).glob("*/") if (root / kind).is_dir() else ():
                remove_stale_temporaries(folder)
        self.proposal_cfg = proposals
        self.extraction = extraction
        self.last_stats: dict = {}
        # "v2": proposals no longer depend on C rand() history (see proposals._seed_c_rand);
        # "v3": checked .npz files keyed by the image's content
        self.proposals: ProposalCache | None = None
        if not proposals.uses_rpn or rpn is not None:
            self._set_proposer(make_proposer(proposals, extraction.features.scales, rpn))
        # the extractor's per-image cache (SPP-net: conv maps; R-CNN: window vectors)
        self.features = (extractor.open_cache(extractor.cache_folder(root, proposals))
                         if extractor is not None else None)

    @classmethod
    def from_config(cls, cfg: Config, extractor: Extractor | None, cache_root: str | Path, rpn=None) -> "CachedData":
        """The caches of a whole config (its ``proposals``, ``method``, ``backbone`` and ``features``)."""
        return cls(cfg.proposals, ExtractorSettings.from_config(cfg), extractor, cache_root, rpn=rpn)

    def _set_proposer(self, proposer) -> None:
        self.proposals = ProposalCache(self.root / "proposals" / config_digest(proposer.cache_id()), proposer)

    def attach_rpn(self, rpn) -> None:
        """Propose with this trained proposal network from now on (``proposals.method=rpn``)."""
        self._set_proposer(make_proposer(self.proposal_cfg, self.extraction.features.scales, rpn))

    @property
    def proposals_from_maps(self) -> bool:
        """Whether the windows come from the conv maps (computed where the maps are, after them)."""
        return self.proposal_cfg.uses_rpn

    def prepare(self, records: Sequence[ImageRecord], report: LoadReport,
                timings: dict[str, float] | None = None, features: bool = True,
                executor: Executor | None = None) -> list[ImageRecord]:
        """Cache every record's proposals (and conv maps, with ``features``); returns the
        records whose image could be read, in order.

        One task per image not yet cached (decode → proposals → on a CPU, conv maps), run by
        ``executor`` (default: in this process). On a GPU the tasks do the proposals and this
        process (or, with Ray, a GPU task) convolves. Tasks carry paths, the config and the
        cache folders, never pixels. ``timings`` gets the stage's wall time under
        ``proposals`` and ``conv``, split in proportion to the tasks' busy seconds when one
        task does both; ``self.last_stats`` the counts and busy seconds.
        """
        timings = {} if timings is None else timings
        executor = executor or SerialExecutor()
        want_maps = features and self.features is not None
        ext = self.features.extractor if self.features is not None else None
        on_gpu = want_maps and ext.device.type != "cpu"
        if want_maps:  # in-process tasks reuse the driver's trunk
            set_process_local(_extractor_key(self.extraction, str(ext.device), ext.channels_last), ext)
        keys: list[str | None] = []
        jobs: dict[str, CacheJob] = {}
        unreadable: dict[str, str] = {}
        for r in records:
            try:
                key = cache_key(r)
            except ImageReadError as exc:  # vanished or unreadable since the data set was listed
                keys.append(None)
                report.add("image that cannot be decoded (skipped)", str(exc))
                continue
            keys.append(key)
            props_here = not self.proposals_from_maps
            done = (not props_here or self.proposals.has(key)) and (not want_maps or self._maps_cached(key, r))
            if not done and key not in jobs:
                jobs[key] = CacheJob(r.path, key, r.image_id, self.proposal_cfg, self.extraction,
                                     self.proposals.root if props_here else None,
                                     self.features.root if self.features is not None else None,
                                     ext.trunk.weights_id if ext is not None else "", r.exif_transpose,
                                     maps=want_maps and not on_gpu,
                                     return_image=on_gpu and executor.gpus == 0, windows=r.boxes,
                                     channels_last=ext.channels_last if ext is not None else True,
                                     proposals=props_here)
        busy = {"decode": 0.0, "proposals": 0.0, "conv": 0.0}
        t0 = time.perf_counter()
        what = " + ".join(([] if self.proposals_from_maps else ["proposals"])
                          + (["conv"] if want_maps and not on_gpu else [])) or "decode"
        n_cached = len([k for k in keys if k is not None]) - len(jobs)
        if n_cached:
            log.info(f"{what}: {n_cached} of {n_cached + len(jobs)} images read from the cache "
                     f"{self.root}" + ("" if jobs else ", nothing to compute"))
        results = executor.map(cache_image_task, jobs.values(),
                               desc=what + (f" ({n_cached} more cached)" if n_cached else ""), unit="img",
                               label=lambda j: str(j.path))
        with executor.driver_threads():
            for res in results:
                for k, v in res.seconds.items():
                    busy[k] += v
                if res.error is not None:
                    unreadable[res.key] = res.error
                elif res.image is not None:  # a GPU here: convolve while the workers search
                    t1 = time.perf_counter()
                    self._compute(res.key, lambda im=res.image: im, jobs[res.key])
                    busy["conv"] += time.perf_counter() - t1
        if on_gpu and executor.gpus:  # a cluster with GPUs: the conv as GPU tasks
            gjobs = [dataclasses.replace(j, maps=True, device="cuda") for k, j in jobs.items()
                     if k not in unreadable]
            for res in executor.map(cache_image_task, gjobs, desc="conv", unit="img",
                                    label=lambda j: str(j.path), gpu=True):
                busy["conv"] += res.seconds.get("conv", 0.0)
        wall = time.perf_counter() - t0
        ok = []
        for r, key in zip(records, keys):
            if key is None:
                continue
            if key in unreadable:
                report.add("image that cannot be decoded (skipped)", unreadable[key])
            else:
                ok.append(r)
        work = busy["decode"] + busy["proposals"] + busy["conv"]
        conv_share = busy["conv"] / work if work > 0 and want_maps else 0.0
        timings["proposals"] = timings.get("proposals", 0.0) + wall * (1.0 - conv_share)
        if want_maps:
            timings["conv"] = timings.get("conv", 0.0) + wall * conv_share
        self.last_stats = {"images": len(records), "computed": len(jobs), "unreadable": len(unreadable),
                           "executor": executor.kind, "workers": executor.workers, "wall_s": wall,
                           "busy_s": busy}
        return ok

    def _windows(self, key: str, loader, image_id: str, gt_boxes: np.ndarray | None) -> np.ndarray | None:
        """The windows the record's cache entry must cover (the extractor says; None: any)."""
        return self.features.extractor.cache_windows(lambda: self.proposals.get(key, loader, image_id), gt_boxes)

    def _maps_cached(self, key: str, r: ImageRecord) -> bool:
        return self.features.has(key, self._windows(key, r.read, r.image_id, r.boxes))

    def _compute(self, key: str, loader, job: CacheJob):
        return self.features.get(key, loader, self._windows(key, loader, job.image_id, job.windows))

    def proposals_for(self, r: ImageRecord, maps=None) -> np.ndarray:
        """The record's proposals (computed and cached if missing; from its conv maps, ``maps``
        if already loaded, for a method that reads them)."""
        if self.proposals is None:
            raise RuntimeError("proposals.method=rpn: attach the trained proposal network first")
        return self.proposals.get(cache_key(r), r.read, r.image_id,
                                  maps_loader=(lambda: maps) if maps is not None else (lambda: self.maps(r)),
                                  size=(r.width, r.height))

    boxes = proposals_for  # the name before 0.4

    def maps(self, r: ImageRecord):
        """The record's cached conv maps (R-CNN: its window vectors), computed if missing."""
        key = cache_key(r)
        return self.features.get(key, r.read, self._windows(key, r.read, r.image_id, r.boxes))
