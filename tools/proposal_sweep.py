"""Recall, windows and time of several selective-search settings on the same images, one process.

    PYTHONPATH=$PWD python tools/proposal_sweep.py --data /work/shared/data/bccd/BCCD --split test \
        --images 24 --out /tmp/sweep  "fast@500=proposals.mode=fast" "quality@500=proposals.mode=quality" \
        "paper-fast=proposals.mode=custom proposals.ks=[50,100]"

Each setting is ``name=space-separated --set overrides``. Writes ``<out>/<name>/proposals.json``
(+ the recall curve) and prints a Markdown table. Seconds per image are this process's
wall time per image on one core (cv2.setNumThreads(1)).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from sppdet.config import load_config
from sppdet.datasets import load_dataset
from sppdet.evaluation.proposals import evaluate_proposals
from sppdet.proposals import selective_search_cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--images", type=int, default=0, help="first N images of the split (0 = all)")
    ap.add_argument("--out", required=True)
    ap.add_argument("settings", nargs="+")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    ds = load_dataset(args.data, args.split)
    records = sorted(ds.records, key=lambda r: r.image_id)
    if args.images:
        records = records[: args.images]
    images = {r.image_id: r.read() for r in records}
    rows = []
    for setting in args.settings:
        name, _, sets = setting.partition("=")
        cfg = load_config(None, sets.split())
        boxes, t0 = {}, time.perf_counter()
        for r in records:
            boxes[r.image_id] = selective_search_cfg(images[r.image_id], cfg.proposals)
        spi = (time.perf_counter() - t0) / len(records)
        res = evaluate_proposals(records, lambda r: boxes[r.image_id], ds.classes, Path(args.out) / name, spi)
        rows.append((name, res))
        print(name, res["windows_per_image"], res["recall"], f"{spi:.2f}s", flush=True)
    cls = ds.classes
    print(f"\n{len(records)} images of {args.data} ({args.split}), objects {rows[0][1]['objects']}\n")
    head = "| setting | windows (median) | " + " | ".join(f"{c} R@0.5 / R@0.7 / mean best IoU" for c in cls)
    print(head + " | all R@0.5 / R@0.7 | s/img (1 core) |")
    print("|" + "---|" * (len(cls) + 4))
    for name, res in rows:
        cells = [f"{res['recall']['0.5'][c]:.3f} / {res['recall']['0.7'][c]:.3f} / {res['mean_best_iou'][c]:.3f}"
                 for c in cls]
        print(f"| {name} | {res['windows_per_image']:.0f} | " + " | ".join(cells)
              + f" | {res['recall_all']['0.5']:.3f} / {res['recall_all']['0.7']:.3f}"
              + f" | {res['seconds_per_image']:.2f} |")


if __name__ == "__main__":
    main()
