"""Typed configuration: dataclasses, loaded from YAML plus ``--set key=value`` overrides.

Only the entry points (the CLI and :mod:`sppdet.api`) read config files; library code receives
these objects (or their fields) through constructors, never through a global. Every section is
frozen: nothing changes a config after it is built, and a derived one is a new object
(``dataclasses.replace``, :func:`override_config`), so a stage holding a section knows it stays
what it was given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .config_rules import _ANY, _FRAC, _POS, Rule, ruled  # noqa: F401 - Rule and ruled are used by callers as config.Rule
from .errors import UserError



@dataclass(frozen=True)
class BackboneConfig:
    name: str = ruled(Rule("str"), "mobilenet_v2")
    # local state-dict path; None = torchvision's ImageNet weights
    weights: str | None = ruled(Rule("str", optional=True), None)


@dataclass(frozen=True)
class FeatureConfig:
    scales: list[int] = ruled(Rule("ints", "[1, 10000]"), factory=lambda: [688])  # shorter side, pixels
    max_size: int = ruled(Rule("int", "[1, 20000]"), 2000)  # cap on the longer side, pixels
    levels: list[int] = ruled(Rule("ints", "[1, 64]"), factory=lambda: [6, 3, 2, 1])  # pyramid bins per side


# Selective search's colour spaces and grouping similarities (proposals.selective_search).
COLOR_SPACES = ("hsv", "lab", "rgb", "gray", "hue", "rgi", "ycrcb")
SIMILARITIES = ("color", "fill", "size", "texture")


# Trunks whose torchvision classifier holds pretrained fc6/fc7, and the n×n grid fc6 takes.
PRETRAINED_FC_GRID = {"alexnet": 6, "vgg16": 7}


@dataclass(frozen=True)
class ProposalConfig:
    # selective_search (pixels), external (your files), rpn (a network learned on the conv map),
    # or auto: rpn when the training split has at least rpn_min_objects objects, else selective
    # search (README: the RPN won on BCCD's 4,000 objects and lost on 200-object sets). A trained
    # run's config.yaml holds the method chosen.
    method: str = ruled(Rule("choice", choices=("auto", "selective_search", "external", "rpn")), "auto")
    # Selective search: OpenCV's "fast" or "quality" preset, or "custom" (the settings below).
    # quality: about 2,000 windows per image, the paper's operating point. On BCCD (README) it
    # gave 0.829 mAP against custom's 0.776 and fast's 0.764, at about 3.2x fast's cost (10-12 min
    # of training on 2 cores); custom (k in {50,100,150,300}) also gives ~2,000 windows at 1.3x.
    mode: str = ruled(Rule("choice", choices=("fast", "quality", "custom")), "quality")
    max_boxes: int = ruled(Rule("int", "[1, 1000000]"), 2000)
    # longer side of the image selective search runs on (0: the full-size image)
    work_size: int = ruled(Rule("int", "[0, 20000]"), 500)
    # Several working sizes: selective search runs at each and the rankings are interleaved
    # (empty: just work_size). Small objects are found at the larger size, large ones at both.
    work_sizes: list[int] = ruled(Rule("list"), factory=list)
    # mode=custom: colour spaces (hsv lab rgb gray hue rgi ycrcb), graph-segmentation k values
    # (smaller k = smaller initial regions = more windows; OpenCV's fast uses [150, 300, 450]),
    # sigma, and grouping strategies, each a "+"-joined similarity set of color/fill/size/texture.
    # Their contents are checked by _validate_proposal_levers (the rules here only ask for lists).
    color_spaces: list[str] = ruled(Rule("list"), factory=lambda: ["hsv", "lab"])
    ks: list[int] = ruled(Rule("list"), factory=lambda: [50, 100, 150, 300])
    sigma: float = ruled(Rule("float", "[0, 100]"), 0.8)
    strategies: list[str] = ruled(Rule("list"), factory=lambda: ["color+fill+size+texture", "fill+size+texture"])
    min_size: int = ruled(Rule("int", "[0, 10000]"), 8)  # drop proposals narrower/shorter than this (original pixels)
    # per-image .npy/.txt/.mat or R-CNN selective_search_data .mat
    external_dir: str | None = ruled(Rule("str", optional=True), None)
    # method=rpn: a region proposal network on the trunk's map (proposals/rpn.py), trained by
    # `sppdet train` on the cached maps before the SVMs. Empty anchor lists: derived from the
    # training boxes at the RPN's scale (logged in train_log.json). Contents checked by
    # _validate_proposal_levers.
    rpn_anchor_sizes: list[float] = ruled(Rule("list"), factory=list)  # sqrt(area), pixels at the RPN's scale
    rpn_aspect_ratios: list[float] = ruled(Rule("list"), factory=list)  # height / width
    rpn_scale: int = ruled(Rule("int", "[0, 10000]"), 0)  # the features.scales entry it reads; 0: nearest 688
    rpn_epochs: int = ruled(Rule("int", "[1, 10000]"), 10)
    rpn_lr: float = ruled(Rule("float", _POS), 0.001)  # Adam
    # held out to keep the best epoch (early stop after 3 without improvement); 0: keep the last
    rpn_val_fraction: float = ruled(Rule("float", "[0, 0.5]"), 0.1)
    rpn_nms: float = ruled(Rule("float", "(0, 1]"), 0.7)
    rpn_pre_nms: int = ruled(Rule("int", "[1, 10000000]"), 6000)  # best-scoring anchors kept before NMS
    rpn_max_boxes: int = ruled(Rule("int", "[1, 1000000]"), 1000)  # windows per image after NMS
    rpn_min_objects: int = ruled(Rule("int", "[0, 1000000000]"), 1000)  # method=auto's threshold

    @property
    def uses_rpn(self) -> bool:
        """Whether the windows come from a trained proposal network on the conv maps (after the
        maps, not from the pixels): the one test of ``method`` the cache, training and the
        detector share (``auto`` is resolved to a method before any of them runs)."""
        return self.method == "rpn"


@dataclass(frozen=True)
class FinetuneConfig:
    # Off by default: the default trunk (MobileNetV2, cut at a conv layer) has no ImageNet fc6/fc7,
    # so they are learned from scratch on the detection data; on BCCD that was a wash against
    # SVMs on pool5 (README, tools/bccd_experiment.sh). vgg16/alexnet: see pretrained_fc.
    enabled: bool = ruled(Rule("bool"), False)
    # width of fc6 and fc7 when learned from scratch (4096 with pretrained_fc)
    hidden: int = ruled(Rule("int", "[1, 65536]"), 1024)
    # vgg16/alexnet: start fc6/fc7 from the ImageNet classifier (SPP-net's ftfc7), which needs
    # one pyramid level matching its input (PRETRAINED_FC_GRID) and makes fc6/fc7 4096 wide
    pretrained_fc: bool = ruled(Rule("bool"), True)
    iterations: int = ruled(Rule("int", "[1, 100000000]"), 3000)
    batch_size: int = ruled(Rule("int", "[1, 1000000]"), 128)
    images_per_batch: int = ruled(Rule("int", "[1, 100000]"), 2)
    fg_fraction: float = ruled(Rule("float", "(0, 1]"), 0.25)
    fg_iou: float = ruled(Rule("float", "(0, 1]"), 0.5)
    bg_iou_low: float = ruled(Rule("float", "[0, 1)"), 0.1)
    bg_iou_high: float = ruled(Rule("float", "(0, 1]"), 0.5)
    lr: float = ruled(Rule("float", _POS), 0.001)
    lr_step: int = ruled(Rule("int", "[1, 100000000]"), 2000)  # multiply lr by 0.1 after this many iterations
    momentum: float = ruled(Rule("float", "[0, 1)"), 0.9)
    weight_decay: float = ruled(Rule("float", "[0, inf)"), 0.0005)
    dropout: float = ruled(Rule("float", "[0, 1)"), 0.5)


@dataclass(frozen=True)
class HeadConfig:
    """What scores the windows. ``svm``: 0.4's recipe, per-class linear SVMs (Platt-calibrated)
    on the SPP vectors of the frozen trunk (or on fc7 with ``finetune.enabled``) and ridge box
    regression on pool5. ``upper``: the trunk's remaining ImageNet blocks (MobileNetV2 blocks
    14-18, ResNet-50 layer4, VGG/AlexNet fc6/fc7) run on each window's RoI grid of the cached
    map and are fine-tuned on the detection windows the Fast R-CNN way (softmax over classes +
    background, smooth-L1 box deltas; BatchNorm frozen), scored by their softmax."""

    type: str = ruled(Rule("choice", choices=("svm", "upper")), "svm")
    # RoI grid side read from the map (roi_align), and whether the first upper block keeps its
    # stride (MobileNetV2 block 14: 14x14 grid -> 7x7) or runs at stride 1 on the grid as it is
    grid: int = ruled(Rule("int", "[1, 64]"), 7)
    keep_stride: bool = ruled(Rule("bool"), False)
    epochs: int = ruled(Rule("int", "[1, 10000]"), 4)
    lr: float = ruled(Rule("float", "(0, inf)"), 0.005)  # SGD, momentum 0.9, cosine decay
    weight_decay: float = ruled(Rule("float", "[0, inf)"), 0.0001)
    images_per_batch: int = ruled(Rule("int", "[1, 1000]"), 2)
    rois_per_image: int = ruled(Rule("int", "[1, 100000]"), 64)
    fg_fraction: float = ruled(Rule("float", "(0, 1]"), 0.25)
    fg_iou: float = ruled(Rule("float", "(0, 1]"), 0.5)
    bg_iou: float = ruled(Rule("float", "(0, 1]"), 0.5)  # background: best IoU below this
    val_fraction: float = ruled(Rule("float", "[0, 0.5]"), 0.1)  # held-out training images, for the best epoch
    train_windows: int = ruled(Rule("int", "[1, 1000000]"), 2000)  # a training image's best proposals sampled from
    test_windows: int = ruled(Rule("int", "[1, 1000000]"), 300)  # a test image's best proposals scored
    dropout: float = ruled(Rule("float", "[0, 1)"), 0.0)  # before the classifier and box layers


@dataclass(frozen=True)
class SVMConfig:
    C: float = ruled(Rule("float", _POS), 0.001)
    pos_weight: float = ruled(Rule("float", _POS), 2.0)
    bias_mult: float = ruled(Rule("float", _POS), 10.0)
    feat_norm: float = ruled(Rule("float", _POS), 20.0)  # features scaled so their mean L2 norm is this
    neg_iou: float = ruled(Rule("float", _FRAC), 0.3)  # negatives overlap every positive of the class less than this
    # SPP-net drops a negative overlapping another (kept) negative by more than this IoU
    # (windows.prune_negatives); 0 or 1 = off
    neg_overlap_prune: float = ruled(Rule("float", _FRAC), 0.7)  # 0 or 1: off
    hard_thresh: float = ruled(Rule("float", _ANY), -1.0001)  # a negative scoring above this is "hard"
    evict_thresh: float = ruled(Rule("float", _ANY), -1.2)  # cached negatives scoring below this are dropped
    # retrain after this many new hard negatives (per class)
    retrain_limit: int = ruled(Rule("int", "[1, 100000000]"), 2000)
    epochs: int = ruled(Rule("int", "[1, 1000]"), 1)  # passes of hard-negative mining over the training images
    # per-class cap on cached hard negatives (bounds memory)
    max_negatives: int = ruled(Rule("int", "[1, 100000000]"), 30000)
    max_iter: int = ruled(Rule("int", "[1, 100000000]"), 2000)


@dataclass(frozen=True)
class BBoxRegConfig:
    enabled: bool = ruled(Rule("bool"), True)
    min_iou: float = ruled(Rule("float", "(0, 1]"), 0.6)
    alpha: float = ruled(Rule("float", _POS), 1000.0)  # ridge lambda, as R-CNN
    # per class, uniformly sampled (bounds memory: fp16 pool5 vectors)
    max_examples: int = ruled(Rule("int", "[1, 100000000]"), 10000)


@dataclass(frozen=True)
class TestConfig:
    nms: float = ruled(Rule("float", "(0, 1]"), 0.3)
    # The least score a detection keeps (det(img), sppdet detect): a probability for calibrated
    # runs (0.4 on); runs before 0.4 saved -1, a margin. Evaluation keeps every window above
    # the margin floor (-1) whatever this says: AP needs the low scores too.
    score_thresh: float = ruled(Rule("float", _ANY), 0.25)
    max_per_image: int = ruled(Rule("int", "[1, 1000000]"), 100)


@dataclass(frozen=True)
class DataConfig:
    classes: list[str] | None = ruled(Rule("strs", optional=True), None)  # None: taken from the training annotations
    split_seed: int = ruled(Rule("int", "[0, 4294967295]"), 0)
    test_fraction: float = ruled(Rule("float", _FRAC), 0.2)  # for flat folders without a split
    # smaller (after clipping) ground-truth boxes are dropped
    min_box_size: float = ruled(Rule("float", "[0, 10000]"), 1.0)
    # Apply the EXIF orientation tag to training/evaluation images? None: as the tools of the
    # data's format do: labelImg, VOC and COCO tools draw boxes on the stored pixels (no),
    # Ultralytics' YOLO tools on the oriented image (yes).
    exif_transpose: bool | None = ruled(Rule("bool", optional=True), None)


@dataclass(frozen=True)
class Config:
    method: str = ruled(Rule("choice", choices=("spp", "rcnn")), "spp")  # spp | rcnn
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    svm: SVMConfig = field(default_factory=SVMConfig)
    bbox_reg: BBoxRegConfig = field(default_factory=BBoxRegConfig)
    test: TestConfig = field(default_factory=TestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = ruled(Rule("int", "[0, 4294967295]"), 0)
    device: str = ruled(Rule("choice", choices=("auto", "cpu", "cuda")), "auto")  # auto | cpu | cuda

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "Config":
        """Check every field against :data:`RULES` (type and range), then the few rules that
        tie two fields together; the first problem is a :class:`UserError` naming the key,
        the allowed values and the value given."""
        tree = self.to_dict()
        for key, rule in RULES.items():
            node: Any = tree
            for part in key.split("."):
                node = node[part]
            rule.check(key, node)
        if self.proposals.method == "external" and not self.proposals.external_dir:
            raise UserError("config: proposals.method=external needs proposals.external_dir")
        if self.proposals.method in ("rpn", "auto"):
            if self.method == "rcnn" and self.proposals.method == "rpn":
                raise UserError("config: proposals.method=rpn reads SPP-net's conv map of the whole image, which "
                                "method=rcnn never computes (it convolves each window): use method=spp, or "
                                "selective_search/external proposals with rcnn")
            scales = [int(v) for v in self.features.scales]
            if self.proposals.rpn_scale and self.proposals.rpn_scale not in scales:
                raise UserError(f"config: proposals.rpn_scale={self.proposals.rpn_scale} must be one of "
                                f"features.scales {scales} (0: the one nearest 688)")
        if self.head.type == "upper":
            if self.method != "spp":
                raise UserError("config: head.type=upper runs the trunk's upper blocks on windows of SPP-net's "
                                "conv map, which method=rcnn never computes: use method=spp or head.type=svm")
            if self.finetune.enabled:
                raise UserError("config: finetune.enabled trains fc layers for head.type=svm; head.type=upper "
                                "fine-tunes its own layers (head.*): set one of them")
        if self.finetune.bg_iou_low >= self.finetune.bg_iou_high:
            raise UserError(f"config: finetune.bg_iou_low ({self.finetune.bg_iou_low:g}) must be below "
                            f"finetune.bg_iou_high ({self.finetune.bg_iou_high:g})")
        if self.svm.evict_thresh > self.svm.hard_thresh:
            raise UserError(f"config: svm.evict_thresh ({self.svm.evict_thresh:g}) must not exceed "
                            f"svm.hard_thresh ({self.svm.hard_thresh:g}): new hard negatives would be "
                            "evicted at once")
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
    for key, upper in (("rpn_anchor_sizes", 10000.0), ("rpn_aspect_ratios", 20.0)):
        vals = getattr(p, key)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
               or not 0 < v <= upper for v in vals) or len(set(vals)) != len(vals):
            raise UserError(f"config: proposals.{key} {vals!r} must be distinct numbers in (0, {upper:g}] "
                            "(or [] to derive them from the training boxes)")


def rules_of(cls: type, prefix: str = "") -> dict[str, Rule]:
    """``{"section.key": Rule}`` of every leaf field of the config dataclass ``cls``, read from
    the fields' metadata (:func:`ruled`); a field without a rule is a programming error."""
    out: dict[str, Rule] = {}
    for f in fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out.update(rules_of(type(default), f"{prefix}{f.name}."))
        elif isinstance(f.metadata.get("rule"), Rule):
            out[prefix + f.name] = f.metadata["rule"]
        else:
            raise TypeError(f"config field {prefix}{f.name} has no validation rule: declare it with ruled(Rule(...))")
    return out


# Every field of every section, with what it may hold (from the fields' metadata).
RULES: dict[str, Rule] = rules_of(Config)


def check_fields(obj: Any, rules: dict[str, Rule], where: str) -> None:
    """Check a flat dataclass's fields against ``rules`` (each field must have one)."""
    for f in fields(obj):
        rules[f.name].check(f.name, getattr(obj, f.name), where)


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                settings: dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file, then ``settings`` (a nested mapping such as
    ``{"svm": {"C": 0.01}}``), then ``key=value`` overrides (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"config file {p} is not valid YAML ({yaml_problem(exc)})") from None
        except UnicodeDecodeError:
            raise UserError(f"config file {p} is not UTF-8 text") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {p} must hold a mapping")
        tree = loaded
    _merge(tree, settings or {})
    _apply_overrides(tree, overrides or [])
    return _build(Config, tree, "").validate()


def _merge(tree: dict[str, Any], settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


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


# Keys (prefixes) that a trained run lets change: they do not touch what was learned.
TEST_TIME_KEYS = ("test.", "bbox_reg.enabled")


def override_config(cfg: Config, overrides: list[str],
                    allowed: tuple[str, ...] | None = TEST_TIME_KEYS) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides; by default only keys that can change
    without retraining (test-time settings), ``allowed=None`` for any key."""
    tree = cfg.to_dict()
    _apply_overrides(tree, overrides, allowed)
    return _build(Config, tree, "").validate()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what and where (PyYAML's own text spans several lines)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "not valid YAML"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "").validate()


def config_digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object, used to name caches."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
