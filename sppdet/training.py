"""Training an SPP-net detector end to end, stage by stage, with resumable disk caches:

proposals → conv maps (once per image per scale) → [fc fine-tuning] → feature statistics,
positives and box-regression examples → SVMs with hard-negative mining → box regression.
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from .progress import progress as tqdm

from .backbones import build_trunk
from .bbox_regression import BoxRegressor, ExampleReservoir, box_targets
from .config import Config, config_digest
from .datasets import DetectionDataset, ImageRecord, LoadReport
from .detector import Detector
from .errors import UserError
from .features import FeatureCache, FeatureExtractor, resolve_device
from .heads import FCHead, finetune_head
from .images import ImageReadError, read_image
from .proposals import ProposalCache
from .svm import HardNegativeSVMs
from .windows import ImageWindows, build_windows, iou

log = logging.getLogger(__name__)


def make_extractor(cfg: Config, trunk, device):
    """SPP-net's once-per-image extractor, or R-CNN's once-per-window one (``method: rcnn``)."""
    f = cfg.features
    if cfg.method == "rcnn":
        from .rcnn import RCNNExtractor

        return RCNNExtractor(trunk, f.levels, device)
    return FeatureExtractor(trunk, f.scales, f.max_size, f.levels, device)


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


@contextmanager
def stage(name: str, timings: dict[str, float]):
    t0 = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 1024) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)]) if len(x) else fn(x)


def train_detector(cfg: Config, dataset: DetectionDataset, cache_root: str | Path,
                   timings: dict[str, float] | None = None) -> tuple[Detector, dict]:
    """Train on ``dataset`` (its ``classes`` are the detector's); returns the detector and a log."""
    timings = {} if timings is None else timings
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    classes = dataset.classes
    cidx = {c: i for i, c in enumerate(classes)}
    C = len(classes)

    trunk = build_trunk(cfg.backbone.name, cfg.backbone.weights)
    extractor = make_extractor(cfg, trunk, device)
    data = CachedData(cfg, extractor, cache_root)
    records = data.prepare(dataset.records, dataset.report, timings)
    if not records:
        raise UserError("no training image could be read")

    windows: list[ImageWindows] = []
    for r in records:
        keep = ~r.difficult
        gt_cls = np.array([cidx[lab] for lab, k in zip(r.labels, keep) if k], dtype=np.int64)
        windows.append(build_windows(r.boxes[keep], gt_cls, data.boxes(r), C))
    n_gt = sum(w.n_gt for w in windows)
    if n_gt == 0:
        raise UserError("the training split has no (non-difficult) objects to learn from")

    def pool(i: int, idx: np.ndarray | None = None) -> torch.Tensor:
        w = windows[i]
        boxes = w.boxes if idx is None else w.boxes[idx]
        return extractor.pool(data.maps(records[i]), boxes)

    train_log: dict = {"images": len(records), "objects": int(n_gt), "classes": classes}
    head = None
    if cfg.finetune.enabled:
        head = FCHead(extractor.dim, cfg.finetune.hidden, C, cfg.finetune.dropout)
        with stage("fine-tune fc", timings):
            train_log["finetune_loss"] = finetune_head(
                head, list(range(len(records))), lambda i: windows[i], pool, cfg.finetune, cfg.seed, device)

    def svm_features(pool5: torch.Tensor) -> torch.Tensor:
        if head is None:
            return pool5
        with torch.inference_mode():
            return _batched(head.features, pool5.to(device))

    # Feature statistics (R-CNN scales features to a mean norm of 20) from a sample of windows.
    with stage("feature stats", timings):
        sample = rng.choice(len(records), min(len(records), 100), replace=False)
        n5, nf = [], []
        for i in sample:
            idx = rng.choice(len(windows[i].boxes), min(32, len(windows[i].boxes)), replace=False)
            p5 = pool(int(i), idx)
            n5.append(p5.norm(dim=1).cpu())
            nf.append(svm_features(p5).norm(dim=1).cpu())
        pool5_scale = cfg.svm.feat_norm / max(float(torch.cat(n5).mean()), 1e-12)
        feat_scale = cfg.svm.feat_norm / max(float(torch.cat(nf).mean()), 1e-12)

    dim = head.fc7.out_features if head is not None else extractor.dim
    svms = HardNegativeSVMs(cfg.svm, C, dim, cfg.seed)
    reservoir = ExampleReservoir(C, cap=cfg.bbox_reg.max_examples, seed=cfg.seed)
    with stage("positives + bbox examples", timings):
        for i, w in enumerate(tqdm(windows, desc="positives", unit="img")):
            reg = np.nonzero((w.max_iou >= cfg.bbox_reg.min_iou) & (w.max_class >= 0))[0]
            idx = np.concatenate([np.arange(w.n_gt), reg])
            if len(idx) == 0:
                continue
            p5 = pool(i, idx)
            if w.n_gt:
                fg = (svm_features(p5[: w.n_gt]) * feat_scale).cpu().numpy()
                for c in np.unique(w.gt_classes):
                    svms.add_positives(int(c), fg[w.gt_classes == c])
            if cfg.bbox_reg.enabled and len(reg):
                # every window with IoU >= 0.6 (ground truth included, once), regressed onto the
                # ground truth it overlaps most
                x5 = p5[w.n_gt:].cpu().numpy() * pool5_scale
                gts = w.boxes[: w.n_gt]
                best = iou(w.boxes[reg], gts).argmax(1)
                for c in np.unique(w.max_class[reg]):
                    sel = w.max_class[reg] == c
                    reservoir.add(int(c), x5[sel], box_targets(w.boxes[reg][sel], gts[best[sel]]))

    with stage("svm hard-negative mining", timings):
        for epoch in range(cfg.svm.epochs):
            for i in tqdm(rng.permutation(len(windows)), desc=f"svm mining (epoch {epoch + 1})", unit="img"):
                w = windows[i]
                feats = (svm_features(pool(int(i))) * feat_scale).cpu().numpy()
                neg = w.class_iou.astype(np.float32) < cfg.svm.neg_iou
                neg[: w.n_gt] = False
                svms.mine(int(i), feats, neg)
            svms.finish()
    train_log["svm_retrains"] = dict(zip(classes, svms.retrains))
    train_log["svm_cached_negatives"] = dict(zip(classes, [len(n) for n in svms.neg]))
    train_log["positives"] = dict(zip(classes, [int(sum(len(p) for p in ps)) for ps in svms.positives]))
    missing = [c for c, n in train_log["positives"].items() if n == 0]
    if missing:
        warnings.warn(f"no training objects for classes {missing}: they will never be detected", stacklevel=2)

    bbox = None
    if cfg.bbox_reg.enabled:
        with stage("bbox regression", timings):
            bbox = BoxRegressor(C, extractor.dim, cfg.bbox_reg.alpha)
            bbox.fit(reservoir)
        train_log["bbox_examples"] = dict(zip(classes, [len(x) for x in reservoir.X]))
    det = Detector(cfg, classes, extractor, head, svms.W, svms.b, feat_scale, bbox, pool5_scale)
    train_log["timings_s"] = dict(timings)
    train_log["peak_rss_mb"] = peak_rss_mb()
    return det, train_log


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (Linux/macOS), in MB."""
    try:
        import resource
        import sys

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 / (1024 if sys.platform == "darwin" else 1)
    except (ImportError, OSError):
        return None


def run_detection(det: Detector, records: Sequence[ImageRecord], data: CachedData | None,
                  report: LoadReport, desc: str = "detect") -> list[dict]:
    """Detections (``{"image", "label", "score", "bbox"}``) for each record, using caches when given."""
    out = []
    for r in tqdm(records, desc=desc, unit="img"):
        try:
            if data is not None:
                props, maps = data.boxes(r), data.maps(r)
                d = det.detect_maps(maps, props, r.width, r.height)
            else:
                d = det.detect(read_image(r.path))
        except ImageReadError as exc:
            report.add("image that cannot be decoded (skipped)", str(exc))
            continue
        for b, s, c in zip(d.boxes, d.scores, d.labels):
            out.append({"image": r.path.name, "label": det.classes[int(c)], "score": float(s),
                        "bbox": [float(v) for v in b]})
    return out
