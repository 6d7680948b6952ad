"""The R-CNN baseline: every proposal is cropped with 16 pixels of context, warped to
224×224 and pushed through the trunk on its own; its conv map is pooled by the same pyramid
(whole-map form), so heads, SVMs and box regression are shared with SPP-net and only the
place where convolution happens differs — once per window instead of once per image."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from .backbones import Trunk
from .features import ScaleMap
from .ops import spp_pool


class RCNNExtractor:
    """Same interface as :class:`~sppdet.features.FeatureExtractor`; ``compute`` only holds the image."""

    per_window = True

    def __init__(self, trunk: Trunk, levels: Sequence[int] = (6, 3, 2, 1), device: torch.device | str = "cpu",
                 size: int = 224, context: int = 16, batch_size: int = 64, channels_last: bool = True):
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)  # pooled vector order, as FeatureExtractor's
        self.trunk = trunk.to(self.device).eval()
        self.levels = [int(n) for n in levels]
        self.size, self.context, self.batch_size = size, context, batch_size
        self.scales = [size]
        self.max_size = size
        self.timings: dict[str, float] = {}

    @property
    def dim(self) -> int:
        return self.trunk.channels * sum(n * n for n in self.levels)

    def compute(self, image: np.ndarray) -> list[ScaleMap]:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float().div_(255.0)
        return [ScaleMap(1.0, x)]

    def warp(self, image: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        """Crops ``[K, 3, size, size]``: each box grown so that, once warped, it has ``context``
        pixels of image around it (R-CNN's 'padding 16'), bilinearly resampled; outside the
        image is zero (R-CNN fills with the mean; zero in [0, 1] space after normalisation
        differs only in colour)."""
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32), device=self.device).reshape(-1, 4)
        grow = self.size / (self.size - 2.0 * self.context)
        cx, cy = (b[:, 0] + b[:, 2] + 1) / 2, (b[:, 1] + b[:, 3] + 1) / 2
        hw, hh = (b[:, 2] - b[:, 0] + 1) * grow / 2, (b[:, 3] - b[:, 1] + 1) * grow / 2
        rois = torch.stack([torch.zeros_like(cx), cx - hw, cy - hh, cx + hw, cy + hh], 1)
        return roi_align(image[None], rois, (self.size, self.size), spatial_scale=1.0, sampling_ratio=2,
                         aligned=True)

    @torch.inference_mode()
    def pool(self, maps: Sequence[ScaleMap], boxes: np.ndarray, reuse_buffer: bool = False) -> torch.Tensor:
        import time

        image = maps[0].fmap
        out = torch.empty((len(boxes), self.dim), dtype=torch.float32, device=self.device)
        t_conv = t_pool = 0.0
        for i in range(0, len(boxes), self.batch_size):
            t0 = time.perf_counter()
            fmap = self.trunk(self.warp(image, boxes[i:i + self.batch_size]))
            t1 = time.perf_counter()
            out[i:i + len(fmap)] = spp_pool(fmap, None, self.levels, channels_last=self.channels_last)
            t_pool += time.perf_counter() - t1
            t_conv += t1 - t0
        self.timings = {"conv": t_conv, "pooling": t_pool}
        return out
