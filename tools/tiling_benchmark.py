"""Whole-image against tiled detection on large canvases made of real test images pasted small.

Each canvas (``--canvas`` px square) holds ``--per-canvas`` images of the split, shrunk by
``--paste-scale`` and placed at random in a grid of cells on a background of their mean colour;
their objects, shrunk alike, are the canvas's ground truth (written as a VOC devkit in
``OUT/canvases``). A detector trained at 688 px sees a 4000-px canvas at 1/6 of its size, so
the pasted objects shrink below what it learned; a tile is rescaled to the training scale on
its own. Reported per setting: VOC07 AP per class, recall at IoU 0.5 at the run's score
threshold and over every score, and seconds per canvas.

    python tools/tiling_benchmark.py --run runs/bccd --data ../shared/data/bccd/BCCD --split test --out runs/tiling
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def build_canvases(records, out: Path, canvas: int, paste_scale: float, per_canvas: int, seed: int = 0) -> Path:
    """Write the canvases as a VOC devkit under ``out`` (split ``test``: every canvas); returns ``out``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / d).mkdir(parents=True, exist_ok=True)
    grid = math.ceil(math.sqrt(per_canvas))
    cell = canvas // grid
    ids = []
    for c in range(math.ceil(len(records) / per_canvas)):
        group = records[c * per_canvas:(c + 1) * per_canvas]
        crops = []
        for r in group:
            img = Image.fromarray(r.read())
            w, h = max(1, round(img.width * paste_scale)), max(1, round(img.height * paste_scale))
            if w > cell or h > cell:
                raise SystemExit(f"a pasted image ({w}x{h}) does not fit a {cell}-px cell: lower --per-canvas "
                                 "or --paste-scale, or raise --canvas")
            crops.append((r, img.resize((w, h), Image.BILINEAR)))
        fill = tuple(int(v) for v in np.mean([np.asarray(im).reshape(-1, 3).mean(0) for _, im in crops], 0))
        board = Image.new("RGB", (canvas, canvas), fill)
        objects = []
        for k, (r, im) in enumerate(crops):
            gx, gy = k % grid, k // grid
            ox = gx * cell + int(rng.integers(0, cell - im.width + 1))
            oy = gy * cell + int(rng.integers(0, cell - im.height + 1))
            board.paste(im, (ox, oy))
            sx, sy = im.width / r.width, im.height / r.height
            for (x1, y1, x2, y2), lab, dif in zip(r.boxes, r.labels, r.difficult):
                # inclusive pixels: the far edge is x2 + 1 in continuous coordinates
                objects.append((lab, [ox + x1 * sx, oy + y1 * sy, ox + (x2 + 1) * sx - 1, oy + (y2 + 1) * sy - 1],
                                bool(dif)))
        image_id = f"canvas{c:03d}"
        board.save(out / "JPEGImages" / f"{image_id}.jpg", quality=95)
        xml = [f"<annotation><filename>{image_id}.jpg</filename><size><width>{canvas}</width>"
               f"<height>{canvas}</height><depth>3</depth></size>"]
        for lab, (x1, y1, x2, y2), dif in objects:
            xml.append(f"<object><name>{lab}</name><difficult>{int(dif)}</difficult><bndbox>"
                       f"<xmin>{round(x1) + 1}</xmin><ymin>{round(y1) + 1}</ymin><xmax>{round(x2) + 1}</xmax>"
                       f"<ymax>{round(y2) + 1}</ymax></bndbox></object>")
        (out / "Annotations" / f"{image_id}.xml").write_text("\n".join(xml + ["</annotation>\n"]))
        ids.append(image_id)
    (out / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in ids))
    return out


def recall_at(gt, dets, least: float) -> float | None:
    """Recall at IoU 0.5 of the detections scoring above ``least`` (VOC matching)."""
    from sppdet.evaluation.voc import eval_class

    rec, _, ap, npos = eval_class(gt, [d for d in dets if d[1] > least])
    if npos == 0:
        return None
    return float(rec[-1]) if len(rec) else 0.0


def measure(det, ds, settings: dict, threshold: float) -> dict:
    """Per setting (name → ``det(...)`` keyword arguments): AP per class, mAP, recall at the
    threshold and over every score, seconds per canvas."""
    from sppdet.evaluation.voc import detections_by_class, evaluate_voc, ground_truth_by_class

    gt = ground_truth_by_class(ds.records, det.classes)
    floor = 0.0 if det.calibrated else -1.0  # every window above the margin floor, as eval keeps
    out = {}
    for name, kw in settings.items():
        rows, t0 = [], time.perf_counter()
        for r in ds.records:
            rows += det(r.read(), threshold=floor, **kw).to_list(r.path.name)
        seconds = (time.perf_counter() - t0) / len(ds.records)
        res = evaluate_voc(ds.records, rows, det.classes)
        by_class = detections_by_class(rows, det.classes)
        out[name] = {"mAP": res["mAP"], "AP": res["AP"], "npos": res["npos"], "seconds_per_canvas": seconds,
                     f"recall@{threshold:g}": {c: recall_at(gt[c], by_class[c], threshold) for c in det.classes},
                     "recall_any_score": {c: recall_at(gt[c], by_class[c], -math.inf) for c in det.classes},
                     "detections_above_threshold": sum(row["score"] > threshold for row in rows)}
        print(f"{name}: mAP {res['mAP']:.3f}, {seconds:.1f} s per canvas", file=sys.stderr)
    return out


def table(results: dict, classes, threshold: float) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    key = f"recall@{threshold:g}"
    lines = ["| setting | mAP | " + " | ".join(f"AP {c}" for c in classes) + " | "
             + " | ".join(f"recall {c} (score > {threshold:g} / any)" for c in classes) + " | s per canvas |",
             "|---|---|" + "---|" * (2 * len(classes)) + "---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {f(r['mAP'])} | " + " | ".join(f(r["AP"][c]) for c in classes) + " | "
                     + " | ".join(f"{f(r[key][c])} / {f(r['recall_any_score'][c])}" for c in classes)
                     + f" | {r['seconds_per_canvas']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import sppdet
    from sppdet.errors import report_errors

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--canvas", type=int, default=4000, help="canvas side, pixels (default 4000)")
    p.add_argument("--paste-scale", type=float, default=0.4, help="each image shrunk by this (default 0.4)")
    p.add_argument("--per-canvas", type=int, default=36, help="images per canvas (default 36: a 6x6 grid)")
    p.add_argument("--images", type=int, default=None, help="use only the first N images of the split")
    p.add_argument("--tile", type=int, nargs="+", default=[400], help="tile sizes to measure (default 400)")
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    def run() -> int:
        det = sppdet.load(a.run)
        ds = sppdet.load_data(a.data, a.split, det.cfg, classes=det.classes)
        recs = ds.records[: a.images] if a.images else ds.records
        out = Path(a.out)
        canvases = sppdet.load_data(build_canvases(recs, out / "canvases", a.canvas, a.paste_scale, a.per_canvas,
                                                   a.seed), "test", det.cfg, classes=det.classes)
        settings = {"whole image": {}}
        for t in a.tile:
            for drop in (False, True):
                settings[f"tiles {t} px, overlap {a.overlap:g}, border boxes {'dropped' if drop else 'kept'}"] = {
                    "tile": det.tiling(t, a.overlap, drop_border=drop)}
        threshold = float(det.cfg.test.score_thresh)
        results = measure(det, canvases, settings, threshold)
        md = (f"{len(canvases)} canvases of {a.canvas} px, {len(recs)} images of {a.data} ({a.split}) pasted at "
              f"{a.paste_scale:g} scale, {a.per_canvas} per canvas; run {a.run} (features.scales "
              f"{det.cfg.features.scales})\n\n" + table(results, det.classes, threshold))
        print(md)
        (out / "tiling_benchmark.md").write_text(md)
        (out / "tiling_benchmark.json").write_text(json.dumps({"args": vars(a), "results": results}, indent=1))
        return 0

    return report_errors("tiling_benchmark", run, "interrupted: nothing was measured")


if __name__ == "__main__":
    sys.exit(main())
