"""A trained SPP-net detector: windows → SPP vectors → (fc7) → per-class SVM scores →
box regression → per-class NMS. Saved as a run directory and checked when loaded."""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .version import __version__
from .backbones import build_trunk
from .arguments import ANYTHING, BOOL, NUMBER, THRESHOLD, Takes, checked, whole
from .bbox_regression import BoxRegressor
from .boxes import clip, to_continuous
from .config import Config
from .detections import Detections
from .errors import UserError
from .extractors import extractor_from_config
from .features import FeatureExtractor, ScaleMap, resolve_device
from .heads import FCHead
from .images import read_image, to_rgb_array
from .proposals import make_proposer
from .run_checks import config_sha256
from .run_dir import CONFIG_FILE, RPN_FILE, read_run, write_run


def class_by_class_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                       iou: float) -> torch.Tensor:
    """Per-class NMS, one class at a time, as ONNX's ``NonMaxSuppression`` computes it (the
    exported graph's): ``batched_nms`` on under 1000 boxes shifts each class's boxes by a class
    offset in float32, which rounds their IoUs differently and flips decisions near the cut.
    Indices kept, by decreasing score."""
    from torchvision.ops import nms

    keep = [torch.nonzero(classes == c).flatten() for c in torch.unique(classes)]
    keep = torch.cat([idx[nms(boxes[idx], scores[idx], iou)] for idx in keep]) if keep else \
        torch.zeros(0, dtype=torch.int64)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


class Detector:
    def __init__(self, cfg: Config, classes: Sequence[str], extractor: FeatureExtractor,
                 head: FCHead | None, svm_W: np.ndarray, svm_b: np.ndarray, feat_scale: float,
                 bbox: BoxRegressor | None, pool5_scale: float, rpn=None, platt: np.ndarray | None = None,
                 upper=None):
        self.cfg = cfg
        # head.type=upper: the fine-tuned upper blocks (sppdet.upper_head) score and refine the
        # windows; svm_W/svm_b, bbox and platt are then None
        self.upper = upper.eval() if upper is not None else None
        self.rpn = rpn  # proposals.method=rpn: the trained proposal network (proposals/rpn.py)
        self.classes = list(classes)
        self.extractor = extractor
        self.head = head.eval() if head is not None else None
        if upper is not None:
            svm_W, svm_b = np.zeros((upper.dim, len(self.classes))), np.ones(len(self.classes))
        self.svm_W = torch.as_tensor(np.asarray(svm_W, dtype=np.float32))
        self.svm_b = torch.as_tensor(np.asarray(svm_b, dtype=np.float32))
        self.feat_scale = float(feat_scale)
        self.bbox = bbox
        self.pool5_scale = float(pool5_scale)
        # [C, 2] each class's Platt sigmoid (A, B): scores are probabilities. None: a run before
        # 0.4, whose scores stay SVM margins (and whose test.score_thresh is a margin).
        self.platt = None if platt is None else np.asarray(platt, dtype=np.float64).reshape(-1, 2)
        # A class whose SVM never trained (w = 0, b = 0: no positives, as 0.3 kept classes without
        # objects) would score every window exactly 0, above the real classes: never emitted.
        self.untrained = ~((self.svm_W != 0).any(0) | (self.svm_b != 0)).numpy()
        self.run_dir: Path | None = None  # where it was loaded from or saved to
        self.train_log: dict | None = None  # set by sppdet.train
        self.metrics: dict | None = None  # set by sppdet.train with an eval split

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    @property
    def proposer(self):
        """The proposal method for new images (:mod:`sppdet.proposals`), built on first use."""
        p = getattr(self, "_proposer", None)
        if p is None or p[0] is not self.cfg.proposals:  # settings replaced (test-time overrides)
            p = (self.cfg.proposals,
                 make_proposer(self.cfg.proposals, self.cfg.features.scales, self.rpn).for_new_images())
            self._proposer = p
        return p[1]

    def cached_data(self, cache_root: str | Path):
        """The proposal and conv-map caches (:class:`sppdet.cache.CachedData`) this detector
        reads, with its proposal network."""
        from .cache import CachedData

        return CachedData.from_config(self.cfg, self.extractor, cache_root, rpn=self.rpn)

    def propose(self, image: np.ndarray | None, maps: Sequence[ScaleMap] | None, width: int, height: int,
                image_id: str = "") -> np.ndarray:
        """New windows for an image, from its pixels or its conv maps as the method needs."""
        return self.proposer.propose(image_id, lambda: image, lambda: maps, (width, height))

    # -- stages -------------------------------------------------------------------------
    @torch.inference_mode()
    def window_features(self, pool5: torch.Tensor) -> torch.Tensor:
        """What the SVMs see: fc7 after fine-tuning, else pool5; times the feature scale."""
        f = self.head.features(pool5) if self.head is not None else pool5
        return f * self.feat_scale

    @torch.inference_mode()
    def score(self, feats: torch.Tensor) -> np.ndarray:
        W, b = self.svm_W.to(feats.device), self.svm_b.to(feats.device)
        scores = (feats @ W + b).float().cpu().numpy()
        scores[:, self.untrained] = -np.inf
        return scores

    @property
    def calibrated(self) -> bool:
        """Scores are probabilities: Platt-calibrated SVM margins, or the upper head's softmax."""
        return self.platt is not None or self.upper is not None

    def probabilities(self, margins: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Each margin's calibrated score under its class's sigmoid (float64)."""
        from .calibration import sigmoid

        return sigmoid(margins, self.platt[classes, 0], self.platt[classes, 1])

    def thresholds(self, threshold=None) -> np.ndarray:
        """The least score kept per class, ``[C]``: ``threshold`` a number, a dict of class name →
        number (classes not named keep ``test.score_thresh``; see :mod:`sppdet.thresholds`), a
        ``[C]`` vector, or None (``test.score_thresh`` for every class)."""
        from .thresholds import class_thresholds

        if isinstance(threshold, (np.ndarray, torch.Tensor)) and np.ndim(threshold) == 1:
            vec = np.asarray(threshold, dtype=np.float64)
            if len(vec) != len(self.classes):
                raise UserError(f"a threshold vector needs one value per class ({len(self.classes)}: "
                                f"{', '.join(self.classes)}), got {len(vec)}")
            threshold = dict(zip(self.classes, vec.tolist()))
        return class_thresholds(threshold, self.classes, self.cfg.test.score_thresh, self.calibrated)

    def postprocess(self, proposals: np.ndarray, scores: np.ndarray, pool5: torch.Tensor | None,
                    width: int, height: int, threshold=None) -> Detections:
        """Box regression of every window scoring above its class's threshold, then per-class
        NMS, then the per-image cap on the best. ``scores`` are the SVM margins ``[windows,
        classes]``; ``threshold`` (see :meth:`thresholds`; default ``test.score_thresh``) is on
        the calibrated score, and windows below the margin floor (-1) are never detections; a
        run without calibration thresholds the margins themselves."""
        from .calibration import MARGIN_FLOOR

        thr = self.thresholds(threshold)  # [C]
        if self.platt is None:
            ks, cs = np.nonzero(scores > thr[None, :])
        else:
            ks, cs = np.nonzero(scores > MARGIN_FLOOR)
            sel = self.probabilities(scores[ks, cs], cs) > thr[cs]
            ks, cs = ks[sel], cs[sel]
        if len(ks) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), names=self.classes,
                              margins=np.zeros(0), calibrated=self.calibrated)
        boxes = np.asarray(proposals, dtype=np.float64)[ks].copy()
        if self.bbox is not None and pool5 is not None and self.cfg.bbox_reg.enabled:
            p5 = pool5.float().cpu().numpy()
            for c in np.unique(cs):
                sel = cs == c
                boxes[sel] = self.bbox.predict(boxes[sel], p5[ks[sel]] * self.pool5_scale, int(c))
        s = scores[ks, cs]
        return self._nms_and_cap(clip(boxes, width, height), s, cs,
                                 lambda keep: self.probabilities(s[keep], cs[keep]) if self.platt is not None else s[keep])

    def _nms_and_cap(self, boxes: np.ndarray, s: np.ndarray, cs: np.ndarray, scores_of) -> Detections:
        """Per-class NMS on ``s`` (margins, or probabilities), then the per-image cap on the best
        ``scores_of(kept)``: calibrated scores compare across classes, margins do not."""
        t = self.cfg.test
        b = to_continuous(torch.from_numpy(boxes))
        # per-class NMS on the margins (within a class the calibrated order is the same), equal
        # margins (windows on the same cells) in window order: NMS ranks by position in that order
        rank = np.argsort(-s, kind="stable")
        keep = rank[class_by_class_nms(b[rank].float(), -torch.arange(len(s), dtype=torch.float32),
                                       torch.from_numpy(cs[rank]), t.nms).numpy()]
        out = scores_of(keep)
        order = np.lexsort((-s[keep], -out))[: t.max_per_image]
        keep = keep[order]
        return Detections(boxes[keep], out[order], cs[keep], names=self.classes, margins=s[keep],
                          calibrated=self.calibrated)

    def postprocess_upper(self, proposals: np.ndarray, probs: np.ndarray, refined: np.ndarray,
                          threshold: float | None = None) -> Detections:
        """The upper head's detections: each (window, class) whose softmax score is above the
        threshold, at that class's refined box, then per-class NMS and the cap. The margins
        reported are the scores' log-odds."""
        thr = self.cfg.test.score_thresh if threshold is None else threshold
        ks, cs = np.nonzero(probs > thr)
        if len(ks) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), names=self.classes,
                              margins=np.zeros(0), calibrated=True)
        p = probs[ks, cs]
        dets = self._nms_and_cap(refined[ks, cs], p, cs, lambda keep: p[keep])
        q = np.clip(dets.scores, 1e-12, 1 - 1e-12)
        dets.margins = np.log(q / (1 - q))
        return dets

    def detect_maps(self, maps: Sequence[ScaleMap], proposals: np.ndarray, width: int, height: int,
                    timings: dict[str, float] | None = None, threshold=None) -> Detections:
        timings = {} if timings is None else timings
        if self.upper is not None:
            windows = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)[: self.cfg.head.test_windows]
            probs, refined, seconds = self.upper.predict(maps, windows, width, height)
            t3 = time.perf_counter()
            dets = self.postprocess_upper(windows, probs, refined, threshold)
            timings.update(seconds, svm=0.0, bbox_nms=time.perf_counter() - t3)
            dets.timings = timings
            return dets
        t0 = time.perf_counter()
        pool5 = self.extractor.pool(maps, proposals, reuse_buffer=True)  # consumed within this call
        t1 = time.perf_counter()
        feats = self.window_features(pool5)
        t2 = time.perf_counter()
        # twins (windows on the same cells) take one score, so that NMS ranks them by window
        # order in any engine rather than by how a matrix product rounded two equal rows
        scores = self.score(feats)[self.extractor.twins(maps, proposals)]
        t3 = time.perf_counter()
        dets = self.postprocess(proposals, scores, pool5, width, height, threshold)
        t4 = time.perf_counter()
        timings.update(pooling=t1 - t0, fc=t2 - t1, svm=t3 - t2, bbox_nms=t4 - t3)
        dets.timings = timings
        return dets

    def detect(self, image: np.ndarray, proposals: np.ndarray | None = None,
               threshold=None) -> Detections:
        """Detect objects in an RGB uint8 image: the run's proposal method (selective search on
        the pixels, or the proposal network on the conv map) unless ``proposals`` are given;
        ``threshold``: the least score kept, a number or per class (see :meth:`thresholds`)."""
        h, w = image.shape[:2]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if proposals is not None:
            proposals = check_proposals(proposals)
        if proposals is None and not self.proposer.needs_maps:
            proposals = self.propose(image, None, w, h)
        t1 = time.perf_counter()
        maps = self.extractor.compute(image)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if proposals is None:  # from the map just computed: the trunk runs once for everything
            proposals = self.propose(image, maps, w, h)
        t3 = time.perf_counter()
        timings.update(proposals=(t1 - t0) + (t3 - t2), conv=t2 - t1)
        return self.detect_maps(maps, proposals, w, h, timings, threshold)

    @checked(source=ANYTHING, proposals=Takes("an [N, 4] array of numbers", lambda p: check_proposals(p)).or_none(),
             exif_transpose=BOOL, threshold=THRESHOLD.or_none(), tile=whole(1).or_none(), overlap=NUMBER)
    def __call__(self, source, proposals: np.ndarray | None = None, exif_transpose: bool = True,
                 threshold: "float | dict[str, float] | None" = None, tile: int | None = None,
                 overlap: float = 0.25) -> "Detections | list[Detections]":
        """Detect objects in an image file path, a PIL image, an ``[H, W, 3]`` RGB uint8 array,
        a ``[3, H, W]`` tensor (uint8, or float in [0, 1]) — or a list of them (a list back).

        Files are read as a viewer shows them (EXIF orientation applied unless
        ``exif_transpose=False``), and the boxes are in that orientation. ``threshold``: the
        least score kept, default the run's ``test.score_thresh`` (0.25 of a probability for
        calibrated runs, as ``sppdet detect`` uses); a dict (``{"RBC": 0.4, "WBC": 0.2}``) sets
        it per class, the classes it does not name keeping the default. ``tile``: detect on
        overlapping ``tile``-pixel tiles (``overlap`` of a tile in [0, 1)) and the whole image,
        merged (:mod:`sppdet.tiling`), for images much larger than the training scale.
        """
        if isinstance(source, (list, tuple)):
            if proposals is not None:
                raise UserError("proposals= belongs to one image; call the detector on each image of the list")
            return [self(s, None, exif_transpose, threshold, tile, overlap) for s in source]
        thr = self.thresholds(threshold)  # checked before any image is read
        tiling = self.tiling(tile, overlap)
        if tiling is not None and proposals is not None:
            raise UserError("proposals= and tile= do not go together: each tile proposes its own windows")
        path = None
        if isinstance(source, (str, Path)):
            path = str(source)
            image = read_image(source, exif_transpose=exif_transpose)
        else:
            image = to_rgb_array(source)
        if tiling is not None:
            from .tiling import detect_tiled

            d = detect_tiled(self, image, tiling, thr)
        else:
            d = self.detect(image, proposals, thr)
        d.image, d.path = image, path
        return d

    def tiling(self, tile, overlap: float = 0.25, **options):
        """:class:`sppdet.tiling.Tiling` for ``tile`` pixels and ``overlap``, checked against this
        detector's trunk (None when ``tile`` is None; a ``Tiling`` is checked and kept, e.g.
        ``det.tiling(800, drop_border=False)`` made beforehand)."""
        from .tiling import Tiling, make_tiling

        if tile is None:
            return None
        if isinstance(tile, Tiling):
            make_tiling(tile.size, tile.overlap, self.extractor.trunk.stride)
            return tile
        return make_tiling(tile, overlap, self.extractor.trunk.stride, **options)

    # -- persistence --------------------------------------------------------------------
    def save(self, run_dir: str | Path, train_log: dict | None = None) -> None:
        """Write the run directory (:func:`sppdet.run_dir.write_run`: atomically, the model
        last, stamped with one ``run_id``)."""
        trunk = self.extractor.trunk
        blob = {
            "classes": self.classes,
            "backbone": trunk.name,
            "weights_sha256": trunk.weights_id,
            "head": None if self.head is None else {k: v.cpu() for k, v in self.head.state_dict().items()},
            "svm_W": self.svm_W.cpu(), "svm_b": self.svm_b.cpu(),
            "feat_scale": self.feat_scale, "pool5_scale": self.pool5_scale,
            "bbox_W": None if self.bbox is None else torch.from_numpy(self.bbox.W),
            "bbox_b": None if self.bbox is None else torch.from_numpy(self.bbox.b),
            "bbox_trained": None if self.bbox is None else torch.from_numpy(self.bbox.trained),
            "channels_last": self.extractor.channels_last,
            "platt": None if self.platt is None else torch.from_numpy(self.platt),
            "config": self.cfg.to_dict(),  # what config.yaml is checked against when loading
        }
        if self.upper is not None:  # head.type=upper: the head scores and refines; no SVM, ridge or Platt
            blob.update(svm_W=None, svm_b=None, upper_head={
                "spec": self.upper.spec(), "keep_stride": self.cfg.head.keep_stride,
                "state": {k: v.cpu() for k, v in self.upper.state_dict().items()}})
        meta = {"sppdet_version": __version__, "classes": self.classes, "backbone": trunk.name,
                "weights_sha256": trunk.weights_id, "feature_dim": int(self.svm_W.shape[0]),
                "fine_tuned": self.head is not None or self.upper is not None, "method": self.cfg.method,
                "head": "upper" if self.upper is not None else "svm",
                "config_sha256": config_sha256(blob["config"])}
        extra = {}
        if self.rpn is not None:  # its digest in model.pt ties the SVMs to this very network
            from .proposals.rpn import rpn_blob

            rpn = rpn_blob(self.rpn)
            blob["rpn_digest"] = rpn["digest"]
            extra[RPN_FILE] = lambda tmp: torch.save(rpn, tmp)
        write_run(run_dir, self.cfg, meta, blob, train_log, extra=extra)
        self.run_dir = Path(run_dir)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, weights: str | None = None) -> "Detector":
        files = read_run(run_dir)
        run, cfg, blob, model_path = files.path, files.cfg, files.blob, files.model_path
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        dev = resolve_device(cfg.device)
        trunk = build_trunk(cfg.backbone.name, weights or cfg.backbone.weights)
        if trunk.weights_id != blob["weights_sha256"]:
            raise UserError(f"{run} was trained with {cfg.backbone.name} weights sha256 "
                            f"{blob['weights_sha256'][:16]}…, but the weights found now have "
                            f"{trunk.weights_id[:16]}…; make the run's weights file available again "
                            f"(backbone.weights in its {CONFIG_FILE}, or sppdet.load(run, weights=PATH))")
        ext = extractor_from_config(cfg, trunk, dev)
        ext.channels_last = bool(blob.get("channels_last", False))  # runs before 0.2: [C, n, n]
        rpn = cls._load_rpn(run, cfg, blob, model_path, trunk, dev)
        if blob.get("upper_head") is not None:
            return cls._load_upper(run, cfg, blob, model_path, ext, rpn, dev)
        if cfg.head.type != "svm":  # a run from before head.type existed
            raise UserError(f"{run}: {CONFIG_FILE} says head.type={cfg.head.type} but {model_path.name} holds "
                            "SVMs; the run is damaged or was edited: train it again")
        try:
            head, bbox = cls._load_heads(blob, ext, dev)
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{model_path} is damaged: its fc head or box regressors do not load "
                            f"({type(exc).__name__}: {exc})") from None
        if head is not None and head.fc6.in_features != ext.dim:
            raise UserError(f"{run}: its fc6 expects {head.fc6.in_features}-d SPP vectors but the "
                            f"config gives {ext.dim}")
        expected = head.fc7.out_features if head is not None else ext.dim
        if tuple(blob["svm_W"].shape) != (expected, len(blob["classes"])):
            raise UserError(f"{run}: SVM weights have shape {tuple(blob['svm_W'].shape)}, expected "
                            f"({expected}, {len(blob['classes'])})")
        n_cls = len(blob["classes"])
        if bbox is not None and (bbox.W.shape != (n_cls, ext.dim, 4) or bbox.b.shape != (n_cls, 4)
                                 or bbox.trained.shape != (n_cls,)):
            raise UserError(f"{run}: box regressors have shape {tuple(bbox.W.shape)}, expected "
                            f"({n_cls}, {ext.dim}, 4)")
        platt = blob.get("platt")  # runs before 0.4 have none: their scores stay SVM margins
        if platt is not None and tuple(platt.shape) != (n_cls, 2):
            raise UserError(f"{run}: score calibration has shape {tuple(platt.shape)}, expected ({n_cls}, 2)")
        det = cls(cfg, blob["classes"], ext, head, blob["svm_W"].numpy(), blob["svm_b"].numpy(),
                  blob["feat_scale"], bbox, blob["pool5_scale"], rpn=rpn,
                  platt=None if platt is None else platt.numpy())
        det.run_dir = run
        if platt is None:
            warnings.warn(f"{run} was trained before sppdet 0.4 and has no score calibration: its scores are SVM "
                          "margins (unbounded, 0 = the decision boundary), not probabilities, and its "
                          f"test.score_thresh ({cfg.test.score_thresh:g}) is a margin; train it again for "
                          "scores in [0, 1]", stacklevel=2)
        if det.untrained.any():
            warnings.warn(f"{run}: class{'es' if det.untrained.sum() > 1 else ''} "
                          f"{', '.join(c for c, u in zip(det.classes, det.untrained) if u)} had no training "
                          "objects (an SVM that never trained): never detected", stacklevel=2)
        return det

    @staticmethod
    def _load_rpn(run: Path, cfg: Config, blob: dict, model_path: Path, trunk, dev):
        """The run's proposal network (``rpn.pt``), checked against model.pt and the trunk; None
        for pixel-based proposals."""
        if not cfg.proposals.uses_rpn:
            if (run / RPN_FILE).exists():  # put there by hand: it was not part of this training
                warnings.warn(f"{run} holds a {RPN_FILE}, but it was trained with proposals.method="
                              f"{cfg.proposals.method}: the file is not used (a run of sppdet never leaves one "
                              "there); remove it, or train with proposals.method=rpn", stacklevel=3)
            return None
        from .proposals.rpn import load_rpn

        rpn = load_rpn(run / RPN_FILE)
        # what the network reads first (the most telling message for a file from another run)
        if rpn.settings.channels != trunk.channels or rpn.settings.stride != trunk.stride:
            raise UserError(f"{run / RPN_FILE} reads a {rpn.settings.channels}-channel map at stride "
                            f"{rpn.settings.stride}, but the run's {cfg.backbone.name} trunk gives "
                            f"{trunk.channels} channels at stride {trunk.stride}: it comes from a run with "
                            "another trunk")
        if rpn.settings.scale not in [int(v) for v in cfg.features.scales]:
            raise UserError(f"{run / RPN_FILE} reads scale {rpn.settings.scale}, which features.scales "
                            f"{cfg.features.scales} in {run / CONFIG_FILE} does not compute")
        if rpn.digest() != blob.get("rpn_digest"):
            raise UserError(f"{run}: {RPN_FILE} is not the proposal network {model_path.name} was trained "
                            "with (it comes from a different training); train the run again")
        rpn.to(dev)
        return rpn

    @classmethod
    def _load_upper(cls, run: Path, cfg: Config, blob: dict, model_path: Path, ext, rpn, dev) -> "Detector":
        """A ``head.type=upper`` run: its head rebuilt around the saved state dict."""
        from .upper_head import head_from_state

        if cfg.head.type != "upper":
            raise UserError(f"{run}: {model_path.name} holds an upper-trunk head but {CONFIG_FILE} says "
                            f"head.type={cfg.head.type}; the run is damaged or was edited: train it again")
        h = blob["upper_head"]
        try:
            upper = head_from_state(cfg.backbone.name, bool(h["keep_stride"]), h["spec"], h["state"])
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{model_path} is damaged: its upper-trunk head does not load "
                            f"({type(exc).__name__}: {str(exc)[:300]})") from None
        if upper.num_classes != len(blob["classes"]) or upper.stride != ext.trunk.stride:
            raise UserError(f"{model_path} is damaged: its head scores {upper.num_classes} classes at stride "
                            f"{upper.stride}, the run has {len(blob['classes'])} classes and a stride-"
                            f"{ext.trunk.stride} trunk")
        det = cls(cfg, blob["classes"], ext, None, None, None, 1.0, None, 1.0, rpn=rpn, upper=upper.to(dev))
        det.run_dir = run
        return det

    @staticmethod
    def _load_heads(blob: dict, ext, dev) -> tuple[FCHead | None, BoxRegressor | None]:
        head = None
        if blob["head"] is not None:
            sd = blob["head"]
            head = FCHead(sd["fc6.weight"].shape[1], sd["fc6.weight"].shape[0], len(blob["classes"]))
            head.load_state_dict(sd)
            head.to(dev)
        bbox = None
        if blob["bbox_W"] is not None:
            bbox = BoxRegressor(len(blob["classes"]), ext.dim)
            bbox.W, bbox.b = blob["bbox_W"].numpy(), blob["bbox_b"].numpy()
            bbox.trained = blob["bbox_trained"].numpy()
        return head, bbox


def check_proposals(proposals) -> np.ndarray:
    """``proposals=`` as an ``[N, 4]`` float array of finite ``(x1, y1, x2, y2)``, else a UserError."""
    try:
        a = np.asarray(proposals, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"proposals must be an [N, 4] array of numbers, not {type(proposals).__name__}") from None
    if a.ndim != 2 or a.shape[1] != 4:
        raise UserError(f"proposals must be an [N, 4] array of (x1, y1, x2, y2) boxes, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise UserError("proposals hold NaN or infinite coordinates")
    if (a[:, 2] < a[:, 0]).any() or (a[:, 3] < a[:, 1]).any():
        raise UserError("proposals must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; some are inverted")
    return a

