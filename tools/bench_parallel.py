"""How sppdet scales with workers and machines (run it on a quiet machine).

    python tools/bench_parallel.py --data ../shared/data/bccd/BCCD --out runs/bench_parallel

Trains the default 1-scale SPP-net on trainval and evaluates on test, each from its own empty
cache in a fresh process: with 1 worker, with every core (``--workers`` = cores), and through a
local Ray cluster (skipped when Ray is not installed). Then times ``detect`` on a folder of test
images with 1 worker and every core. Prints per-stage times, speedups, a table of which stages
scale with workers and which stay serial, and the projected VOC07 time on N machines computed
from the measured per-stage costs (formula printed with it); writes everything to
``OUT/bench_parallel.json`` and ``OUT/bench_parallel.md``.

It calls the library functions the CLI runs: ``sppdet.train`` (``sppdet train --workers N`` /
``--ray local``), then ``CachedData.prepare`` and ``run_detection`` on the test split (as
``sppdet eval``, keeping the cache statistics), and ``detect_images`` (``sppdet detect --workers N``).
``--images N`` runs on the first N trainval images (and N/4 test images) for a quick check.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOC07 = {"trainval": 5011, "test": 4952, "classes": 20}


# -- children: one configuration each, in a fresh process ------------------------------------
def child_train(args) -> dict:
    import sppdet
    from sppdet.datasets import load_dataset
    from sppdet.detection import run_detection
    from sppdet.evaluation.voc import evaluate_voc
    from sppdet.parallel import make_executor
    from sppdet.runtime import configure

    configure()
    t_start = time.perf_counter()
    train = load_dataset(args.data, "trainval")
    test = load_dataset(args.data, "test", classes=train.classes)
    if args.images:
        train.records = train.records[: args.images]
        test.records = test.records[: max(1, args.images // 4)]
    timings: dict[str, float] = {}
    det = sppdet.train(train, args.run, overrides=args.set or (), cache=args.cache, overwrite=True,
                       timings=timings, workers=args.workers, ray=args.ray)
    log, cfg = det.train_log, det.cfg
    with make_executor(workers=args.workers, ray=args.ray) as ex:
        test_timings: dict[str, float] = {}
        data = det.cached_data(args.cache)  # with the run's proposal network, when it has one
        recs = data.prepare(test.records, test.report, test_timings, executor=ex)
        test_stats = data.last_stats
        t0 = time.perf_counter()
        dets = run_detection(det, recs, data, test.report)
        test_timings["detection"] = time.perf_counter() - t0
        res = evaluate_voc(recs, dets, train.classes, "voc07")
        kind, workers = ex.kind, ex.workers
    timings.update({f"test {k}": v for k, v in test_timings.items()})
    return {"executor": kind, "workers": workers, "wall_s": time.perf_counter() - t_start,
            "timings_s": timings, "mAP": res["mAP"], "train_images": len(train), "test_images": len(recs),
            "classes": len(train.classes), "cache_train": log["parallel"]["cache"], "cache_test": test_stats}


def child_detect(args) -> dict:
    from sppdet.detector import Detector
    from sppdet.images import is_image_file
    from sppdet.detection import detect_images
    from sppdet.parallel import make_executor
    from sppdet.runtime import configure

    configure()
    det = Detector.load(args.run, device="cpu")
    paths = sorted(p for p in Path(args.folder).iterdir() if is_image_file(p))[: args.detect_images]
    t0 = time.perf_counter()
    n = 0
    with make_executor(workers=args.workers) as ex:
        for res in detect_images(det, paths, ex):
            n += "error" not in res
        workers = ex.workers
    wall = time.perf_counter() - t0
    return {"workers": workers, "images": n, "wall_s": wall, "images_per_s": n / wall}


# -- the driver --------------------------------------------------------------------------------
def run_child(mode: str, extra: list[str], out: Path) -> dict:
    result = out / f"{mode}.json"
    cmd = [sys.executable, __file__, "--child", mode, "--result", str(result)] + extra
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env)
    return json.loads(result.read_text())


def stage_rows(r: dict) -> dict[str, float]:
    t = r["timings_s"]
    return {
        "proposals + conv (train)": t.get("proposals", 0) + t.get("conv", 0),
        "feature stats": t.get("feature stats", 0),
        "positives + bbox examples": t.get("positives + bbox examples", 0),
        "fine-tune fc": t.get("fine-tune fc", 0),
        "svm hard-negative mining": t.get("svm hard-negative mining", 0),
        "bbox regression": t.get("bbox regression", 0),
        "proposals + conv (test)": t.get("test proposals", 0) + t.get("test conv", 0),
        "detection (test, cached maps)": t.get("test detection", 0),
    }


SCALES = {  # how each stage runs: with the process pool / with Ray
    "proposals + conv (train)": ("workers (one task per image)", "cluster CPUs (GPU tasks for the conv)"),
    "feature stats": ("serial (driver)", "serial (driver)"),
    "positives + bbox examples": ("serial (driver)", "serial (driver)"),
    "fine-tune fc": ("serial (driver)", "serial (driver)"),
    "svm hard-negative mining": ("serial (driver; per-class tasks measured slower on 2 cores)",
                                 "one task per class (≤ 20 in parallel on VOC)"),
    "bbox regression": ("serial (driver)", "one task per class"),
    "proposals + conv (test)": ("workers (one task per image)", "cluster CPUs"),
    "detection (test, cached maps)": ("serial (driver)", "serial (driver)"),
}


def projection(ref: dict, cores: int, machines=(1, 2, 4, 8, 16, 32)) -> tuple[list[dict], str]:
    """VOC07 hours on N machines of ``cores`` cores each, from the 1-worker run's costs."""
    t = ref["timings_s"]
    ct, cs = ref["cache_train"], ref["cache_test"]
    busy = {k: ct["busy_s"][k] + cs["busy_s"][k] for k in ct["busy_s"]}
    n_cached = max(1, ct["computed"] + cs["computed"])
    a = sum(busy.values()) / n_cached  # one core's seconds per image: decode + proposals + conv
    n_tr, n_te = ref["train_images"], ref["test_images"]
    serial_per_img = t.get("positives + bbox examples", 0) / n_tr
    det_per_img = t.get("test detection", 0) / max(1, n_te)
    mine_per_class_img = t.get("svm hard-negative mining", 0) / n_tr / ref["classes"]
    fixed = t.get("feature stats", 0) + t.get("bbox regression", 0)
    n_img = VOC07["trainval"] + VOC07["test"]
    rows = []
    for n in machines:
        slots = n * cores
        cache = n_img * a / slots
        driver = VOC07["trainval"] * serial_per_img + VOC07["test"] * det_per_img + fixed
        mining = math.ceil(VOC07["classes"] / slots) * mine_per_class_img * VOC07["trainval"]
        if n == 1:  # one machine runs the classes together in the driver
            mining = mine_per_class_img * VOC07["trainval"] * VOC07["classes"]
        rows.append({"machines": n, "cores": slots, "cache_h": cache / 3600, "driver_h": driver / 3600,
                     "mining_h": mining / 3600, "total_h": (cache + driver + mining) / 3600})
    formula = (f"T(N) = I·a/(N·k) + I_tr·p + I_te·d + ⌈20/(N·k)⌉·m·I_tr (1 machine: 20·m·I_tr) + f, with "
               f"I = {n_img} VOC07 images (I_tr = {VOC07['trainval']}, I_te = {VOC07['test']}), k = {cores} "
               f"cores per machine, a = {a:.3f} s (one core's decode + proposals + conv per image), "
               f"p = {serial_per_img:.4f} s (positives per training image, driver), d = {det_per_img:.4f} s "
               f"(detection from cached maps per test image, driver), m = {mine_per_class_img:.4f} s "
               f"(SVM mining per class per training image), f = {fixed:.1f} s (feature stats, box regression); "
               "measured on the 1-worker run. Mining per class assumes the measured cost splits evenly "
               "over the classes; a VOC image has more windows and objects than a BCCD one, so read these "
               "as lower bounds of the same order, not predictions.")
    return rows, formula


def report(results: dict, cores: int) -> str:
    one = results["workers1"]
    lines = ["| stage | 1 worker (s) | " + f"{cores} workers (s) | speedup |"
             + (" local Ray (s) | Ray vs pool |" if "ray" in results else ""),
             "|---|---|---|---|" + ("---|---|" if "ray" in results else "")]
    r1, rn = stage_rows(one), stage_rows(results["workersN"])
    rr = stage_rows(results["ray"]) if "ray" in results else None
    for k in r1:
        if r1[k] == 0 and rn[k] == 0:
            continue
        row = f"| {k} | {r1[k]:.1f} | {rn[k]:.1f} | {r1[k] / max(rn[k], 1e-9):.2f}× |"
        if rr:
            row += f" {rr[k]:.1f} | {rr[k] / max(rn[k], 1e-9):.2f} |"
        lines.append(row)
    w1, wn = one["wall_s"], results["workersN"]["wall_s"]
    row = f"| **end to end** | {w1:.1f} | {wn:.1f} | **{w1 / wn:.2f}×** |"
    if rr:
        wr = results["ray"]["wall_s"]
        row += f" {wr:.1f} | {wr / wn:.2f} |"
    lines.append(row)
    lines.append("")
    lines.append("mAP: " + ", ".join(f"{k} {v['mAP']:.4f}" for k, v in results.items() if "mAP" in v))
    if "detect1" in results:
        d1, dn = results["detect1"], results["detectN"]
        lines += ["", "| detect | images | wall (s) | images/s | speedup |", "|---|---|---|---|---|",
                  f"| 1 worker | {d1['images']} | {d1['wall_s']:.1f} | {d1['images_per_s']:.2f} | 1.00× |",
                  f"| {dn['workers']} workers | {dn['images']} | {dn['wall_s']:.1f} | {dn['images_per_s']:.2f} | "
                  f"{dn['images_per_s'] / d1['images_per_s']:.2f}× |"]
    lines += ["", "| stage | process pool (`--workers`) | Ray (`--ray`) |", "|---|---|---|"]
    lines += [f"| {k} | {v[0]} | {v[1]} |" for k, v in SCALES.items()]
    rows, formula = projection(one, cores)
    lines += ["", f"Projected VOC07 (train + test) on N machines of {cores} cores:", "",
              "| machines | cores | proposals + conv (h) | driver stages (h) | SVM mining (h) | total (h) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['machines']} | {r['cores']} | {r['cache_h']:.2f} | {r['driver_h']:.2f} | {r['mining_h']:.2f} | "
              f"{r['total_h']:.2f} |" for r in rows]
    lines += ["", formula]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bccd" / "BCCD"))
    ap.add_argument("--out", default="runs/bench_parallel")
    ap.add_argument("--images", type=int, default=None, help="first N trainval images (N/4 test images)")
    ap.add_argument("--detect-images", type=int, default=36, help="test images for the detect timing")
    ap.add_argument("--workers", type=int, default=None, help="the 'all cores' count (default: available)")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    # internal: a child run
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--ray", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = (child_detect if args.child.startswith("detect") else child_train)(args)
        Path(args.result).write_text(json.dumps(res, indent=2))
        return 0

    from sppdet.runtime import available_cores

    cores = args.workers or available_cores()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # every configuration starts from an empty cache
    out.mkdir(parents=True)
    common = ["--data", args.data] + (["--images", str(args.images)] if args.images else []) + (
        ["--set", *args.set] if args.set else [])
    modes = {"workers1": ["--workers", "1"], "workersN": ["--workers", str(cores)]}
    if not args.no_ray:
        try:
            import ray  # noqa: F401

            modes["ray"] = ["--ray", "local"]
        except ImportError:
            print("Ray is not installed: skipping the Ray run (pip install 'sppdet[ray]')", file=sys.stderr)
    results = {}
    for mode, flags in modes.items():
        results[mode] = run_child(mode, common + flags + ["--cache", str(out / f"cache_{mode}"),
                                                        "--run", str(out / f"run_{mode}")], out)
    folder = Path(args.data) / "JPEGImages"
    test_ids = Path(args.data) / "ImageSets" / "Main" / "test.txt"
    if test_ids.is_file():  # a folder of test images only
        folder = out / "detect_images"
        folder.mkdir()
        for i in test_ids.read_text().split()[: args.detect_images]:
            src = Path(args.data) / "JPEGImages" / f"{i}.jpg"
            if src.is_file():
                os.symlink(src.resolve(), folder / src.name)
    for mode, w in (("detect1", 1), ("detectN", cores)):
        results[mode] = run_child(mode, ["--run", str(out / "run_workersN"), "--folder", str(folder),
                                         "--workers", str(w), "--detect-images", str(args.detect_images)], out)
    md = report(results, cores)
    (out / "bench_parallel.json").write_text(json.dumps({"cores": cores, "results": results}, indent=2))
    (out / "bench_parallel.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
