#!/usr/bin/env python
"""The SPP-net paper's Table (R-CNN vs SPP-net 1-scale vs 5-scale) on one data set.

Rows: R-CNN (``method: rcnn``: each window warped to 224x224 and convolved on its own), SPP-net
1 scale (688) and 5 scales (480..1200). Every row uses the same trunk, proposals, pyramid,
SVM recipe and box regression, and is trained on the same images. Columns: mAP of SVMs on
pool5 and on fine-tuned fc7 ("ftfc7"), each without and with box regression ("+ bb"); per-class
AP of the best column; conv and total seconds per image (``sppdet bench``: median over the
bench images, proposals excluded as in the paper); training wall time and peak memory.

Each training runs as its own ``python -m sppdet train`` process (so its peak memory is its
own) over one shared cache: the proposals are computed once for all rows, the conv maps once
per SPP row and the R-CNN window vectors once (rcnn.WindowVectorCache), whichever column trains.

  python tools/paper_table.py --data ../shared/data/bccd/BCCD --train-images 60 --out runs/paper_table

Writes OUT/table.md and OUT/table.json. Finished trainings are kept and reused (delete a run
folder to redo it). The timings run last, with the trained 1-scale pool5 model (so box
regression and NMS see what a real detector passes them): leave the machine quiet then.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = {  # name -> --set overrides
    "R-CNN": ["method=rcnn"],
    "SPP-net 1-scale": ["method=spp", "features.scales=[688]"],
    "SPP-net 5-scale": ["method=spp", "features.scales=[480,576,688,864,1200]"],
}
BENCH_KEY = {"R-CNN": "rcnn", "SPP-net 1-scale": "spp-1scale", "SPP-net 5-scale": "spp-5scale"}
COLUMNS = {"pool5": ["finetune.enabled=false"], "ftfc7": ["finetune.enabled=true"]}


def sppdet(*args: str) -> None:
    cmd = [sys.executable, "-m", "sppdet", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def train_subset(data: Path, split: str, n: int, out: Path, seed: int = 0) -> str:
    """A list file of ``n`` images of ``split`` drawn with a fixed seed (all of them when n=0)."""
    import numpy as np

    from sppdet.datasets import load_dataset

    if n <= 0:
        return split
    ids = [r.image_id for r in load_dataset(data, split).records]
    pick = sorted(np.random.default_rng(seed).permutation(len(ids))[:n])
    path = out / f"{split}_{n}.txt"
    path.write_text("".join(ids[i] + "\n" for i in pick))
    return str(path)


def main(argv=None) -> int:
    from sppdet import run_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/bccd/BCCD")
    ap.add_argument("--train-split", default="trainval")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--train-images", type=int, default=0, help="a seeded subset of the train split (0: all)")
    ap.add_argument("--out", default="runs/paper_table")
    ap.add_argument("--cache", default=None, help="default: OUT/cache")
    ap.add_argument("--workers", default=None)
    ap.add_argument("--bench-images", type=int, default=5)
    ap.add_argument("--rcnn-bench-images", type=int, default=2)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="extra KEY=VALUE for every row")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or str(out / "cache")
    rows = [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}")
    if any(o.split("=")[0].strip() in ("bbox_reg.enabled", "finetune.enabled", "method") for o in args.overrides):
        ap.error("bbox_reg.enabled, finetune.enabled and method are the table's columns and rows")
    common = ["--workers", args.workers] if args.workers else []
    sets = [a for o in args.overrides for a in ("--set", o)]

    split = train_subset(Path(args.data), args.train_split, args.train_images, out)
    table: dict = {"data": args.data, "train_split": split, "test_split": args.test_split, "rows": {}}
    for row in rows:
        for col, col_sets in COLUMNS.items():
            run = out / f"{BENCH_KEY[row]}_{col}"
            evaluated = run_dir.eval_dir(run, args.test_split)
            if not run_dir.is_trained_run(run):
                t0 = time.time()
                sppdet("train", "--data", args.data, "--split", split, "--eval-split", args.test_split,
                       "--out", str(run), "--cache", cache, "--overwrite", *common,
                       *[a for o in ROWS[row] + col_sets for a in ("--set", o)], *sets)
                (run / "wall_s.txt").write_text(f"{time.time() - t0:.1f}\n")
            if not (evaluated / "metrics.json").is_file():  # trained, but its evaluation was cut short
                sppdet("eval", str(run), "--data", args.data, "--split", args.test_split, "--cache", cache,
                       "--out", str(evaluated), *common)
            nobb = run / "eval_nobb"
            if not (nobb / "metrics.json").is_file():
                sppdet("eval", str(run), "--data", args.data, "--split", args.test_split, "--cache", cache,
                       "--out", str(nobb), "--set", "bbox_reg.enabled=false", *common)
            with_bb = json.loads((evaluated / "metrics.json").read_text())
            no_bb = json.loads((nobb / "metrics.json").read_text())
            log = json.loads((run / run_dir.TRAIN_LOG_FILE).read_text())
            wall = run / "wall_s.txt"
            r = table["rows"].setdefault(row, {"columns": {}})
            r["columns"][col] = {"mAP": no_bb["mAP"], "AP": no_bb["AP"]}
            r["columns"][col + " + bb"] = {"mAP": with_bb["mAP"], "AP": with_bb["AP"]}
            stages = log.get("timings_s") or {}
            r.setdefault("train", {})[col] = {
                "wall_s": float(wall.read_text()) if wall.is_file() else None,  # train + test eval
                # the training's own stages, selective search excluded (cached once for all rows);
                # api.train also logs the evaluation's stages, as "test ...": kept apart
                "train_s_excl_proposals": sum(v for k, v in stages.items()
                                              if k != "proposals" and not k.startswith("test ")),
                "test_s_excl_proposals": sum(v for k, v in stages.items()
                                             if k.startswith("test ") and k != "test proposals"),
                "peak_rss_mb": log.get("peak_rss_mb"), "stages_s": log.get("timings_s"),
                "images": log.get("images"), "objects": log.get("objects")}
    # Timings last, when nothing else runs, with a trained detector: the 1-scale pool5 run, whose
    # SVMs and regressors every method applies to its own vectors (same length), so that box
    # regression and NMS see a trained model's handful of windows, not a random one's thousands.
    bench_dir = out / "bench"
    timed_run = out / "spp-1scale_pool5"
    have_run = run_dir.is_trained_run(timed_run)
    old = json.loads((bench_dir / "bench.json").read_text()) if (bench_dir / "bench.json").is_file() else None
    if old is None or (have_run and "mAP" not in old):
        sppdet("bench", "--data", args.data, "--split", args.test_split, "--images", str(args.bench_images),
               "--rcnn-images", str(args.rcnn_bench_images), "--out", str(bench_dir), "--cache", cache,
               *(["--run", str(timed_run)] if have_run else sets), *common)
    bench = json.loads((bench_dir / "bench.json").read_text())
    for row in rows:
        m = bench["methods"][BENCH_KEY[row]]
        table["rows"][row]["seconds_per_image"] = {"conv": m["seconds_per_image"]["conv"],
                                                   "total": m["seconds_per_image"]["total"],
                                                   "proposals": m["seconds_per_image"]["proposals"],
                                                   "windows": m["windows_per_image"]}
    table["bench"] = {"images": len(bench["images"]), "threads": bench["threads"], "device": bench["device"]}
    (out / "table.json").write_text(json.dumps(table, indent=2))
    md = markdown(table)
    (out / "table.md").write_text(md)
    print(md)
    return 0


def _ap(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"  # None: no test objects of the class


def markdown(table: dict) -> str:
    cols = ["pool5", "pool5 + bb", "ftfc7", "ftfc7 + bb"]
    classes = sorted(next(iter(table["rows"].values()))["columns"]["pool5"]["AP"])
    lines = ["| method | " + " | ".join(cols) + " | " + " | ".join(f"{c} AP (ftfc7 + bb)" for c in classes)
             + " | conv s/img | total s/img | train min (pool5 / ftfc7) | test-set eval min (pool5) "
             "| peak GB (pool5 / ftfc7) |",
             "|---" * (len(cols) + len(classes) + 6) + "|"]
    for name, r in table["rows"].items():
        c, s, t = r["columns"], r["seconds_per_image"], r["train"]
        mins = " / ".join(f"{t[k]['train_s_excl_proposals'] / 60:.1f}" for k in ("pool5", "ftfc7"))
        test_s = t["pool5"].get("test_s_excl_proposals")
        test_min = "?" if not test_s else f"{test_s / 60:.1f}"  # absent where the evaluation was resumed
        mem = " / ".join(f"{t[k]['peak_rss_mb'] / 1024:.1f}" if t[k]["peak_rss_mb"] else "?" for k in ("pool5", "ftfc7"))
        lines.append(f"| {name} | " + " | ".join(f"{c[k]['mAP']:.3f}" for k in cols) + " | "
                     + " | ".join(_ap(c["ftfc7 + bb"]["AP"][k]) for k in classes)
                     + f" | {s['conv']:.3f} | {s['total']:.3f} | {mins} | {test_min} | {mem} |")
    lines.append("")
    if "R-CNN" in table["rows"]:
        ref = table["rows"]["R-CNN"]["columns"]
        for name in ("SPP-net 1-scale", "SPP-net 5-scale"):
            if name not in table["rows"]:
                continue
            for k in cols:
                d = table["rows"][name]["columns"][k]["mAP"] - ref[k]["mAP"]
                verdict = ("equal or better" if d >= 0 else "worse, within 0.01" if d >= -0.01
                           else "NOT within 0.01 of R-CNN (worse)")
                lines.append(f"- {name} vs R-CNN, {k}: {d:+.3f} mAP: {verdict}")
    b = table["bench"]
    lines.append(f"\nTrained on {table['train_split']}, tested on {table['test_split']} of {table['data']}. "
                 f"Seconds per image: median over {b['images']} bench images on {b['device']} "
                 f"({b['threads']} threads), selective search excluded, as in the paper. Train min: the "
                 "training's stages without selective search (cached once for all rows); a row's pool5 "
                 "run also computed its conv maps (R-CNN: window vectors), which its ftfc7 run reuses. "
                 "Test-set eval min: the pool5 run's evaluation after training (the test images' conv "
                 "maps or window vectors, and detection), selective search excluded. "
                 "Peak GB: the training process's peak resident memory.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
