"""The peer row: torchvision's Faster R-CNN on the same trunk weights, the same data and the
same machine, trained for a budget of minutes and scored by sppdet's own VOC evaluator after
each epoch, so that sppdet's accuracy can be read against an end-to-end detector at equal
training time.

The detector is built as torchvision's tutorial builds one on MobileNetV2 ("Modifying the
model to add a different backbone"): ImageNet ``features`` (1,280 channels, stride 32) as one
map, anchors 32-512 at three ratios, RoIAlign 7x7, SGD 0.01 with momentum, horizontal flips,
shorter side ``--min-size``. The ImageNet file is the one ``sppdet weights fetch`` puts in
torch's cache, so nothing is downloaded.

    python tools/peer_fasterrcnn.py --data ../shared/data/bccd/BCCD --minutes 10 --out runs/peer_bccd

Writes ``OUT/peer.json``: per epoch the training minutes so far, mAP and AP per class on
``--eval-split``, and seconds per test image.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

import sppdet
from sppdet.backbones import weights_cache_path
from sppdet.errors import UserError, report_errors
from sppdet.evaluation.voc import evaluate_voc
from sppdet.fileio import atomic_write_json, ensure_writable_dir
from sppdet.progress import progress


def build_peer(num_classes: int, min_size: int, max_size: int) -> FasterRCNN:
    """The tutorial's MobileNetV2 Faster R-CNN with the ImageNet trunk from torch's cache."""
    path = weights_cache_path("mobilenet_v2")
    if not path.is_file():
        raise UserError(f"the ImageNet MobileNetV2 weights are not at {path}: run `sppdet weights fetch`")
    m = torchvision.models.mobilenet_v2()
    m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    backbone = m.features
    backbone.out_channels = 1280
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=num_classes + 1, rpn_anchor_generator=anchors,
                      box_roi_pool=pooler, min_size=min_size, max_size=max_size)


def _target(rec, classes: list[str], flip: bool) -> tuple[torch.Tensor, dict]:
    img = torch.from_numpy(np.ascontiguousarray(rec.read())).permute(2, 0, 1).float() / 255.0
    boxes = np.asarray(rec.boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, 2:] += 1.0  # sppdet's inclusive pixels -> torchvision's continuous corners
    if flip:
        img = img.flip(-1)
        w = img.shape[-1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    labels = torch.tensor([classes.index(c) + 1 for c in rec.labels], dtype=torch.int64)
    return img, {"boxes": torch.from_numpy(boxes), "labels": labels}


@torch.no_grad()
def detect_split(model: FasterRCNN, records, classes: list[str], device: torch.device) -> tuple[list[dict], float]:
    """Detections in sppdet's format (0-based inclusive boxes) and seconds per image."""
    model.eval()
    rows, t0 = [], time.perf_counter()
    for rec in progress(records, desc="peer: test", unit="img"):
        img = torch.from_numpy(np.ascontiguousarray(rec.read())).permute(2, 0, 1).float().div(255.0)
        out = model([img.to(device)])[0]
        for b, s, lab in zip(out["boxes"].cpu().numpy(), out["scores"].cpu().numpy(), out["labels"].cpu().numpy()):
            rows.append({"image": rec.image_id, "label": classes[int(lab) - 1], "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2]) - 1.0, float(b[3]) - 1.0]})
    return rows, (time.perf_counter() - t0) / max(len(records), 1)


def train_peer(data: str, split: str, eval_split: str, minutes: float, out: Path, epochs: int | None = None,
               min_size: int = 600, max_size: int = 1000, lr: float = 0.01, seed: int = 0,
               device: str = "auto") -> dict:
    """Train for ``minutes`` (or ``epochs``) and evaluate after every epoch; returns peer.json's content."""
    torch.manual_seed(seed)
    random.seed(seed)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    train = sppdet.load_data(data, split)
    test = sppdet.load_data(data, eval_split, classes=train.classes)
    classes = list(train.classes)
    records = [r for r in train.records if len(r.labels)]
    if not records:
        raise UserError(f"{data} {split}: no training image has objects")
    model = build_peer(len(classes), min_size, max_size).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    result = {"data": str(data), "split": split, "eval_split": eval_split, "classes": classes,
              "recipe": {"min_size": min_size, "max_size": max_size, "lr": lr, "seed": seed,
                         "trunk": "mobilenet_v2 features (ImageNet), one map, stride 32"},
              "torch_threads": torch.get_num_threads(), "epochs": []}
    budget, trained, epoch = minutes * 60.0, 0.0, 0
    while (epochs is None and trained < budget) or (epochs is not None and epoch < epochs):
        epoch += 1
        model.train()
        order = list(range(len(records)))
        random.shuffle(order)
        t0 = time.perf_counter()
        bar = progress(order, desc=f"peer: epoch {epoch}", unit="img")
        for step, i in enumerate(bar):
            warm = min(1.0, (epoch - 1) * len(order) / 100 + (step + 1) / 100)  # linear warm-up, 100 steps
            for g in opt.param_groups:
                g["lr"] = lr * warm
            img, tgt = _target(records[i], classes, flip=random.random() < 0.5)
            losses = model([img.to(dev)], [{k: v.to(dev) for k, v in tgt.items()}])
            loss = sum(losses.values())
            if not math.isfinite(float(loss)):
                raise UserError(f"the peer's loss is {float(loss)} at epoch {epoch}; try a smaller --lr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            if epochs is None and trained + time.perf_counter() - t0 > budget:
                break  # the budget is spent inside this epoch: evaluate what there is
        trained += time.perf_counter() - t0
        rows, spi = detect_split(model, test.records, classes, dev)
        res = evaluate_voc(test.records, rows, classes)
        row = {"epoch": epoch, "train_minutes": round(trained / 60.0, 2), "mAP": res["mAP"],
               "AP": res["AP"], "seconds_per_image": round(spi, 3)}
        result["epochs"].append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(out / "peer.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="trainval")
    ap.add_argument("--eval-split", default="test")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget (default 10)")
    ap.add_argument("--epochs", type=int, default=None, help="a number of epochs instead of --minutes")
    ap.add_argument("--min-size", type=int, default=600)
    ap.add_argument("--max-size", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    def run() -> int:
        if args.minutes <= 0 or (args.epochs is not None and args.epochs < 1):
            raise UserError("--minutes must be above 0 and --epochs at least 1")
        out = ensure_writable_dir(Path(args.out), "--out")
        train_peer(args.data, args.split, args.eval_split, args.minutes, out, args.epochs, args.min_size,
                   args.max_size, args.lr, args.seed, args.device)
        return 0

    return report_errors("peer_fasterrcnn", run, f"the epochs evaluated so far are in {args.out}/peer.json")


if __name__ == "__main__":
    sys.exit(main())
