"""Learned proposals on the detector's own conv map: a region proposal network (Ren et al.,
Faster R-CNN) built from torchvision's parts (``AnchorGenerator``, ``RPNHead``,
``RegionProposalNetwork``: anchor matching, sampling, NMS; box coding by
:class:`sppdet.boxes.BoxCoder`, torchvision's with its RPN's weights).

SPP-net computes the conv map once per image; the RPN reads that same map (same trunk, same
layer, frozen, like SPP-net's conv5), so detection runs the trunk once and nothing but the
trunk touches pixels. It is trained on the cached maps of the training images, at one scale
of the pyramid (the configured scale nearest 688 px, or ``proposals.rpn_scale``).

Coordinates: torchvision works in continuous pixels of the scaled image and puts anchor centres
at ``stride * i``; the trunk's cell ``i`` is centred near ``stride * i + offset`` (backbone
registry), so the anchors are moved by ``offset`` (boxes stay in the image's own frame, and
torchvision's clipping to the image is right at every edge). Boxes go to and from sppdet's
0-based inclusive pixels of the original image through :mod:`sppdet.boxes`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops

from ..boxes import BoxCoder, clip, from_continuous, min_size_mask, to_continuous, widths_heights
from ..config import ProposalConfig
from ..errors import UserError
from ..progress import progress
from .base import Proposer, whole_image

log = logging.getLogger(__name__)

RPN_FORMAT = 1
# Anchor sides are spaced by half an octave: any box side is then within 2^(1/4) of an
# anchor's, so a square object overlaps its best-sized anchor with IoU >= 0.71.
_SIDE_STEP = 2 ** 0.5
_MAX_SIZES = 8


@dataclass
class RPNSettings:
    """Everything that fixes what a trained RPN computes (saved beside its weights)."""

    channels: int  # of the trunk's map
    stride: int  # trunk stride, pixels of the scaled image per map cell
    offset: float  # centre of cell 0 in pixels of the scaled image
    scale: int  # shorter side of the pyramid scale it reads (features.scales entry)
    sizes: list[float] = field(default_factory=list)  # anchor sides (sqrt of area), scaled-image pixels
    ratios: list[float] = field(default_factory=list)  # anchor aspect ratios (height / width)
    nms: float = 0.7
    pre_nms: int = 6000
    max_boxes: int = 1000
    min_size: int = 8  # original-image pixels
    fg_iou: float = 0.7
    bg_iou: float = 0.3


def pick_scale(scales: Sequence[int], wanted: int = 0) -> int:
    """The pyramid scale the RPN reads: ``wanted`` if given (it must be one of ``scales``), else
    the scale nearest 688 px (the paper's single training scale)."""
    scales = [int(s) for s in scales]
    if wanted:
        if wanted not in scales:
            raise UserError(f"config: proposals.rpn_scale={wanted} is not one of features.scales {scales}")
        return int(wanted)
    return min(scales, key=lambda s: (abs(s - 688), s))


def derive_anchors(sides: np.ndarray, aspects: np.ndarray, stride: int) -> tuple[list[float], list[float]]:
    """Anchor sizes and ratios that cover the training boxes (at the RPN's scale).

    Sizes: half-octave steps from the 1st to the 99th percentile of the boxes' sides
    (sqrt of area), at most 8; ratios: the 10th, 50th and 90th percentiles of height/width
    (clipped to [1/4, 4]), merged where within 15% of each other."""
    sides = np.asarray(sides, dtype=np.float64)
    aspects = np.asarray(aspects, dtype=np.float64)
    ok = np.isfinite(sides) & (sides > 0) & np.isfinite(aspects) & (aspects > 0)
    sides, aspects = sides[ok], aspects[ok]
    if len(sides) == 0:
        return [32.0, 64.0, 128.0, 256.0, 512.0], [0.5, 1.0, 2.0]
    lo = max(float(np.quantile(sides, 0.01)), stride / 2.0)
    hi = max(float(np.quantile(sides, 0.99)), lo)
    n = min(_MAX_SIZES, int(math.floor(math.log(hi / lo) / math.log(_SIDE_STEP) + 1e-9)) + 1)
    if lo * _SIDE_STEP ** (n - 1) < hi / 2 ** 0.25:  # capped: spread the sizes over the range
        step = (hi / lo) ** (1.0 / max(n - 1, 1))
    else:
        step = _SIDE_STEP
    sizes = [round(lo * step ** k, 1) for k in range(n)]
    q = np.clip(np.quantile(aspects, [0.1, 0.5, 0.9]), 0.25, 4.0)
    ratios: list[float] = []
    for r in q:
        if not ratios or r / ratios[-1] > 1.15:
            ratios.append(float(r))
    return sizes, [round(r, 3) for r in ratios]


class _CellAnchors(AnchorGenerator):
    """torchvision's anchors, centred on the trunk's cells (``stride * i + offset``)."""

    def __init__(self, sizes, ratios, offset: float):
        super().__init__(sizes=sizes, aspect_ratios=ratios)
        self.offset = float(offset)

    def grid_anchors(self, grid_sizes, strides):
        return [a + self.offset for a in super().grid_anchors(grid_sizes, strides)]


class _StableRPN(RegionProposalNetwork):
    """torchvision's RPN, whose inference ranks equal objectness by anchor index (a stable sort,
    NMS on those ranks) where torchvision leaves the order of ties to its sorts: anchors on equal
    cells (flat image regions, a saturated trunk) tie exactly, and which of them survives NMS would
    otherwise depend on the sort's implementation (the exported graph ranks them the same way).
    Training is torchvision's own."""

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        if self.training or len(num_anchors_per_level) != 1:
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        final_boxes, final_scores = [], []
        for boxes, obj, img_shape in zip(proposals, objectness.detach().reshape(proposals.shape[0], -1),
                                         image_shapes):
            n = det_utils._topk_min(obj[None], self.pre_nms_top_n(), 1)
            top = torch.sort(obj, descending=True, stable=True).indices[:n]
            boxes, scores = box_ops.clip_boxes_to_image(boxes[top], img_shape), torch.sigmoid(obj[top])
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            keep = keep[scores[keep] >= self.score_thresh]
            boxes, scores = boxes[keep], scores[keep]
            rank = -torch.arange(len(scores), dtype=torch.float32, device=scores.device)
            keep = box_ops.nms(boxes, rank, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores


class RPNModel(nn.Module):
    """torchvision's RPN on one conv map of one image."""

    def __init__(self, s: RPNSettings):
        super().__init__()
        self.settings = s
        anchors = _CellAnchors((tuple(float(v) for v in s.sizes),), (tuple(float(v) for v in s.ratios),), s.offset)
        head = RPNHead(s.channels, anchors.num_anchors_per_location()[0])
        # training needs the losses only: keep its proposal filtering (NMS) token-sized
        self.rpn = _StableRPN(anchors, head, s.fg_iou, s.bg_iou, 256, 0.5,
                                         dict(training=64, testing=s.pre_nms),
                                         dict(training=16, testing=s.max_boxes), s.nms)
        self.rpn.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))  # torchvision's own RPN coding, sppdet's one class

    def forward(self, fmap: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None):
        """``fmap`` ``[C, h, w]``; ``image_size`` ``(height, width)`` of the scaled image."""
        x = fmap.float().unsqueeze(0)
        h, w = x.shape[-2:]
        stride = self.settings.stride
        # AnchorGenerator derives the stride from the padded batch's size; a zero-cost view of
        # exactly map x stride pixels gives it the trunk's stride whatever the image's size
        images = ImageList(x.new_zeros(1, 1, 1, 1).expand(1, 3, h * stride, w * stride), [tuple(image_size)])
        return self.rpn(images, {"0": x}, targets)

    def digest(self) -> str:
        """What identifies this trained RPN: its settings and weights."""
        hsh = hashlib.sha256(json.dumps(asdict(self.settings), sort_keys=True).encode())
        for k, v in sorted(self.state_dict().items()):
            hsh.update(k.encode())
            hsh.update(v.detach().cpu().contiguous().numpy().tobytes())
        return hsh.hexdigest()[:16]


def _map_at(maps: Sequence, scale: int, scales: Sequence[int]):
    """The map of the pyramid scale ``scale`` (``maps`` are in the order of ``scales``)."""
    return maps[list(scales).index(scale)]


def _scaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """``(height, width)`` of the image the trunk convolved at ``factor`` (as features.pyramid_sizes)."""
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def _to_scaled(boxes: np.ndarray, factor: float) -> torch.Tensor:
    """0-based inclusive boxes of the original image → continuous boxes of the scaled image."""
    return torch.as_tensor(to_continuous(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)) * factor,
                           dtype=torch.float32)


def _to_original(boxes: torch.Tensor, factor: float) -> np.ndarray:
    """The inverse of :func:`_to_scaled`."""
    return from_continuous(boxes.detach().cpu().double().numpy() / factor)


class RPNProposer(Proposer):
    """Windows from a trained :class:`RPNModel` on the image's conv map at its scale."""

    name = "rpn"
    needs_maps = True

    def __init__(self, model: RPNModel, scales: Sequence[int]):
        self.model = model.eval()
        self.scales = [int(s) for s in scales]
        if model.settings.scale not in self.scales:
            raise UserError(f"the proposal network reads scale {model.settings.scale}, which the run's "
                            f"features.scales {self.scales} do not compute")
        self._digest = model.digest()

    def cache_id(self) -> list:
        return ["rpn-v1", self._digest]

    @torch.inference_mode()
    def propose(self, image_id, image, maps=None, size=None) -> np.ndarray:
        if maps is None or size is None:
            raise ValueError("the RPN proposes from the conv maps and needs the image size")
        s = self.model.settings
        width, height = int(size[0]), int(size[1])
        m = _map_at(maps(), s.scale, self.scales)
        f = float(m.factor)
        boxes, _ = self.model(m.fmap.to(next(self.model.parameters()).device), _scaled_size(height, width, f))
        out = clip(_to_original(boxes[0], f), width, height)
        out = out[min_size_mask(out, s.min_size)]
        return out.astype(np.float32) if len(out) else whole_image(width, height)


@dataclass
class RPNTrainItem:
    """One training image for the RPN: its maps (lazily, from the cache), ground truth
    (0-based inclusive, original pixels) and size."""

    maps: Callable[[], Sequence]
    boxes: np.ndarray
    width: int
    height: int


def rpn_settings(cfg: ProposalConfig, trunk, scales: Sequence[int], max_size: int,
                 items: Sequence[RPNTrainItem]) -> tuple[RPNSettings, dict]:
    """Settings of a new RPN: the configured anchors, or ones derived from the training boxes
    at the RPN's scale. Returns them and a note for the training log."""
    from ..features import scale_factors

    scale = pick_scale(scales, cfg.rpn_scale)
    sides, aspects = [], []
    for it in items:
        b = np.asarray(it.boxes, dtype=np.float64).reshape(-1, 4)
        if not len(b):
            continue
        f = scale_factors(it.height, it.width, [scale], max_size)[0]
        w, h = widths_heights(b)
        w, h = w * f, h * f
        sides.append(np.sqrt(w * h))
        aspects.append(h / w)
    derived_sizes, derived_ratios = derive_anchors(np.concatenate(sides) if sides else np.zeros(0),
                                                   np.concatenate(aspects) if aspects else np.zeros(0),
                                                   trunk.stride)
    sizes = [float(v) for v in cfg.rpn_anchor_sizes] or derived_sizes
    ratios = [float(v) for v in cfg.rpn_aspect_ratios] or derived_ratios
    s = RPNSettings(trunk.channels, int(trunk.stride), float(trunk.offset), scale, sizes, ratios, cfg.rpn_nms,
                    cfg.rpn_pre_nms, cfg.rpn_max_boxes, cfg.min_size)
    note = {"scale": scale, "anchor_sizes": sizes, "aspect_ratios": ratios,
            "anchors": "configured" if cfg.rpn_anchor_sizes and cfg.rpn_aspect_ratios else
            ("derived from the training boxes" if not (cfg.rpn_anchor_sizes or cfg.rpn_aspect_ratios)
             else "partly configured, partly derived")}
    if min(sizes) < trunk.stride / 2:
        log.warning(f"RPN anchors as small as {min(sizes):g} px at scale {scale} are below half the trunk's "
                    f"stride ({trunk.stride} px): the network cannot place such boxes precisely; objects that "
                    "small are better found at a larger features.scales entry")
    return s, note


def train_rpn(s: RPNSettings, items: Sequence[RPNTrainItem], scales: Sequence[int], *, epochs: int, lr: float,
              val_fraction: float, seed: int, device: torch.device | str = "cpu") -> tuple[RPNModel, dict]:
    """Train an RPN on cached maps (Adam, one image a step) and return it with its log.

    With ``val_fraction`` > 0 and at least 10 images, that share of the images (at least one)
    is held out and the epoch with the lowest held-out loss is kept, stopping after 3 epochs
    without improvement: small data sets overfit a proposal network quickly."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    model = RPNModel(s).to(device)
    n = len(items)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 and n >= 10 else 0
    val, train = order[:n_val], order[n_val:]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    log_: dict = {"images": int(len(train)), "held_out": int(n_val), "epochs": [], "best_epoch": None}
    best, best_state, stale = math.inf, None, 0
    t0 = time.perf_counter()

    def loss_of(i: int) -> torch.Tensor:
        it = items[i]
        m = _map_at(it.maps(), s.scale, scales)
        f = float(m.factor)
        target = [{"boxes": _to_scaled(it.boxes, f).to(device)}]
        _, losses = model(m.fmap.to(device), _scaled_size(it.height, it.width, f), target)
        return losses["loss_objectness"] + losses["loss_rpn_box_reg"]

    for epoch in range(epochs):
        model.train()
        total = 0.0
        bar = progress(rng.permutation(train), desc=f"rpn training (epoch {epoch + 1}/{epochs})", unit="img")
        for i in bar:
            loss = loss_of(int(i))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        row = {"epoch": epoch + 1, "train_loss": round(total / max(len(train), 1), 5)}
        if n_val:
            model.train()  # the losses are computed in training mode (sampling, matching) ...
            with torch.no_grad():  # ... without updating anything
                v = sum(float(loss_of(int(i))) for i in val) / n_val
            row["val_loss"] = round(v, 5)
            if v < best - 1e-6:
                best, best_state, stale = v, copy.deepcopy(model.state_dict()), 0
                log_["best_epoch"] = epoch + 1
            else:
                stale += 1
        log_["epochs"].append(row)
        log.info("rpn epoch %d: %s", epoch + 1, row)
        if n_val and stale >= 3:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    elif not n_val:
        log_["best_epoch"] = len(log_["epochs"])
    log_["seconds"] = round(time.perf_counter() - t0, 1)
    return model.eval(), log_


# -- the run folder's rpn.pt --------------------------------------------------------------
def rpn_blob(model: RPNModel) -> dict:
    """What the run's proposal-network file (``rpn.pt``) holds."""
    return {"format": RPN_FORMAT, "settings": asdict(model.settings),
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "digest": model.digest()}


def load_rpn(path: Path) -> RPNModel:
    """The proposal network of a run (``rpn.pt``), checked; any damage is a :class:`UserError`."""
    return rpn_from_blob(read_rpn_blob(path), path)


def read_rpn_blob(path: Path) -> Any:
    """What a proposal-network file holds, unchecked (:func:`rpn_from_blob` checks it)."""
    if not path.is_file():
        raise UserError(f"{path.parent} was trained with proposals.method=rpn but its proposal network "
                        f"({path.name}) is missing; train the run again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling or zip damage
        raise UserError(f"{path} is damaged and cannot be loaded ({type(exc).__name__}: {exc or 'no detail'})") from None


def rpn_from_blob(blob: Any, path: Path) -> RPNModel:
    """The network in ``blob`` (read from ``path``, named in the errors), checked: format,
    settings, shapes, finite weights and the digest it was saved with."""
    if not isinstance(blob, dict) or blob.get("format") != RPN_FORMAT or not isinstance(blob.get("settings"), dict) \
            or not isinstance(blob.get("state"), dict):
        raise UserError(f"{path} is not an sppdet proposal-network file")
    try:
        s = RPNSettings(**blob["settings"])
        if not s.sizes or not s.ratios or s.channels < 1 or s.stride < 1:
            raise ValueError("empty anchors or bad geometry")
        if not all(math.isfinite(float(v)) and float(v) > 0 for v in [*s.sizes, *s.ratios]):
            raise ValueError("anchor sizes and ratios must be positive numbers")
        model = RPNModel(s)
        model.load_state_dict(blob["state"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
        raise UserError(f"{path} is damaged: its weights hold NaN or infinite values")
    if blob.get("digest") is not None and blob["digest"] != model.digest():
        raise UserError(f"{path} is damaged or was edited: its weights do not match the digest it was saved with")
    return model.eval()
