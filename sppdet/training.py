"""Training an SPP-net detector end to end, stage by stage, with resumable disk caches:

selective-search proposals and conv maps (once per image per scale), or conv maps → a
proposal network trained on them → its windows → [fc fine-tuning] → feature statistics,
positives and box-regression examples → SVMs with hard-negative mining → box regression.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from .progress import progress

from .backbones import build_trunk
from .bbox_regression import BoxRegressor, ExampleReservoir, box_targets
from .calibration import fit_platt
from .boxes import iou
from .cache import CachedData, task_extractor
from .config import Config
from .datasets import DetectionDataset
from .datasets.common import ImageRecord
from .detector import Detector
from .errors import UserError
from .extractors import ExtractorSettings, extractor_from_config
from .features import resolve_device
from .heads import FCHead, finetune_head, head_from_config
from .parallel import Executor, SerialExecutor
from .proposals import choose_method
from .runtime import single_threaded
from .svm import HardNegativeSVMs
from .windows import ImageWindows, build_windows, prune_negatives

log = logging.getLogger(__name__)


@contextmanager
def stage(name: str, timings: dict[str, float]):
    t0 = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 1024) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)]) if len(x) else fn(x)


def image_windows(record: ImageRecord, class_index: dict[str, int], proposals: np.ndarray) -> ImageWindows:
    """A training image's windows: its non-difficult ground truth (with class indices) first,
    then its proposals, with their overlaps (:func:`sppdet.windows.build_windows`)."""
    keep = ~record.difficult
    gt_cls = np.array([class_index[lab] for lab, k in zip(record.labels, keep) if k], dtype=np.int64)
    return build_windows(record.boxes[keep], gt_cls, proposals, len(class_index))


def learnable_classes(dataset: DetectionDataset, named: list[str] | None) -> list[str]:
    """The model's classes: the data set's classes that have training objects (non-difficult),
    and those the user named (``data.classes``) even without any (the classes they will label
    later, or one this split lacks). A named class without objects stays in the model with an
    SVM that never trains (w = 0, b = 0, :attr:`Detector.untrained`): never detected, and
    evaluated with AP 0 as the VOC devkit scores a class without detections. A class the data
    merely lists (a COCO export's super-category) is left out. One warning names each kind."""
    counts = dict.fromkeys(dataset.classes, 0)
    for r in dataset.records:
        for lab, d in zip(r.labels, r.difficult):
            if not d and lab in counts:
                counts[lab] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if len(empty) == len(counts):
        return list(dataset.classes)  # nothing to learn: train_detector says so
    kept = [c for c in empty if named and c in named]
    dropped = [c for c in empty if c not in kept]
    if kept:
        them = "it" if len(kept) == 1 else "them"
        log.warning(f"data.classes names {', '.join(map(repr, kept))}, but the training split has no (non-difficult) "
                    f"objects of {them}: {them} will never be detected (detect and eval never report {them}; eval "
                    f"lists {them} with AP 0); the other classes are trained. Label some objects of {them} and "
                    f"train again to detect {them}")
    if dropped:
        log.warning(f"class{'es' if len(dropped) > 1 else ''} {', '.join(map(repr, dropped))} "
                    f"{'have' if len(dropped) > 1 else 'has'} no training objects: left out of the model "
                    "(it cannot detect what it never saw; name it in data.classes to keep it, never detected)")
    return [c for c in dataset.classes if counts[c] > 0 or c in kept]


def train_detector(cfg: Config, dataset: DetectionDataset, cache_root: str | Path,
                   timings: dict[str, float] | None = None, executor: Executor | None = None,
                   per_class: bool | None = None) -> tuple[Detector, dict]:
    """Train on ``dataset`` (its ``classes`` are the detector's); returns the detector and a log.

    ``executor`` (:func:`sppdet.parallel.make_executor`) runs the per-image caching and, with
    ``per_class`` (default: on Ray only), SVM mining and box regression as one task per class.
    The model is the same bits whatever the executor. Fine-tuning runs in this process.
    """
    timings = {} if timings is None else timings
    executor = executor or SerialExecutor()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    classes = learnable_classes(dataset, cfg.data.classes)
    cidx = {c: i for i, c in enumerate(classes)}
    C = len(classes)

    method, why = choose_method(cfg.proposals, sum(int((~r.difficult).sum()) for r in dataset.records), cfg.method)
    if method != cfg.proposals.method:
        cfg = dataclasses.replace(cfg, proposals=dataclasses.replace(cfg.proposals, method=method))
        log.info(f"proposals: {method} ({why})")
    trunk = build_trunk(cfg.backbone.name, cfg.backbone.weights)
    extractor = extractor_from_config(cfg, trunk, device)
    data = CachedData.from_config(cfg, extractor, cache_root)
    records = data.prepare(dataset.records, dataset.report, timings, executor=executor)
    if not records:
        raise UserError("no training image could be read")

    train_log: dict = {"proposals": {"method": method, "why": why}}
    rpn = None
    if cfg.proposals.uses_rpn:  # proposals learned on the maps just cached
        rpn, train_log["rpn"] = train_proposal_network(cfg, extractor, records, data, timings)
        data.attach_rpn(rpn)
    with stage("rpn proposals" if rpn is not None else "proposals", timings), single_threaded():
        props = [data.proposals_for(r) for r in progress(records, desc="rpn proposals", unit="img", disable=rpn is None)]
    windows = [image_windows(r, cidx, p) for r, p in zip(records, props)]
    n_gt = sum(w.n_gt for w in windows)
    if n_gt == 0:
        raise UserError("the training split has no (non-difficult) objects to learn from")

    def pool(i: int, idx: np.ndarray | None = None) -> torch.Tensor:
        w = windows[i]
        boxes = w.boxes if idx is None else w.boxes[idx]
        return extractor.pool(data.maps(records[i]), boxes)

    train_log.update({"images": len(records), "objects": int(n_gt), "classes": classes,
                      "windows_per_image": float(np.mean([len(p) for p in props])),
                      "parallel": {"executor": executor.kind, "workers": executor.workers,
                                   "cache": data.last_stats}})
    if cfg.head.type == "upper":
        det = train_upper(cfg, classes, extractor, records, windows, data, rpn, timings, train_log)
        if dropped := [c for c in dataset.classes if c not in cidx]:
            train_log["classes_without_objects"] = dropped
        return det, train_log
    head = None
    if cfg.finetune.enabled:
        head = head_from_config(cfg, extractor, C)
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
        for i, w in enumerate(progress(windows, desc="positives (cached maps)", unit="img")):
            reg = np.nonzero((w.max_iou >= cfg.bbox_reg.min_iou) & (w.max_class >= 0))[0]
            idx = np.concatenate([np.arange(w.n_gt), reg])
            if len(idx) == 0:
                continue
            p5 = pool(i, idx)
            if w.n_gt:
                fg = (svm_features(p5[: w.n_gt]) * feat_scale).cpu().numpy()
                for c in np.unique(w.gt_classes):
                    svms.add_positives(int(c), fg[w.gt_classes == c], i)
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
        # the image orders of every epoch, drawn where the all-classes loop drew them
        orders = [rng.permutation(len(windows)) for _ in range(cfg.svm.epochs)]
        if per_class is None:
            per_class = executor.kind == "ray"
        # tasks elsewhere run on CPU; on a GPU machine that may change fc7 features in the last bit
        inputs = MiningInputs(cfg, C, dim, records, windows, str(cache_root),
                              "cpu" if per_class else str(extractor.device), extractor.trunk.weights_id,
                              feat_scale, orders,
                              None if head is None else {k: v.detach().cpu() for k, v in head.state_dict().items()})
        # a class without positives (named in data.classes, no objects) keeps w = 0, b = 0: untrained
        trainable = [c for c in range(C) if svms.positives[c]]
        if per_class:  # one task per class: each streams every image's maps
            mined = list(executor.map(mine_class_task, [(c, svms.positives[c], svms.pos_images[c]) for c in trainable],
                                      shared=inputs,
                                      desc="svm mining", unit="class", label=lambda item: f"class {classes[item[0]]}"))
        else:
            mined = mine_classes(inputs, trainable, svms.positives, show_progress=True, positive_images=svms.pos_images)
        peaks = [0] * C
        platt = np.tile(fit_platt(np.zeros(0), np.zeros(0, bool)), (C, 1))  # an untrained class's: never used
        for c in set(range(C)) - set(trainable):
            train_log.setdefault("calibration", {})[classes[c]] = {"detections": 0, "hits": 0, "folds_refitted": 0}
        for m in mined:
            c = m["class"]
            peaks[c] = int(m["peak_negatives"])
            platt[c] = m["platt"]
            train_log.setdefault("calibration", {})[classes[c]] = m["calibration"]
            svms.W[:, c], svms.b[c], svms.retrains[c] = m["W"], m["b"], m["retrains"]
            svms.neg[c] = np.zeros((m["negatives"], 0), dtype=np.float16)  # only the count is kept here
    train_log["calibration"] = {c: train_log["calibration"][c] for c in classes}  # in class order
    train_log["svm_retrains"] = dict(zip(classes, svms.retrains))
    train_log["svm_cached_negatives"] = dict(zip(classes, [len(n) for n in svms.neg]))
    train_log["svm_peak_negatives"] = dict(zip(classes, peaks))
    train_log["positives"] = dict(zip(classes, [int(sum(len(p) for p in ps)) for ps in svms.positives]))
    if dropped := [c for c in dataset.classes if c not in cidx]:
        train_log["classes_without_objects"] = dropped
    if untrained := [classes[c] for c in range(C) if c not in trainable]:
        train_log["untrained_classes"] = untrained  # named in data.classes, no training objects

    bbox = None
    if cfg.bbox_reg.enabled:
        with stage("bbox regression", timings):
            bbox = BoxRegressor(C, extractor.dim, cfg.bbox_reg.alpha)
            bbox.fit(reservoir, executor if executor.kind == "ray" else None)
        train_log["bbox_examples"] = dict(zip(classes, [len(x) for x in reservoir.X]))
    det = Detector(cfg, classes, extractor, head, svms.W, svms.b, feat_scale, bbox, pool5_scale, rpn=rpn,
                   platt=platt)
    train_log["timings_s"] = dict(timings)
    train_log["peak_rss_mb"] = peak_rss_mb()
    return det, train_log


def train_upper(cfg: Config, classes: list[str], extractor, records: list[ImageRecord],
                windows: list[ImageWindows], data: CachedData, rpn, timings: dict[str, float],
                train_log: dict) -> Detector:
    """``head.type=upper``: the trunk's upper blocks fine-tuned on the windows of the cached maps
    (:mod:`sppdet.upper_head`); they score and refine the windows themselves, so no SVM or ridge
    stage runs."""
    from .upper_head import HeadTrainItem, build_upper_head, train_upper_head

    h = cfg.head
    head = build_upper_head(h, cfg.backbone.name, cfg.backbone.weights, extractor.trunk, len(classes))
    items = [HeadTrainItem(lambda r=r: data.maps(r), w.boxes[: w.n_gt + h.train_windows], w.n_gt, w.gt_classes)
             for r, w in zip(records, windows)]
    with stage("head fine-tuning", timings):
        train_log["head"] = train_upper_head(head, items, h, cfg.seed, extractor.device)
    det = Detector(cfg, classes, extractor, None, None, None, 1.0, None, 1.0, rpn=rpn, upper=head)
    train_log["timings_s"] = dict(timings)
    train_log["peak_rss_mb"] = peak_rss_mb()
    return det


def train_proposal_network(cfg: Config, extractor, records: list[ImageRecord], data: CachedData,
                           timings: dict[str, float]):
    """Train ``proposals.method=rpn``'s network on the records' cached conv maps and their
    non-difficult ground truth; returns it and its log (anchors chosen, losses, epochs)."""
    from .proposals.rpn import RPNTrainItem, rpn_settings, train_rpn

    p = cfg.proposals
    stored = _stage_path(data.root, "rpn", cfg, records, extractor.device)
    reused = _reuse_rpn(stored)
    if reused is not None:
        return reused
    items = [RPNTrainItem(lambda r=r: data.maps(r), r.boxes[~r.difficult], r.width, r.height) for r in records]
    # one thread, as every per-image task: small ops on two busy threads run ~10x slower, and
    # the weights are then the same bits on any machine
    with stage("rpn training", timings), single_threaded():
        settings, note = rpn_settings(p, extractor.trunk, cfg.features.scales, cfg.features.max_size, items)
        log.info(f"rpn: reads scale {note['scale']}; anchors {note['anchors']}: sides "
                 f"{', '.join(f'{v:g}' for v in settings.sizes)} px, ratios (h/w) "
                 f"{', '.join(f'{v:g}' for v in settings.ratios)}")
        model, fit = train_rpn(settings, items, cfg.features.scales, epochs=p.rpn_epochs, lr=p.rpn_lr,
                               val_fraction=p.rpn_val_fraction, seed=cfg.seed, device=extractor.device)
    _keep_rpn(stored, model, {**note, **fit})
    return model, {**note, **fit}


# -- finished stages kept in the cache ----------------------------------------------------------
def _stage_path(cache_root: Path, stage_name: str, cfg: Config, records: list[ImageRecord], device) -> Path:
    """Where a finished training stage is kept, keyed by everything that changes its result
    (the settings it reads, the seed, the device kind, each image's content key), so that a
    training interrupted later (Ctrl-C in fine-tuning, a full disk when saving) does not train
    it again; any change of those trains it anew."""
    from .cache import cache_key
    from .config import config_digest

    c = cfg.to_dict()
    key = {"proposals": c["proposals"], "backbone": c["backbone"], "features": c["features"], "seed": cfg.seed,
           "device": torch.device(device).type, "images": sorted(cache_key(r) for r in records),
           "version": 1}
    return Path(cache_root) / "stages" / f"{stage_name}-{config_digest(key)}.pt"


def _reuse_rpn(path: Path):
    from .proposals.rpn import read_rpn_blob, rpn_from_blob

    if not path.is_file():
        return None
    try:
        blob = read_rpn_blob(path)  # read once: the network and the log it was trained with
        model = rpn_from_blob(blob, path)
        fit = blob.get("log") or {}
    except (UserError, OSError, RuntimeError) as exc:  # damaged: train it again
        log.warning(f"a kept proposal network {path} cannot be used ({exc}); training it again")
        return None
    log.info(f"rpn: the proposal network trained by an earlier run of this training is reused ({path})")
    return model, {**fit, "reused_from": str(path)}


def _keep_rpn(path: Path, model, fit: dict) -> None:
    from .fileio import atomic_save
    from .proposals.rpn import rpn_blob

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fit = json.loads(json.dumps(fit, default=float))  # plain types: read back with weights_only
        atomic_save(path, lambda tmp: torch.save({**rpn_blob(model), "log": fit}, tmp))
    except OSError as exc:  # only a shortcut for a rerun: the training goes on without it
        log.warning(f"cannot keep the proposal network in the cache ({exc}); a rerun trains it again")


@dataclass
class MiningInputs:
    """What every class's hard-negative mining reads; sent once to each task (Ray: put once)."""

    cfg: Config
    num_classes: int
    dim: int
    records: list[ImageRecord]
    windows: list[ImageWindows]
    cache_root: str  # on storage every node sees
    device: str
    weights_id: str
    feat_scale: float
    orders: list[np.ndarray]  # image order of each epoch
    head_state: dict | None  # fine-tuned fc layers (CPU tensors), or None: SVMs on pool5


def mine_classes(inp: MiningInputs, classes, positives: list[list[np.ndarray]],
                 show_progress: bool = False, positive_images: list[list[int]] | None = None) -> list[dict]:
    """Hard-negative mining of the SVMs of ``classes``, streaming every image's cached maps
    (``positives[c]``: class c's positive features). Each class's state is independent of the
    others', so mining them together or one per task gives the same bits; the arithmetic runs
    on one thread so that where it runs does not change them either.

    ``positive_images[c]``: the image of each of ``positives[c]``'s arrays, so that the score
    calibration (:mod:`sppdet.calibration`) refits each fold's SVM without them.

    Returns per class ``{"class", "W", "b", "retrains", "negatives", "peak_negatives", "platt",
    "calibration"}``.
    """
    classes = [int(c) for c in classes]
    cfg = inp.cfg
    with single_threaded():
        extractor = task_extractor(ExtractorSettings.from_config(cfg), inp.weights_id, inp.device)
        data = CachedData.from_config(cfg, extractor, inp.cache_root)
        head = None
        if inp.head_state is not None:
            w6 = inp.head_state["fc6.weight"]
            head = FCHead(w6.shape[1], w6.shape[0], inp.num_classes)
            head.load_state_dict(inp.head_state)
            head.to(inp.device).eval()
        svms = HardNegativeSVMs(cfg.svm, inp.num_classes, inp.dim, cfg.seed)
        for c in classes:
            svms.positives[c] = positives[c]
            # -1: image unknown, the positives then join every fold's refit
            svms.pos_images[c] = list(positive_images[c]) if positive_images is not None else [-1] * len(positives[c])

        def features(i: int) -> np.ndarray:
            pool5 = extractor.pool(data.maps(inp.records[i]), inp.windows[i].boxes)
            if head is not None:
                with torch.inference_mode():
                    pool5 = _batched(head.features, pool5.to(inp.device))
            return (pool5 * inp.feat_scale).cpu().numpy()

        for epoch, order in enumerate(inp.orders):
            for i in progress(order, desc=f"svm mining (epoch {epoch + 1}, cached maps)", unit="img",
                              disable=not show_progress):
                w = inp.windows[i]
                feats = features(i)
                neg = w.class_iou.astype(np.float32) < cfg.svm.neg_iou
                neg[: w.n_gt] = False
                cols = list(classes)  # only the classes mined here need pruning
                neg[:, cols] = prune_negatives(w.boxes, neg[:, cols], cfg.svm.neg_overlap_prune)
                svms.mine(int(i), feats, neg, classes)
            svms.finish(classes)
        calib = calibrate(svms, classes, inp, features, show_progress)
    return [{"class": c, "W": svms.W[:, c].copy(), "b": svms.b[c], "retrains": svms.retrains[c],
             "negatives": len(svms.neg[c]), "peak_negatives": svms.peak_negatives[c], **calib[c]} for c in classes]


def calibrate(svms: HardNegativeSVMs, classes: list[int], inp: MiningInputs, features,
              show_progress: bool = False) -> dict[int, dict]:
    """Platt's sigmoid of each class (:mod:`sppdet.calibration`): per fold of training images, the
    class's SVM refitted without that fold scores a sample of the fold's images; their
    detections, labelled hit or not, fit the sigmoid. Returns per class ``{"platt": (A, B),
    "calibration": {"detections", "hits", "folds"}}``."""
    from .calibration import FOLDS, calibration_images, fit_platt, image_folds, labelled_detections

    n = len(inp.windows)
    fold = image_folds(n, inp.cfg.seed)
    refits = {(c, f): svms.refit_without(c, fold == f) for c in classes for f in range(FOLDS)}
    margins: dict[int, list] = {c: [] for c in classes}
    hits: dict[int, list] = {c: [] for c in classes}
    for i in progress(calibration_images(n, inp.cfg.seed), desc="score calibration (cached maps)", unit="img",
                      disable=not show_progress):
        todo = [c for c in classes if refits[(c, int(fold[i]))] is not None]
        if not todo:
            continue
        w = inp.windows[i]
        feats = features(int(i))[w.n_gt:]  # proposals only: ground truth is no detection
        gts = w.boxes[: w.n_gt]
        for c in todo:
            wc, bc = refits[(c, int(fold[i]))]
            m, h = labelled_detections(w.boxes[w.n_gt:], feats @ wc + bc, gts[w.gt_classes == c], inp.cfg.test.nms)
            margins[c].append(m)
            hits[c].append(h)
    out = {}
    for c in classes:
        m = np.concatenate(margins[c]) if margins[c] else np.zeros(0)
        h = np.concatenate(hits[c]) if hits[c] else np.zeros(0, bool)
        out[c] = {"platt": fit_platt(m, h), "calibration": {
            "detections": int(len(m)), "hits": int(h.sum()),
            "folds_refitted": sum(refits[(c, f)] is not None for f in range(FOLDS))}}
    return out


def mine_class_task(inp: MiningInputs, item: tuple[int, list[np.ndarray], list[int]]) -> dict:
    """One class's SVM (a task): ``item`` is ``(class index, its positive features, their images)``."""
    c, pos, pos_images = item
    positives: list[list[np.ndarray]] = [[] for _ in range(inp.num_classes)]
    images: list[list[int]] = [[] for _ in range(inp.num_classes)]
    positives[c], images[c] = pos, pos_images
    return mine_classes(inp, [c], positives, positive_images=images)[0]


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (Linux/macOS), in MB."""
    try:
        import resource
        import sys

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 / (1024 if sys.platform == "darwin" else 1)
    except (ImportError, OSError):
        return None
