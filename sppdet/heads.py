"""Fully connected heads on SPP vectors: fc6, fc7 and a softmax fc8 over classes + background,
fine-tuned on pooled features from the cached conv maps (conv layers stay frozen), as SPP-net
does: positives IoU ≥ 0.5, negatives IoU in [0.1, 0.5), 25% positives per mini-batch."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from .progress import progress

from .backbones import pretrained_fc_layers
from .config import BackboneConfig, Config, FinetuneConfig

log = logging.getLogger(__name__)


class FCHead(nn.Module):
    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.fc6 = nn.Linear(in_dim, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.fc8 = nn.Linear(hidden, num_classes + 1)  # index 0 = background
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations (after ReLU): what the SVMs see after fine-tuning."""
        x = self.drop(torch.relu(self.fc6(x)))
        return torch.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.drop(self.features(x)))


def load_pretrained_fc(head: FCHead, fc: dict[str, torch.Tensor], channels: int, n: int,
                       channels_last: bool) -> FCHead:
    """Copy torchvision's fc6/fc7 into ``head``. torchvision flattens ``[C, n, n]``
    (channel-major); a channels-last SPP vector is ``[n, n, C]``, so fc6's columns are permuted
    to read the same numbers in that order: fc6(ours) = fc6(torchvision) exactly."""
    w6 = fc["fc6.weight"]
    if tuple(w6.shape[1:]) != (channels * n * n,):
        raise ValueError(f"fc6 takes {w6.shape[1]} inputs, not {channels}x{n}x{n}")
    if channels_last:
        w6 = w6.reshape(-1, channels, n, n).permute(0, 2, 3, 1).reshape(w6.shape[0], -1)
    with torch.no_grad():
        head.fc6.weight.copy_(w6)
        head.fc6.bias.copy_(fc["fc6.bias"])
        head.fc7.weight.copy_(fc["fc7.weight"])
        head.fc7.bias.copy_(fc["fc7.bias"])
    return head


def build_head(ft: FinetuneConfig, backbone: BackboneConfig, extractor, num_classes: int) -> FCHead:
    """fc6/fc7/fc8 for fine-tuning: from the ImageNet classifier of ``backbone``'s trunk where it
    has one (vgg16, alexnet; ``finetune.pretrained_fc``), else ``finetune.hidden`` wide from scratch."""
    fc = pretrained_fc_layers(backbone.name, backbone.weights) if ft.pretrained_fc else None
    if fc is None:
        return FCHead(extractor.dim, ft.hidden, num_classes, ft.dropout)
    n, tensors = fc
    if [int(v) for v in extractor.levels] != [n]:  # Config.validate() says so earlier
        raise ValueError(f"pretrained fc6 needs features.levels=[{n}], not {extractor.levels}")
    head = FCHead(extractor.dim, tensors["fc7.weight"].shape[0], num_classes, ft.dropout)
    log.info("fc6/fc7 initialised from %s's ImageNet classifier", backbone.name)
    return load_pretrained_fc(head, tensors, extractor.trunk.channels, n,
                              getattr(extractor, "channels_last", False))


def head_from_config(cfg: Config, extractor, num_classes: int) -> FCHead:
    """:func:`build_head` with a whole config's ``finetune`` and ``backbone`` sections."""
    return build_head(cfg.finetune, cfg.backbone, extractor, num_classes)


def sample_minibatch(windows, rng: np.random.Generator, n: int, cfg: FinetuneConfig):
    """Window indices and labels (0 = background, c+1 = class c) for one image's share."""
    fg = np.nonzero(windows.max_iou >= cfg.fg_iou)[0]
    bg = np.nonzero((windows.max_iou < cfg.bg_iou_high) & (windows.max_iou >= cfg.bg_iou_low))[0]
    if len(bg) == 0:  # images with no near misses: fall back to any background window
        bg = np.nonzero(windows.max_iou < cfg.bg_iou_high)[0]
    n_fg = min(len(fg), int(round(n * cfg.fg_fraction)))
    n_bg = min(len(bg), n - n_fg)
    fg = rng.choice(fg, n_fg, replace=False) if n_fg else fg[:0]
    bg = rng.choice(bg, n_bg, replace=False) if n_bg else bg[:0]
    idx = np.concatenate([fg, bg]).astype(np.int64)
    labels = np.concatenate([windows.max_class[fg] + 1, np.zeros(len(bg), dtype=np.int64)])
    return idx, labels


def finetune_head(head: FCHead, image_ids: Sequence[int], get_windows: Callable, pool: Callable,
                  cfg: FinetuneConfig, seed: int, device: torch.device,
                  extra_params: Sequence[nn.Parameter] = (), desc: str = "fine-tune fc") -> list[float]:
    """SGD on pooled windows of ``images_per_batch`` random images per step.

    ``get_windows(i)`` gives an :class:`ImageWindows`; ``pool(i, idx)`` the pooled
    vectors of those windows. ``extra_params`` are trained with the head: the conv layers
    ``pool`` ran (with autograd) to produce the vectors (``tools/finetune_conv.py``).
    Returns the loss curve (mean per 50 steps).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    head.to(device).train()
    opt = torch.optim.SGD([*extra_params, *head.parameters()], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_step), gamma=0.1)
    per_image = max(1, cfg.batch_size // cfg.images_per_batch)
    losses, running = [], []
    order = rng.permutation(len(image_ids))
    pos = 0
    for _ in progress(range(cfg.iterations), desc=desc, unit="it", leave=False):
        xs, ys = [], []
        for _ in range(cfg.images_per_batch):
            if pos >= len(order):
                order, pos = rng.permutation(len(image_ids)), 0
            i = image_ids[order[pos]]
            pos += 1
            idx, labels = sample_minibatch(get_windows(i), rng, per_image, cfg)
            if len(idx):
                xs.append(pool(i, idx))
                ys.append(torch.from_numpy(labels))
        if not xs:
            continue
        x = torch.cat(xs).to(device)
        y = torch.cat(ys).to(device)
        loss = nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if len(running) == 50:
            losses.append(float(np.mean(running)))
            running = []
    if running:
        losses.append(float(np.mean(running)))
    head.eval()
    return losses
