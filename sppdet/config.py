"""Typed configuration: dataclasses, loaded from YAML plus ``--set key=value`` overrides.

Only the CLI reads files; library code receives these objects (or their fields) through
constructors, never through a global.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


@dataclass
class BackboneConfig:
    name: str = "mobilenet_v2"
    weights: str | None = None  # local state-dict path; None = torchvision's ImageNet weights


@dataclass
class FeatureConfig:
    scales: list[int] = field(default_factory=lambda: [688])  # shorter side, pixels
    max_size: int = 2000  # cap on the longer side, pixels
    levels: list[int] = field(default_factory=lambda: [6, 3, 2, 1])  # pyramid bins per side


# Selective search's colour spaces and grouping similarities (proposals.selective_search).
COLOR_SPACES = ("hsv", "lab", "rgb", "gray", "hue", "rgi", "ycrcb")
SIMILARITIES = ("color", "fill", "size", "texture")


# Trunks whose torchvision classifier holds pretrained fc6/fc7, and the n×n grid fc6 takes.
PRETRAINED_FC_GRID = {"alexnet": 6, "vgg16": 7}


@dataclass
class ProposalConfig:
    method: str = "selective_search"  # or "external"
    mode: str = "fast"  # selective search strategy: fast | quality | custom
    max_boxes: int = 2000
    work_size: int = 500  # longer side of the image selective search runs on
    # Several working sizes: selective search runs at each and the rankings are interleaved
    # (empty: just work_size). Small objects are found at the larger size, large ones at both.
    work_sizes: list[int] = field(default_factory=list)
    # mode=custom (defaults = OpenCV's "fast"): colour spaces (hsv lab rgb gray hue rgi ycrcb),
    # graph-segmentation k values (smaller k = smaller initial regions = more windows), sigma,
    # and grouping strategies, each a "+"-joined similarity set of color/fill/size/texture.
    color_spaces: list[str] = field(default_factory=lambda: ["hsv", "lab"])
    ks: list[int] = field(default_factory=lambda: [150, 300, 450])
    sigma: float = 0.8
    strategies: list[str] = field(default_factory=lambda: ["color+fill+size+texture", "fill+size+texture"])
    min_size: int = 8  # drop proposals narrower/shorter than this (original pixels)
    external_dir: str | None = None  # per-image .npy/.txt/.mat or R-CNN selective_search_data .mat


@dataclass
class FinetuneConfig:
    # Off by default: the torchvision trunks are cut at a conv layer, so fc6/fc7 have no
    # ImageNet pre-training here and are learned from scratch on the detection data; on BCCD
    # that scored below SVMs on pool5 (README, tools/bccd_experiment.sh).
    enabled: bool = False
    hidden: int = 1024  # width of fc6 and fc7 (learned from scratch)
    # vgg16/alexnet: start fc6/fc7 from the ImageNet classifier (SPP-net's ftfc7), which needs
    # one pyramid level matching its input (PRETRAINED_FC_GRID) and makes fc6/fc7 4096 wide
    pretrained_fc: bool = True
    iterations: int = 3000
    batch_size: int = 128
    images_per_batch: int = 2
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_low: float = 0.1
    bg_iou_high: float = 0.5
    lr: float = 0.001
    lr_step: int = 2000  # multiply lr by 0.1 after this many iterations
    momentum: float = 0.9
    weight_decay: float = 0.0005
    dropout: float = 0.5


@dataclass
class SVMConfig:
    C: float = 0.001
    pos_weight: float = 2.0
    bias_mult: float = 10.0
    feat_norm: float = 20.0  # features scaled so their mean L2 norm is this
    neg_iou: float = 0.3  # negatives overlap every positive of the class less than this
    # SPP-net drops a negative overlapping another (kept) negative by more than this IoU
    # (windows.prune_negatives); 0 or 1 = off
    neg_overlap_prune: float = 0.7
    hard_thresh: float = -1.0001  # a negative scoring above this is "hard"
    evict_thresh: float = -1.2  # cached negatives scoring below this are dropped
    retrain_limit: int = 2000  # retrain after this many new hard negatives (per class)
    epochs: int = 1  # passes of hard-negative mining over the training images
    max_negatives: int = 30000  # per-class cap on cached hard negatives (bounds memory)
    max_iter: int = 2000


@dataclass
class BBoxRegConfig:
    enabled: bool = True
    min_iou: float = 0.6
    alpha: float = 1000.0  # ridge lambda, as R-CNN
    max_examples: int = 10000  # per class, uniformly sampled (bounds memory: fp16 pool5 vectors)


@dataclass
class TestConfig:
    nms: float = 0.3
    score_thresh: float = -1.0  # SVM score below which detections are dropped
    max_per_image: int = 100


@dataclass
class DataConfig:
    classes: list[str] | None = None  # None: taken from the training annotations
    split_seed: int = 0
    test_fraction: float = 0.2  # for flat folders without a split
    min_box_size: float = 1.0  # smaller (after clipping) ground-truth boxes are dropped


@dataclass
class Config:
    method: str = "spp"  # spp | rcnn
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    svm: SVMConfig = field(default_factory=SVMConfig)
    bbox_reg: BBoxRegConfig = field(default_factory=BBoxRegConfig)
    test: TestConfig = field(default_factory=TestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "Config":
        if self.method not in ("spp", "rcnn"):
            raise UserError(f"config: method must be 'spp' or 'rcnn', not {self.method!r}")
        if not self.features.scales or any(int(s) <= 0 for s in self.features.scales):
            raise UserError("config: features.scales must be a non-empty list of positive sizes")
        if not self.features.levels or any(int(n) <= 0 for n in self.features.levels):
            raise UserError("config: features.levels must be a non-empty list of positive ints")
        if self.proposals.mode not in ("fast", "quality", "custom"):
            raise UserError("config: proposals.mode must be 'fast', 'quality' or 'custom'")
        if self.proposals.method not in ("selective_search", "external"):
            raise UserError("config: proposals.method must be 'selective_search' or 'external'")
        if self.proposals.method == "external" and not self.proposals.external_dir:
            raise UserError("config: proposals.method=external needs proposals.external_dir")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError("config: device must be auto, cpu or cuda")
        if not 0 < self.finetune.fg_fraction <= 1:
            raise UserError("config: finetune.fg_fraction must be in (0, 1]")
        if self.svm.C <= 0:
            raise UserError("config: svm.C must be positive")
        _validate_proposal_levers(self.proposals)
        if not 0 <= self.svm.neg_overlap_prune <= 1:
            raise UserError("config: svm.neg_overlap_prune must be in [0, 1] (0 or 1 = off)")
        n = PRETRAINED_FC_GRID.get(self.backbone.name)
        if self.finetune.enabled and self.finetune.pretrained_fc and n and [int(v) for v in self.features.levels] != [n]:
            raise UserError(f"config: finetune.pretrained_fc starts fc6 from {self.backbone.name}'s ImageNet "
                            f"classifier, which takes one {n}x{n} grid: set features.levels=[{n}], or "
                            f"finetune.pretrained_fc=false to learn fc6/fc7 from scratch")
        return self


def _validate_proposal_levers(p: ProposalConfig) -> None:
    """Selective search's custom settings (proposals.color_spaces/ks/strategies/work_sizes)."""
    bad = [c for c in p.color_spaces if str(c).lower() not in COLOR_SPACES]
    if bad or not p.color_spaces:
        raise UserError(f"config: proposals.color_spaces {p.color_spaces!r} must be a non-empty list of "
                        f"{', '.join(COLOR_SPACES)}")
    if not p.ks or any(isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0 for k in p.ks):
        raise UserError(f"config: proposals.ks {p.ks!r} must be a non-empty list of positive numbers")
    for s in p.strategies or [""]:
        parts = str(s).lower().split("+")
        if not s or any(x not in SIMILARITIES for x in parts):
            raise UserError(f"config: proposals.strategies entry {s!r} must join some of "
                            f"{', '.join(SIMILARITIES)} with '+', e.g. 'color+fill+size+texture'")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in p.work_sizes):
        raise UserError(f"config: proposals.work_sizes {p.work_sizes!r} must be a list of sizes in pixels")
    if p.sigma < 0:
        raise UserError("config: proposals.sigma must be >= 0")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"config: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise UserError(
                f"config: unknown key {where + key!r}; known keys: {', '.join(sorted(known))}"
            )
        f = known[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, default, where + key)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    """Check a value against the type of its default (bool/int/float/str/list)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
        if isinstance(value, (int, float, str)):
            return [value]
    raise UserError(f"config: {name} should be like {default!r}, got {value!r}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then ``key=value`` overrides (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {p} must hold a mapping")
        tree = loaded
    _apply_overrides(tree, overrides or [])
    return _build(Config, tree, "").validate()


def _apply_overrides(tree: dict[str, Any], overrides: list[str],
                     allowed: tuple[str, ...] | None = None) -> None:
    """Set each ``key=value`` (value parsed as YAML) in ``tree``; with ``allowed``, only keys
    starting with one of those prefixes."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if allowed is not None and not key.startswith(allowed):
            raise UserError(f"--set {key}: only {', '.join(allowed)} can change after training")
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        raw = item.split("=", 1)[1]
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key, value)


def override_config(cfg: Config, overrides: list[str], allowed: tuple[str, ...] = ("test.", "bbox_reg.enabled")) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides, restricted to keys that can change
    without retraining (test-time settings)."""
    tree = cfg.to_dict()
    _apply_overrides(tree, overrides, allowed)
    return _build(Config, tree, "").validate()


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "").validate()


def config_digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object, used to name caches."""
    import hashlib

    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
