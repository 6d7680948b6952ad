"""The upper-trunk head (``head.type: upper``): the trunk's remaining ImageNet blocks run on each
window's RoI grid of the cached conv map, then a softmax over classes + background and
class-specific box deltas, fine-tuned on the detection windows the Fast R-CNN way.

Why: the SVMs of 0.4 see the frozen block-13 map of MobileNetV2 (96 channels); what ImageNet
taught blocks 14-18 (1,280 channels) was never used, and nothing learned the classes. The lower
trunk stays frozen and cached, so the map cache, the proposal network and the one conv per
image stay; only the upper blocks run per window.

Coordinates: a window's inclusive-pixel box goes to the continuous convention, is scaled to
the map's pyramid level and moved so that feature cell ``i`` sits at its centre
``stride * i + offset`` (backbone registry) for ``torchvision.ops.roi_align`` (``aligned=False``
samples cell ``i`` at ``i / spatial_scale``). Box deltas are :class:`sppdet.boxes.BoxCoder`
(torchvision's, weights 10, 10, 5, 5, its default clip) on continuous boxes of the original
image, coded in float32 as the head's layers compute.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import roi_align

from .boxes import BoxCoder, clip, from_continuous, iou, to_continuous
from .config import HeadConfig
from .ops import best_scale
from .progress import progress

log = logging.getLogger(__name__)

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Fast R-CNN's delta scaling (torchvision's RoIHeads)


class UpperHead(nn.Module):
    """``body`` (the trunk's layers above its cut, [K, channels, g, g] → [K, dim]), a classifier
    over ``num_classes`` + background (index 0) and class-specific box deltas."""

    def __init__(self, body: nn.Module, dim: int, num_classes: int, grid: int, stride: int, offset: float,
                 dropout: float = 0.0):
        super().__init__()
        self.body = body
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(dim, num_classes + 1)
        self.bbox = nn.Linear(dim, 4 * (num_classes + 1))
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.bbox.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.bbox.bias)
        self.dim, self.num_classes, self.grid = int(dim), int(num_classes), int(grid)
        self.stride, self.offset = int(stride), float(offset)
        self.coder = BoxCoder(BOX_WEIGHTS)

    def grids(self, maps: Sequence, boxes: np.ndarray) -> torch.Tensor:
        """``[K, channels, grid, grid]`` RoI grids of inclusive-pixel ``boxes`` of the original
        image, each read from the pyramid level where it is closest to 224² (as SPP pooling)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        device = self.cls.weight.device
        ch = maps[0].fmap.shape[0]
        out = torch.empty((len(boxes), ch, self.grid, self.grid), dtype=torch.float32, device=device)
        which = best_scale(boxes, [m.factor for m in maps])
        cont = to_continuous(boxes)
        for k, m in enumerate(maps):
            idx = np.nonzero(which == k)[0]
            if not len(idx):
                continue
            rois = torch.as_tensor(cont[idx] * m.factor - (self.offset + 0.5), dtype=torch.float32, device=device)
            rois = torch.cat([rois.new_zeros((len(idx), 1)), rois], 1)
            fmap = m.fmap.to(device=device, dtype=torch.float32)[None]
            g = roi_align(fmap, rois, (self.grid, self.grid), spatial_scale=1.0 / self.stride, sampling_ratio=2)
            out[torch.from_numpy(idx).to(device)] = g
        return out

    def features(self, grids: torch.Tensor) -> torch.Tensor:
        return self.body(grids)

    def forward(self, grids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[K, C + 1]`` and box deltas ``[K, 4 (C + 1)]``."""
        f = self.drop(self.features(grids))
        return self.cls(f), self.bbox(f)

    @torch.inference_mode()
    def predict(self, maps: Sequence, boxes: np.ndarray, width: int, height: int,
                batch: int = 512) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Softmax scores ``[K, C]`` (background left out) and each class's refined box
        ``[K, C, 4]`` (inclusive pixels, clipped to the image), plus the seconds of the grid
        reads and of the blocks."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        C = self.num_classes
        if not len(boxes):
            return np.zeros((0, C)), np.zeros((0, C, 4)), {}
        t0 = time.perf_counter()
        grids = self.grids(maps, boxes)
        t1 = time.perf_counter()
        logits, deltas = zip(*(self(grids[i:i + batch]) for i in range(0, len(grids), batch)))
        t2 = time.perf_counter()
        probs = torch.softmax(torch.cat(logits).double(), 1)[:, 1:].cpu().numpy()
        ref = torch.as_tensor(to_continuous(boxes), dtype=torch.float32, device=grids.device)
        pred = self.coder.decode_single(torch.cat(deltas), ref).reshape(len(boxes), C + 1, 4)[:, 1:]
        out = clip(from_continuous(pred.double().cpu().numpy()), width, height)
        return probs, out, {"pooling": t1 - t0, "fc": t2 - t1}

    def spec(self) -> dict:
        """What rebuilds this head's layers around a state dict (model.pt)."""
        return {"dim": self.dim, "num_classes": self.num_classes, "grid": self.grid, "stride": self.stride,
                "offset": self.offset, "dropout": float(self.drop.p)}


def build_upper_head(cfg: HeadConfig, backbone: str, weights: str | None, trunk, num_classes: int,
                     pretrained: bool = True) -> UpperHead:
    """An ImageNet-initialised head on ``trunk``'s map: the same weights file as the trunk."""
    from .backbones import build_upper

    body, dim, weights_id = build_upper(backbone, weights, cfg.keep_stride, pretrained=pretrained)
    if pretrained and weights_id != trunk.weights_id:
        raise ValueError(f"the upper blocks' weights ({weights_id[:12]}) are not the trunk's ({trunk.weights_id[:12]})")
    return UpperHead(body, dim, num_classes, cfg.grid, trunk.stride, trunk.offset, cfg.dropout)


def head_from_state(backbone: str, keep_stride: bool, spec: dict, state: dict) -> UpperHead:
    """A saved head (model.pt's ``upper_head``): its layers built with random weights, then its
    state dict loaded (nothing is read from the ImageNet file)."""
    from .backbones import build_upper

    body, dim, _ = build_upper(backbone, None, keep_stride, pretrained=False)
    if dim != spec["dim"]:
        raise ValueError(f"{backbone}'s upper blocks give {dim}-d features, the saved head {spec['dim']}-d")
    head = UpperHead(body, dim, spec["num_classes"], spec["grid"], spec["stride"], spec["offset"], spec["dropout"])
    head.load_state_dict(state)
    for p in head.parameters():
        if not torch.isfinite(p).all():
            raise ValueError("the head's weights hold NaN or infinite values")
    return head.eval()


@dataclass
class HeadTrainItem:
    """One training image for the head: its cached maps, its windows (ground truth first, then
    proposals in their ranking), the ground truth's classes."""

    maps: Callable[[], Sequence]
    boxes: np.ndarray  # [K, 4] inclusive pixels, rows [0, n_gt) ground truth
    n_gt: int
    gt_classes: np.ndarray  # [n_gt] 0-based


def _targets(it: HeadTrainItem) -> tuple[np.ndarray, np.ndarray]:
    """Each window's best IoU with the ground truth and the index of that ground truth."""
    if it.n_gt == 0:
        return np.zeros(len(it.boxes)), np.zeros(len(it.boxes), dtype=np.int64)
    ov = iou(it.boxes, it.boxes[: it.n_gt])
    match = ov.argmax(1)
    return ov[np.arange(len(ov)), match], match


def sample_rois(max_iou: np.ndarray, n: int, cfg: HeadConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` window indices, at most ``fg_fraction`` of them foreground (IoU ≥ ``fg_iou``), the
    rest background (best IoU < ``bg_iou``); and which of them are foreground."""
    fg = np.nonzero(max_iou >= cfg.fg_iou)[0]
    bg = np.nonzero(max_iou < cfg.bg_iou)[0]
    n_fg = min(len(fg), int(round(n * cfg.fg_fraction)))
    n_bg = min(len(bg), n - n_fg)
    fg = rng.choice(fg, n_fg, replace=False) if n_fg else fg[:0]
    bg = rng.choice(bg, n_bg, replace=False) if n_bg else bg[:0]
    return np.concatenate([fg, bg]).astype(np.int64), np.arange(n_fg + n_bg) < n_fg


def _batch(head: UpperHead, items: Sequence[HeadTrainItem], targets, ids, cfg: HeadConfig,
           rng: np.random.Generator, device) -> tuple[torch.Tensor, list, list] | None:
    grids, labels, regs = [], [], []
    for i in ids:
        it = items[i]
        max_iou, match = targets[i]
        idx, is_fg = sample_rois(max_iou, cfg.rois_per_image, cfg, rng)
        if not len(idx):
            continue
        boxes = it.boxes[idx]
        grids.append(head.grids(it.maps(), boxes))
        lab = np.where(is_fg, it.gt_classes[match[idx]] + 1 if it.n_gt else 0, 0)
        labels.append(torch.as_tensor(lab, dtype=torch.int64, device=device))
        gts = it.boxes[: it.n_gt][match[idx]] if it.n_gt else boxes
        regs.append(head.coder.encode_single(torch.as_tensor(to_continuous(gts), dtype=torch.float32, device=device),
                                             torch.as_tensor(to_continuous(boxes), dtype=torch.float32, device=device)))
    if not grids:
        return None
    return torch.cat(grids), labels, regs


def _loss(head: UpperHead, batch) -> tuple[torch.Tensor, float, float]:
    grids, labels, regs = batch
    logits, deltas = head(grids)
    cls_loss, box_loss = fastrcnn_loss(logits, deltas, labels, regs)
    return cls_loss + box_loss, float(cls_loss.detach()), float(box_loss.detach())


def train_upper_head(head: UpperHead, items: Sequence[HeadTrainItem], cfg: HeadConfig, seed: int,
                     device: torch.device) -> dict:
    """SGD (momentum 0.9, cosine decay after a short warm-up) on ``images_per_batch`` images a
    step, ``rois_per_image`` windows each; ``val_fraction`` of the images held out, and the
    epoch with the least held-out loss kept (the last, without held-out images). Returns the
    log: losses per epoch and the epoch kept."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    head.to(device)
    targets = [_targets(it) for it in items]
    n = len(items)
    n_val = int(round(n * cfg.val_fraction)) if n >= 10 else 0
    perm = rng.permutation(n)
    val, train = sorted(perm[:n_val].tolist()), perm[n_val:].tolist()
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.images_per_batch))
    total = steps_per_epoch * cfg.epochs
    warm = min(100, total // 10 + 1)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    val_rng_seed = seed + 1  # the same held-out windows every epoch
    history, best, best_state = [], math.inf, None
    for epoch in range(cfg.epochs):
        head.train()
        order = rng.permutation(train).tolist()
        sums = np.zeros(2)
        bar = progress(range(steps_per_epoch), desc=f"head fine-tuning (epoch {epoch + 1}/{cfg.epochs})",
                       unit="step", leave=False)
        for s in bar:
            b = _batch(head, items, targets, order[s * cfg.images_per_batch:(s + 1) * cfg.images_per_batch], cfg,
                       rng, device)
            if b is None:
                sched.step()
                continue
            loss, lc, lb = _loss(head, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums += (lc, lb)
        rec = {"epoch": epoch + 1, "train_cls": round(sums[0] / steps_per_epoch, 5),
               "train_box": round(sums[1] / steps_per_epoch, 5)}
        if val:
            rec["val_loss"] = round(held_out_loss(head, items, targets, val, cfg, val_rng_seed, device), 5)
            if rec["val_loss"] < best:
                best, best_state = rec["val_loss"], copy.deepcopy(head.state_dict())
                rec["kept"] = True
        history.append(rec)
        log.info(f"head epoch {epoch + 1}: {rec}")
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    kept = max((r["epoch"] for r in history if r.get("kept")), default=cfg.epochs)
    return {"epochs": history, "epoch_kept": kept, "held_out_images": len(val), "steps": total}


@torch.no_grad()
def held_out_loss(head: UpperHead, items, targets, ids: Sequence[int], cfg: HeadConfig, seed: int, device) -> float:
    """Mean multi-task loss on the held-out images' sampled windows (the same windows each call)."""
    head.eval()
    rng = np.random.default_rng(seed)
    losses = []
    for i in ids:
        b = _batch(head, items, targets, [i], cfg, rng, device)
        if b is not None:
            losses.append(_loss(head, b)[0].item())
    return float(np.mean(losses)) if losses else math.inf
