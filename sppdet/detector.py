"""A trained SPP-net detector: windows → SPP vectors → (fc7) → per-class SVM scores →
box regression → per-class NMS. Saved as a run directory and checked when loaded."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from torchvision.ops import batched_nms

from . import __version__
from .backbones import build_trunk
from .bbox_regression import BoxRegressor
from .cache import CachedData
from .config import Config, config_from_dict
from .errors import UserError
from .datasets.common import ImageRecord, LoadReport
from .features import FeatureExtractor, ScaleMap, resolve_device
from .heads import FCHead
from .images import ImageReadError, read_image
from .progress import progress as tqdm
from .proposals import selective_search

MODEL_FILE, CONFIG_FILE, META_FILE = "model.pt", "config.yaml", "meta.json"


def make_extractor(cfg: Config, trunk, device):
    """SPP-net's once-per-image extractor, or R-CNN's once-per-window one (``method: rcnn``)."""
    f = cfg.features
    if cfg.method == "rcnn":
        from .rcnn import RCNNExtractor

        return RCNNExtractor(trunk, f.levels, device)
    return FeatureExtractor(trunk, f.scales, f.max_size, f.levels, device)


@dataclass
class Detections:
    boxes: np.ndarray  # [N, 4] 0-based inclusive pixels
    scores: np.ndarray  # [N]
    labels: np.ndarray  # [N] class index
    timings: dict[str, float] = field(default_factory=dict)


class Detector:
    def __init__(self, cfg: Config, classes: Sequence[str], extractor: FeatureExtractor,
                 head: FCHead | None, svm_W: np.ndarray, svm_b: np.ndarray, feat_scale: float,
                 bbox: BoxRegressor | None, pool5_scale: float):
        self.cfg = cfg
        self.classes = list(classes)
        self.extractor = extractor
        self.head = head.eval() if head is not None else None
        self.svm_W = torch.as_tensor(np.asarray(svm_W, dtype=np.float32))
        self.svm_b = torch.as_tensor(np.asarray(svm_b, dtype=np.float32))
        self.feat_scale = float(feat_scale)
        self.bbox = bbox
        self.pool5_scale = float(pool5_scale)

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    # -- stages -------------------------------------------------------------------------
    @torch.inference_mode()
    def window_features(self, pool5: torch.Tensor) -> torch.Tensor:
        """What the SVMs see: fc7 after fine-tuning, else pool5; times the feature scale."""
        f = self.head.features(pool5) if self.head is not None else pool5
        return f * self.feat_scale

    @torch.inference_mode()
    def score(self, feats: torch.Tensor) -> np.ndarray:
        W, b = self.svm_W.to(feats.device), self.svm_b.to(feats.device)
        return (feats @ W + b).float().cpu().numpy()

    def postprocess(self, proposals: np.ndarray, scores: np.ndarray, pool5: torch.Tensor | None,
                    width: int, height: int) -> Detections:
        """Box regression of every window scoring above the threshold, then per-class NMS."""
        t = self.cfg.test
        ks, cs = np.nonzero(scores > t.score_thresh)
        if len(ks) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
        boxes = np.asarray(proposals, dtype=np.float64)[ks].copy()
        if self.bbox is not None and pool5 is not None and self.cfg.bbox_reg.enabled:
            p5 = pool5.float().cpu().numpy()
            for c in np.unique(cs):
                sel = cs == c
                boxes[sel] = self.bbox.predict(boxes[sel], p5[ks[sel]] * self.pool5_scale, int(c))
        boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
        s = scores[ks, cs]
        b = torch.from_numpy(boxes) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
        keep = batched_nms(b.float(), torch.from_numpy(s).float(), torch.from_numpy(cs), t.nms).numpy()
        keep = keep[: t.max_per_image]  # batched_nms returns indices by decreasing score
        return Detections(boxes[keep], s[keep], cs[keep])

    def detect_maps(self, maps: Sequence[ScaleMap], proposals: np.ndarray, width: int, height: int,
                    timings: dict[str, float] | None = None) -> Detections:
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        pool5 = self.extractor.pool(maps, proposals, reuse_buffer=True)  # consumed within this call
        t1 = time.perf_counter()
        feats = self.window_features(pool5)
        t2 = time.perf_counter()
        scores = self.score(feats)
        t3 = time.perf_counter()
        dets = self.postprocess(proposals, scores, pool5, width, height)
        t4 = time.perf_counter()
        timings.update(pooling=t1 - t0, fc=t2 - t1, svm=t3 - t2, bbox_nms=t4 - t3)
        dets.timings = timings
        return dets

    def detect(self, image: np.ndarray, proposals: np.ndarray | None = None) -> Detections:
        """Detect objects in an RGB uint8 image (selective search unless proposals are given)."""
        h, w = image.shape[:2]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if proposals is None:
            p = self.cfg.proposals
            proposals = selective_search(image, p.mode, p.max_boxes, p.work_size, p.min_size)
        t1 = time.perf_counter()
        maps = self.extractor.compute(image)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        timings.update(proposals=t1 - t0, conv=t2 - t1)
        return self.detect_maps(maps, proposals, w, h, timings)

    # -- persistence --------------------------------------------------------------------
    def save(self, run_dir: str | Path, train_log: dict | None = None) -> None:
        run = Path(run_dir)
        run.mkdir(parents=True, exist_ok=True)
        trunk = self.extractor.trunk
        blob = {
            "format": 1,
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
        }
        tmp = run / (MODEL_FILE + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(run / MODEL_FILE)
        (run / CONFIG_FILE).write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        meta = {"sppdet_version": __version__, "classes": self.classes, "backbone": trunk.name,
                "weights_sha256": trunk.weights_id, "feature_dim": int(self.svm_W.shape[0]),
                "fine_tuned": self.head is not None, "method": self.cfg.method}
        (run / META_FILE).write_text(json.dumps(meta, indent=2))
        if train_log is not None:
            (run / "train_log.json").write_text(json.dumps(train_log, indent=2, default=float))

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, weights: str | None = None) -> "Detector":
        run = Path(run_dir)
        if not run.is_dir():
            raise UserError(f"run directory not found: {run}")
        for f in (MODEL_FILE, CONFIG_FILE, META_FILE):
            if not (run / f).is_file():
                raise UserError(f"{run} is not a complete sppdet run: {f} is missing (was training interrupted?)")
        try:
            cfg = config_from_dict(yaml.safe_load((run / CONFIG_FILE).read_text()) or {})
            meta = json.loads((run / META_FILE).read_text())
            blob = torch.load(run / MODEL_FILE, map_location="cpu", weights_only=True)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse/unpickle failure: a damaged run
            raise UserError(f"{run} is damaged and cannot be loaded: {exc}") from None
        if not isinstance(blob, dict) or blob.get("format") != 1:
            raise UserError(f"{run / MODEL_FILE} is not an sppdet model file")
        if blob["classes"] != meta.get("classes") or blob["backbone"] != cfg.backbone.name:
            raise UserError(f"{run}: model.pt, meta.json and config.yaml disagree "
                            "(classes or backbone); the run directory was mixed up")
        if device is not None:
            cfg.device = device
        dev = resolve_device(cfg.device)
        trunk = build_trunk(cfg.backbone.name, weights or cfg.backbone.weights)
        if trunk.weights_id != blob["weights_sha256"]:
            raise UserError(f"{run} was trained with {cfg.backbone.name} weights sha256 "
                            f"{blob['weights_sha256'][:16]}…, but the weights found now have "
                            f"{trunk.weights_id[:16]}…; use the same weights file (--weights)")
        ext = make_extractor(cfg, trunk, dev)
        ext.channels_last = bool(blob.get("channels_last", False))  # runs before 0.2: [C, n, n]
        head = None
        if blob["head"] is not None:
            sd = blob["head"]
            head = FCHead(sd["fc6.weight"].shape[1], sd["fc6.weight"].shape[0], len(blob["classes"]))
            head.load_state_dict(sd)
            head.to(dev)
            if head.fc6.in_features != ext.dim:
                raise UserError(f"{run}: its fc6 expects {head.fc6.in_features}-d SPP vectors but the "
                                f"config gives {ext.dim}")
        expected = head.fc7.out_features if head is not None else ext.dim
        if blob["svm_W"].shape != (expected, len(blob["classes"])):
            raise UserError(f"{run}: SVM weights have shape {tuple(blob['svm_W'].shape)}, expected "
                            f"({expected}, {len(blob['classes'])})")
        bbox = None
        if blob["bbox_W"] is not None:
            bbox = BoxRegressor(len(blob["classes"]), ext.dim)
            bbox.W, bbox.b = blob["bbox_W"].numpy(), blob["bbox_b"].numpy()
            bbox.trained = blob["bbox_trained"].numpy()
        return cls(cfg, blob["classes"], ext, head, blob["svm_W"].numpy(), blob["svm_b"].numpy(),
                   blob["feat_scale"], bbox, blob["pool5_scale"])


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
