"""Beyond the paper: fine-tune the trunk's last conv blocks through the SPP layer.

SPP-net fine-tunes only fc6/fc7/fc8 on pooled vectors of frozen, cached conv maps (its Sec. 4.2
says it cannot back-propagate efficiently through the pooling of many windows). Fast R-CNN later
showed that training the last conv layers through the pooling layer helps. This tool does that
on sppdet's own pipeline, and writes the result as an ordinary trunk weights file, so the rest
of the recipe (cached conv maps, SVMs with hard-negative mining, box regression, detection) is
unchanged and runs with ``--set backbone.weights=OUT/trunk.pth``:

* the trunk is split into a frozen head (``body[:-blocks]``, computed once per image) and a
  trainable tail (``body[-blocks:]``; BatchNorm statistics stay frozen, as detection
  fine-tuning with 2 images per batch needs);
* each step takes ``images_per_batch`` images, runs the tail on their frozen maps, pools
  ``batch_size`` sampled windows (25% with IoU ≥ 0.5 as their class, the rest IoU in
  [0.1, 0.5) as background, ``finetune.*`` settings) with :func:`sppdet.ops.spp_pool`
  (torchvision's ``roi_pool``, which back-propagates to the map), and a fresh fc6/fc7/fc8
  head (``finetune.hidden``) gives the softmax loss; SGD updates the tail and the head;
* the head is thrown away afterwards (as R-CNN's SVMs replace fc8): only the tail's weights
  go into the trunk file.

    python tools/finetune_conv.py --data ../shared/data/bccd/BCCD --split trainval \\
        --out runs/ftconv --cache runs/cache_quality --blocks 3
    sppdet train --data ../shared/data/bccd/BCCD --split trainval --eval-split test \\
        --cache runs/cache_quality --out runs/bccd_ftconv --set backbone.weights=runs/ftconv/trunk.pth

One scale only (``features.scales`` must hold one size). ``--blocks`` counts the trunk's top-level
modules: MobileNetV2's inverted-residual blocks, but single layers (ReLUs and pools included) for
VGG16/AlexNet. The frozen maps are kept in memory at fp16: about 0.3 MB per 688-px image for
MobileNetV2 with 3 blocks (1.6 GB for VOC07 trainval), 2.5 MB for VGG16's conv5. Writes ``OUT/trunk.pth`` (the cut
trunk's state dict) and ``OUT/finetune_conv.json`` (settings, loss curve, seconds).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="trainval")
    ap.add_argument("--out", required=True, help="folder for trunk.pth and finetune_conv.json")
    ap.add_argument("--cache", default=None, help="sppdet cache (the proposals are read from / written to it)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    ap.add_argument("--blocks", type=int, default=3, help="trainable blocks at the end of the trunk")
    ap.add_argument("--iterations", type=int, default=None, help="default: finetune.iterations")
    ap.add_argument("--lr", type=float, default=None, help="default: finetune.lr")
    ap.add_argument("--workers", type=int, default=None, help="processes for the proposals")
    args = ap.parse_args(argv)

    from sppdet.errors import report_errors
    from sppdet.runtime import configure

    configure()
    return report_errors("finetune_conv", lambda: _run(args),
                         "nothing was written (the proposals computed so far are cached)")


def _run(args: argparse.Namespace) -> int:
    from sppdet.api import cache_dir, load_data, make_config
    from sppdet.backbones import build_trunk
    from sppdet.cache import CachedData
    from sppdet.extractors import extractor_from_config
    from sppdet.errors import UserError
    from sppdet.features import resolve_device
    from sppdet.fileio import atomic_save, atomic_write_json, ensure_writable_dir
    from sppdet.heads import FCHead, finetune_head
    from sppdet.ops import map_windows, spp_dim, spp_pool
    from sppdet.parallel import make_executor
    from sppdet.progress import progress
    from sppdet.training import image_windows

    cfg = make_config(args.config, args.overrides)
    if cfg.proposals.method == "rpn":
        raise UserError("this tool trains on selective-search or external windows; a proposal network is "
                        "trained by `sppdet train` (set proposals.method=selective_search here)")
    if cfg.proposals.method == "auto":  # before any training: selective search, as `sppdet proposals`
        cfg = dataclasses.replace(cfg, proposals=dataclasses.replace(cfg.proposals, method="selective_search"))
    ft = cfg.finetune
    iterations = ft.iterations if args.iterations is None else args.iterations
    lr = ft.lr if args.lr is None else args.lr
    if iterations < 1 or not lr > 0:
        raise UserError("--iterations must be at least 1 and --lr a positive number")
    if cfg.method != "spp" or len(cfg.features.scales) != 1:
        raise UserError("conv fine-tuning needs method: spp and one scale in features.scales")
    out = ensure_writable_dir(Path(args.out), "--out")
    device = resolve_device(cfg.device)

    ds = load_data(args.data, args.split, cfg)
    trunk = build_trunk(cfg.backbone.name, cfg.backbone.weights)
    body = trunk.body
    if not 1 <= args.blocks < len(body):
        raise UserError(f"--blocks must be 1..{len(body) - 1} for {cfg.backbone.name} ({len(body)} blocks)")
    frozen, tail = body[: len(body) - args.blocks], body[len(body) - args.blocks:]
    with make_executor(args.workers, None) as ex:
        data = CachedData.from_config(cfg, None, cache_dir(args.cache))
        records = data.prepare(ds.records, ds.report, features=False, executor=ex)
    cidx = {c: i for i, c in enumerate(ds.classes)}

    # the frozen part's maps, once per image (kept in memory at fp16), from the same scaled
    # and normalised input the pipeline's conv sees
    t0 = time.perf_counter()
    items = []
    extractor = extractor_from_config(cfg, trunk, device)
    frozen.eval()
    with torch.inference_mode():
        for r in progress(records, desc="frozen conv", unit="img"):
            (f, x), = extractor.scaled_images(r.read())
            fmap = frozen(trunk.normalize(x))[0].half().cpu()
            items.append((f, fmap, image_windows(r, cidx, data.proposals_for(r))))
    frozen_s = time.perf_counter() - t0
    if not items:
        raise UserError("no training image could be read")

    head = FCHead(spp_dim(trunk.channels, cfg.features.levels), ft.hidden, len(ds.classes), ft.dropout)
    tail.to(device).eval()  # BatchNorm keeps its ImageNet statistics; weights still learn
    for p in tail.parameters():
        p.requires_grad_(True)

    def pool(i: int, idx: np.ndarray) -> torch.Tensor:
        """The windows' SPP vectors from the tail run on image i's frozen map, with autograd."""
        f, fmap, w = items[i]
        m = tail(fmap.to(device).float()[None])[0]
        cells = map_windows(w.boxes[idx] * f, trunk.stride, trunk.offset, m.shape[1], m.shape[2])
        return spp_pool(m, torch.from_numpy(cells).to(device), cfg.features.levels, impl="roi_pool",
                        channels_last=True)

    t0 = time.perf_counter()
    ft = dataclasses.replace(ft, iterations=iterations, lr=lr)
    losses = [round(v, 4) for v in finetune_head(head, list(range(len(items))), lambda i: items[i][2], pool, ft,
                                                 cfg.seed, device, extra_params=list(tail.parameters()),
                                                 desc="fine-tune conv + fc")]
    train_s = time.perf_counter() - t0

    tuned = {k: v.detach().cpu() for k, v in body.state_dict().items()}
    atomic_save(out / "trunk.pth", lambda p: torch.save(tuned, p))
    atomic_write_json(out / "finetune_conv.json", {
        "data": str(args.data), "split": args.split, "images": len(items), "backbone": cfg.backbone.name,
        "base_weights": trunk.weights_id, "blocks": args.blocks, "iterations": iterations, "lr": lr,
        "finetune": {k: getattr(ft, k) for k in ("hidden", "batch_size", "images_per_batch", "fg_fraction",
                                                  "fg_iou", "bg_iou_low", "bg_iou_high", "lr_step",
                                                  "momentum", "weight_decay", "dropout")},
        "scales": cfg.features.scales, "levels": cfg.features.levels,
        "loss_per_50_steps": losses, "seconds": {"frozen_conv": round(frozen_s, 1), "fine_tune": round(train_s, 1)},
    })
    print(f"wrote {out / 'trunk.pth'}: use it with --set backbone.weights={out / 'trunk.pth'}")
    print(f"loss {losses[0] if losses else float('nan'):.3f} -> {losses[-1] if losses else float('nan'):.3f}; "
          f"{frozen_s:.0f} s frozen conv, {train_s:.0f} s fine-tuning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
