"""Benchmark: SPP pooling of 2,000 windows vs the conv trunk, one image, one scale.

Issue target: pooling costs at most 10% of the image's conv time on CPU.
Usage: python tools/bench_pool.py [--image PATH] [--scale 688] [--windows 2000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sppdet.backbones import build_trunk
from sppdet.features import FeatureExtractor
from sppdet.images import read_image
from sppdet.ops import spp_pool
from sppdet.runtime import configure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="image file (default: a random 480x640 image)")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--scale", type=int, default=688)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--random-weights", action="store_true", help="skip loading ImageNet weights")
    args = ap.parse_args()
    configure(args.threads)  # threads and the allocator setting, as the CLI runs
    rng = np.random.default_rng(0)
    image = read_image(args.image) if args.image else rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    # Windows like selective search's: sizes from ~10 px to the whole image.
    sz = np.exp(rng.uniform(np.log(10), np.log(min(h, w)), size=(args.windows, 2)))
    x1 = rng.uniform(0, w - sz[:, 0]); y1 = rng.uniform(0, h - sz[:, 1])
    boxes = np.stack([x1, y1, x1 + sz[:, 0] - 1, y1 + sz[:, 1] - 1], 1)
    trunk = build_trunk(args.backbone, pretrained=not args.random_weights)
    ext = FeatureExtractor(trunk, scales=[args.scale], device="cpu")
    maps = ext.compute(image)  # warm-up
    ext.pool(maps, boxes)
    ext.pool(maps, boxes, reuse_buffer=True)
    conv, pool, fresh, roi = [], [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter(); maps = ext.compute(image); conv.append(time.perf_counter() - t)
        # as the detector pools: into the extractor's reused output buffer
        t = time.perf_counter(); ext.pool(maps, boxes, reuse_buffer=True); pool.append(time.perf_counter() - t)
        # into a freshly allocated output (as training does)
        t = time.perf_counter(); ext.pool(maps, boxes); fresh.append(time.perf_counter() - t)
        # torchvision's roi_pool for every level, the straightforward implementation
        which, cells = ext.feature_boxes(maps, boxes)
        t = time.perf_counter(); spp_pool(maps[0].fmap, torch.from_numpy(cells), ext.levels, impl="roi_pool")
        roi.append(time.perf_counter() - t)

    def line(name, xs):
        m = statistics.median(xs)
        print(f"{name:<34s} median {m * 1000:7.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"
              + ("" if xs is conv else f"   {m / statistics.median(conv):.3f} of conv"))

    print(f"image {w}x{h}, scale {args.scale}, map {tuple(maps[0].fmap.shape)}, {args.windows} windows, "
          f"{args.threads} threads, {args.repeat} repeats")
    line("conv", conv)
    line("pool (detector: reused buffer)", pool)
    line("pool (fresh output tensor)", fresh)
    line("pool (roi_pool, every level)", roi)
    print(f"pool / conv = {statistics.median(pool) / statistics.median(conv):.3f}  (target <= 0.10)")


if __name__ == "__main__":
    main()
