"""sppdet's Python API: what a notebook, a service and the ``sppdet`` command all call.

>>> import sppdet
>>> det = sppdet.load("runs/bccd")                    # a trained run directory
>>> r = det("photo.jpg")                               # or a PIL image, an array, a tensor, a list
>>> r.boxes, r.scores, r.labels, r.names               # numpy arrays + the class names
>>> metrics = sppdet.evaluate("runs/bccd", data="VOCdevkit/VOC2007", split="test")

Every function checks its inputs and output folders before any long work and raises
:class:`~sppdet.errors.UserError` with a one-line fix-it message for bad input. Messages for
the user go to the ``sppdet`` logger (the CLI prints them on stderr).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import TEST_TIME_KEYS, Config, load_config, override_config
from .arguments import (BOOL, CFG, CLASSES, CONFIG, DATA, DEVICE, ENGINE, EXECUTOR, FORMAT, INPUTS, METRIC,
                        NUMBER, OVERRIDES, PATH, RAY, RUN, RUNS, SIMILAR, SOURCES, SPLIT, THRESHOLD, TIMINGS, WORKERS,
                        checked, whole)
from .errors import UserError
from .parallel import make_executor as _make_executor
from .run_dir import (EVAL_PREFIX, TRAIN_LOG_FILE, eval_dir, is_trained_run, optional_file, remove_evals,
                      write_train_log)

log = logging.getLogger("sppdet")


@checked(workers=WORKERS.or_none(), ray=RAY.or_none())
def make_executor(workers: Any = None, ray: Any = None):
    """:func:`sppdet.parallel.make_executor` after checking the arguments by name."""
    return _make_executor(workers, ray)


def shipped_configs() -> dict[str, Path]:
    """The configs that come with sppdet, by name (``custom_small`` → its YAML file)."""
    here = Path(__file__).resolve().parent
    found: dict[str, Path] = {}
    for d in (here / "configs", here.parent / "configs"):
        for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            found.setdefault(f.stem, f)
    return found


@checked(config=CONFIG.or_none(), overrides=OVERRIDES)
def make_config(config: str | Path | Config | dict | None = None, overrides: Sequence[str] = (),
                **settings: Any) -> Config:
    """A validated :class:`~sppdet.config.Config`: defaults, then ``config`` (a YAML file, the
    name of a shipped config such as ``"custom_small"``, a nested ``dict`` or a ``Config``),
    then ``settings`` (``svm={"C": 0.01}``, ``seed=1``), then ``"key=value"`` ``overrides``."""
    overrides = list(overrides)
    if isinstance(config, Config):
        if settings:
            raise UserError("give settings either in a Config object or as keyword arguments, not both")
        return override_config(config, overrides, allowed=None)
    if isinstance(config, dict):
        tree = copy.deepcopy(config)
        for key, value in settings.items():  # keyword settings win, section by section
            if isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key] = {**tree[key], **value}
            else:
                tree[key] = value
        return load_config(None, overrides, tree)
    if config is not None and not Path(config).exists():
        shipped = shipped_configs()
        name = Path(config).stem if Path(config).suffix in (".yaml", ".yml") else str(config)
        if name in shipped and Path(config).parent == Path("."):
            config = shipped[name]
        else:
            raise UserError(f"config file not found: {config} (shipped configs: {', '.join(shipped) or 'none'})")
    return load_config(config, overrides, settings or None)


@checked(run=PATH, device=DEVICE.or_none(), weights=PATH.or_none(), engine=ENGINE.or_none())
def load(run: str | Path, device: str | None = None, weights: str | Path | None = None, engine: str | None = None):
    """A trained detector: a :class:`~sppdet.detector.Detector` from its run directory, or an
    exported ``model.onnx`` run by onnxruntime (:class:`~sppdet.onnx_engine.OnnxDetector`).
    Both are called the same way and return the same :class:`~sppdet.detector.Detections`.

    ``engine``: ``"torch"`` or ``"onnxruntime"``; default torch for a run directory, onnxruntime
    for a model file. A run directory with ``engine="onnxruntime"`` is exported in memory."""
    from .detector import Detector

    path = Path(run)
    engine = _engine(path, engine)
    if engine == "onnxruntime":
        from .onnx_engine import OnnxDetector, from_detector

        if device not in (None, "auto", "cpu"):
            raise UserError(f"the onnxruntime engine runs on the CPU; leave out device {device!r} (--device) or "
                            "use the torch engine on the run folder")
        if path.is_dir():
            return from_detector(Detector.load(path, device="cpu",
                                               weights=None if weights is None else str(weights)))
        if weights is not None:
            raise UserError(f"{path} holds its trunk's weights; weights= (--weights) applies to run folders only")
        return OnnxDetector(path)
    return Detector.load(path, device=device, weights=None if weights is None else str(weights))


def _is_detector(run) -> bool:
    """A loaded detector of either engine (the onnxruntime one only if its module is loaded)."""
    from .detector import Detector

    mod = sys.modules.get("sppdet.onnx_engine")
    return isinstance(run, Detector) or (mod is not None and isinstance(run, mod.OnnxDetector))


def _engine(path: Path, engine: str | None) -> str:
    """The engine for ``path``: a model file runs on onnxruntime, a run folder on torch unless told."""
    if path.is_file() or (not path.exists() and path.suffix.lower() == ".onnx"):
        if engine == "torch":
            raise UserError(f"{path} is a file (an exported model?); the torch engine runs run folders: use "
                            "--engine onnxruntime, or give the run folder")
        return "onnxruntime"
    return engine or "torch"


@checked(run=RUN, out=PATH, format=FORMAT, weights=PATH.or_none())
def export(run, out: str | Path, *, format: str = "onnx", weights: str | Path | None = None) -> Path:
    """Write a trained run (or :class:`~sppdet.detector.Detector`) as one ONNX graph, from the
    resized image to the calibrated detections (:mod:`sppdet.onnx_export`; the input contract
    is in the model's metadata and in ``sppdet export --help``). Returns the file's path."""
    from .detector import Detector
    from .onnx_export import export_onnx, require_onnx

    require_onnx()
    if not isinstance(run, Detector) and Path(run).is_file():
        raise UserError(f"{run} is a file; sppdet export takes a trained run folder")
    det = run if isinstance(run, Detector) else load(run, device="cpu", weights=weights, engine="torch")
    return export_onnx(det, Path(out))


@checked(data=DATA, split=SPLIT, cfg=CFG.or_none(), classes=CLASSES.or_none())
def load_data(data, split: str, cfg: Config | None = None, classes: Sequence[str] | None = None):
    """A data set in any supported layout (VOC devkit, labelImg folders, COCO JSON, YOLO), with
    its repairs summarised once on the ``sppdet`` logger. ``data`` may already be a data set."""
    from .datasets import DetectionDataset, load_dataset

    if isinstance(data, DetectionDataset):
        return data
    cfg = cfg or Config()
    ds = load_dataset(data, split, classes=list(classes) if classes else cfg.data.classes,
                      seed=cfg.data.split_seed, test_fraction=cfg.data.test_fraction,
                      min_box_size=cfg.data.min_box_size, exif_transpose=cfg.data.exif_transpose)
    if ds.report.counts:
        log.warning(ds.report.summary())
    log.info(f"split {split}: {len(ds)} images from {ds.source}")
    return ds


_CREATED: list[list[tuple[Path, Path]]] = []  # per public call: (--out folder, its first new ancestor)
_LOCKS: list[contextlib.ExitStack] = []  # per public call: the output folders' locks it holds


def _out_dir(path: str | Path, what: str = "--out", lock: bool = False) -> Path:
    """:func:`~sppdet.fileio.ensure_writable_dir`, remembering what it created so that a
    command that fails leaves no empty folder behind (see :func:`_tidy_outs`). With ``lock``,
    the folder's lock (:func:`~sppdet.locking.folder_lock`) is held until the call returns:
    a second command writing there is refused."""
    from .fileio import ensure_writable_dir
    from .locking import folder_lock

    top, q = None, Path(os.path.abspath(path))
    while not q.exists() and q != q.parent:
        top, q = q, q.parent
    out = ensure_writable_dir(path, what)
    if top is not None and _CREATED:
        _CREATED[-1].append((Path(os.path.abspath(out)), top))
    if lock and _LOCKS:
        _LOCKS[-1].enter_context(folder_lock(out, what))
    return out


def _tidy_outs(fn):
    """On failure, remove the output folders the call created while they are still empty;
    release the folders' locks the call took (:func:`_out_dir`) when it returns."""
    import functools

    from .locking import LOCK_NAME

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _CREATED.append([])
        _LOCKS.append(contextlib.ExitStack())
        try:
            return fn(*args, **kwargs)
        except BaseException:
            _LOCKS[-1].close()  # released first: an unused lock file is then tidied away too
            for leaf, top in reversed(_CREATED[-1]):
                d = leaf
                while True:
                    try:
                        lock = d / LOCK_NAME  # this call's own lock file does not make a folder worth keeping
                        if lock.is_file() and not lock.is_symlink() and [p.name for p in d.iterdir()] == [LOCK_NAME]:
                            lock.unlink()
                        d.rmdir()  # only an empty folder goes
                    except OSError:
                        break
                    if d == top:
                        break
                    d = d.parent
            raise
        finally:
            _CREATED.pop()
            _LOCKS.pop().close()
    return wrapper


def is_other_data(split: str | Path) -> bool:
    """Whether an evaluation ``split`` names another data set (a folder, a COCO .json or a YOLO
    data.yaml) rather than a split of the training data (a name or a .txt/.csv list file)."""
    p = Path(split)
    return p.is_dir() or (p.is_file() and p.suffix.lower() in (".json", ".yaml", ".yml"))


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_.") or "data"


def eval_folder_name(run_data, data, split: str) -> str:
    """The default evaluation folder's name in a run (:func:`~sppdet.run_dir.eval_dir`'s on the
    run's own training data; on another data set its name goes in too, so that two data sets'
    evaluations never share one folder)."""
    def where(d) -> str | None:
        return None if d is None or not isinstance(d, (str, Path)) else str(Path(d).resolve())

    split_name = "all" if is_other_data(split) else split
    if isinstance(data, (str, Path)) and where(data) != where(run_data):
        p = Path(data)
        tag = f"{p.parent.name}-{p.stem.strip('_')}" if p.is_file() else p.name
        split_name = f"{_slug(tag)}_{Path(split_name).stem}"
    return eval_dir(".", split_name).name


# What an evaluation writes into its folder: removed first, so that no file of an earlier
# evaluation (another data set, split or setting) is left beside this one's.
EVAL_OUTPUTS = ("metrics.json", "detections.json", "coco_results.json", "ground_truth_coco.json", "comp4",
                "plots", "analysis")


def _clear_eval_outputs(out_dir: Path) -> None:
    if not (out_dir / "metrics.json").is_file():
        return  # not an evaluation folder (or an interrupted first one): nothing of ours to clear
    stale = [out_dir / n for n in EVAL_OUTPUTS if (out_dir / n).exists()]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if stale:
        log.info(f"{out_dir}: the previous evaluation's files were removed ({', '.join(p.name for p in stale)})")


def default_cache() -> Path:
    from .cache import default_cache_root

    return default_cache_root()


@checked(cache=PATH.or_none())
def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache folder to use (``cache``, else :func:`default_cache`), created and checked writable."""
    from .fileio import ensure_writable_dir

    return ensure_writable_dir(cache if cache is not None else default_cache(), "cache folder")


@checked(data=DATA, out=PATH, config=CONFIG.or_none(), split=SPLIT, eval_split=SPLIT.or_none(),
         cache=PATH.or_none(), overwrite=BOOL, device=DEVICE.or_none(), overrides=OVERRIDES,
         timings=TIMINGS.or_none(), workers=WORKERS.or_none(), ray=RAY.or_none())
@_tidy_outs
def train(data, out: str | Path, config: str | Path | Config | dict | None = None, *, split: str = "trainval",
          eval_split: str | None = None, cache: str | Path | None = None, overwrite: bool = False,
          device: str | None = None, overrides: Sequence[str] = (), timings: dict | None = None,
          workers: int | None = None, ray: str | None = None, **settings: Any):
    """Train a detector on ``split`` of ``data`` and save it as the run directory ``out``.

    With ``eval_split``, evaluate it afterwards (VOC07 mAP, written to ``out/eval_<split>``):
    a split of ``data``, or another data set (a folder, COCO .json or data.yaml: all its images,
    written to ``out/eval_<data>_all``).
    ``workers`` processes (default: every core; 1: none) or a Ray cluster (``ray``: ``"auto"``,
    ``"local"`` or an address) compute the per-image work; the model is the same either way.
    Returns the :class:`~sppdet.detector.Detector`; its ``train_log`` holds timings, data
    problems and SVM statistics, and with ``eval_split`` its ``metrics`` what :func:`evaluate`
    returns.
    """
    from .fileio import describe_os_error
    from .locking import folder_lock, held_elsewhere

    cfg = make_config(config, overrides, **settings)
    if device:
        cfg.device = device
    out = Path(out)
    if is_trained_run(out) and not overwrite:
        hint = ""
        if eval_split and not (eval_dir(out, eval_split) / "metrics.json").is_file():
            hint = (f" (its evaluation on {eval_split} did not finish: run `sppdet eval {out} --data "
                    f"{getattr(data, 'name', data)} --split {eval_split}` to finish it)")
        raise UserError(f"{out} already holds a trained run{hint}; choose another --out or pass --overwrite "
                        "to train again")
    _out_dir(out, "--out")
    with folder_lock(out, "--out"):
        if overwrite:  # replacing the run removes its evaluations: none may be writing there
            busy = [e for e in sorted(out.glob(f"{EVAL_PREFIX}*")) if e.is_dir() and held_elsewhere(e)]
            if busy:
                raise UserError(f"an evaluation is writing to {busy[0]} right now; wait for it to finish before "
                                f"training into {out} again")
        det, train_log, out = _train_locked(data, out, cfg, split, eval_split, cache, overwrite, timings,
                                            workers, ray)
    det.train_log = train_log
    return det


def _train_locked(data, out: Path, cfg: Config, split: str, eval_split: str | None, cache, overwrite: bool,
                  timings: dict | None, workers, ray):
    from .fileio import describe_os_error
    from .training import train_detector

    cache_folder = cache_dir(cache)
    ds = load_data(data, split, cfg)
    # --eval-split: a split of the training data, or another data set (all its images)
    eval_data, eval_name = (eval_split, "all") if eval_split and is_other_data(eval_split) else (data, eval_split)
    test = load_data(eval_data, eval_name, cfg, classes=ds.classes) if eval_split else None  # checked up front
    source = data if isinstance(data, (str, Path)) else getattr(data, "name", data)  # a path, or a data set
    log.info(f"training on {len(ds)} images of {source} (split {split}), classes: {', '.join(ds.classes)}")
    timings = {} if timings is None else timings
    with make_executor(workers, ray) as ex:
        det, train_log = train_detector(cfg, ds, cache_folder, timings, executor=ex)
        train_log.update(data=str(source), split=split, data_problems=dict(ds.report.counts),
                         executor=repr(ex), cache_dir=str(cache_folder.resolve()), images_used=ds.source)
        out = _save_run(det, out, train_log, overwrite=overwrite, cache_dir=cache_folder)
        det.run_dir = out
        log.info(f"run saved to {out}")
        try:
            if test is not None:
                test_timings: dict[str, float] = {}
                finish = (f"the trained model is saved in {out}; finish the evaluation with `sppdet eval {out} "
                          f"--data {source} --split {eval_split}`")
                try:
                    metrics = evaluate(det, data=test, split=eval_name,
                                       out=out / eval_folder_name(data, eval_data, eval_split),
                                       cache=cache_folder, timings=test_timings, executor=ex)
                except KeyboardInterrupt:
                    raise UserInterrupt(f"interrupted during the evaluation; {finish}") from None
                except UserError as exc:
                    raise type(exc)(f"{exc}; {finish}") from None
                timings.update({f"test {k}": v for k, v in test_timings.items()})
                train_log["eval"] = {"split": eval_split, "mAP": metrics["mAP"], "AP": metrics["AP"]}
                det.metrics = metrics
        finally:  # written once, whether or not the evaluation finished
            train_log["timings_s"] = dict(timings)
            try:
                write_train_log(out, train_log)
            except OSError as exc:
                log.warning(f"the model in {out} is saved, but its train_log.json could not be written "
                            f"({describe_os_error(exc)})")
    return det, train_log, out


@checked(run=RUN.or_none(), data=DATA, split=SPLIT, detections=PATH.or_none(), out=PATH.or_none(), metric=METRIC,
         coco=BOOL, plots=BOOL, analyze=BOOL, similar=SIMILAR.or_none(), gallery=whole(0), cache=PATH.or_none(),
         device=DEVICE.or_none(), overrides=OVERRIDES, timings=TIMINGS.or_none(), workers=WORKERS.or_none(),
         ray=RAY.or_none(), executor=EXECUTOR.or_none())
@_tidy_outs
def evaluate(run=None, *, data, split: str = "test", detections: str | Path | None = None,
             out: str | Path | None = None, metric: str = "voc07", coco: bool = False, plots: bool = False,
             analyze: bool = False, similar: Sequence[Sequence[str]] | None = None, gallery: int = 12,
             cache: str | Path | None = None, device: str | None = None, overrides: Sequence[str] = (),
             timings: dict | None = None, workers: int | None = None, ray: str | None = None,
             executor=None) -> dict:
    """VOC AP (``metric`` voc07 or voc12) of a run (a directory or a loaded detector) or of a
    ``detections.json`` on ``split`` of ``data``; optionally COCO metrics and PR plots.

    Writes ``metrics.json``, ``detections.json``, ``coco_results.json`` and comp4 files to
    ``out`` (default ``RUN/eval_SPLIT`` on the run's training data, ``RUN/eval_DATA_SPLIT`` on
    another data set, or ``eval/`` beside the detections file), after removing what an earlier
    evaluation wrote there, and returns the metrics (the content of ``metrics.json``, which
    names the images used in ``data`` and ``split``). ``analyze`` adds ``out/analysis/``: the
    false-positive breakdown per class (``similar`` groups classes that count as look-alikes)
    and ``report.html`` with galleries of ``gallery`` false positives and misses per class.
    ``cache`` defaults to the folder the run was trained with (its train_log.json), when it exists.
    """
    from .evaluation.report import write_results
    from .evaluation.voc import evaluate_voc
    if (run is None) == (detections is None):
        raise UserError("give either a run (directory or detector) or a detections file")
    if detections is not None and overrides:
        raise UserError("--set has no effect on a detections file (it was computed already); leave it out, "
                        "or evaluate the run itself")
    if detections is not None:
        idle = [n for n, v in (("--device", device), ("--cache", cache), ("--workers", workers), ("--ray", ray))
                if v is not None]
        if idle:
            raise UserError(f"{', '.join(idle)} has no effect on a detections file (nothing is computed); leave "
                            "it out")
    if similar and not analyze:
        raise UserError("--similar only applies to the error analysis: add --analyze, or leave it out")
    timings = {} if timings is None else timings
    if run is not None:
        from .cache import CachedData
        from .detector import Detector, run_detection

        det = run if isinstance(run, Detector) else load(run, device=device)
        if overrides:
            det = copy.copy(det)  # the caller's detector keeps its own settings
            det.cfg = override_config(det.cfg, overrides, allowed=TEST_TIME_KEYS)
        if out is not None:
            out_dir = Path(out)
        elif det.run_dir is not None:
            out_dir = Path(det.run_dir) / eval_folder_name(_run_data(det), data, split)
        else:
            raise UserError("this detector has no run directory to write its evaluation to: give out=...")
        _out_dir(out_dir, "--out", lock=True)
        ds = load_data(data, split, det.cfg, classes=det.classes)
        if ds.report.unlisted:
            log.warning("objects of classes the model does not have (it had no training objects of them) are "
                        "left out of the metrics: " + ", ".join(f"{c} ({n})" for c, n in ds.report.unlisted.items()))
        cache_data = det.cached_data(cache_dir(cache if cache is not None else _run_cache(det)))
        with contextlib.nullcontext(executor) if executor is not None else make_executor(workers, ray) as ex:
            recs = cache_data.prepare(ds.records, ds.report, timings, executor=ex)
        t0 = time.perf_counter()
        dets = run_detection(det, recs, cache_data, ds.report)
        timings["detection"] = time.perf_counter() - t0
        classes = det.classes
        untrained = [c for c, u in zip(det.classes, det.untrained) if u]
    else:
        from .evaluation.detections import match_to_records, read_detections

        dets = read_detections(Path(detections))
        out_dir = Path(out) if out is not None else Path(detections).parent / "eval"
        _out_dir(out_dir, "--out", lock=True)
        ds = load_data(data, split)
        recs, classes = ds.records, ds.classes
        untrained = []
        dets, stray = match_to_records(dets, recs)
        if stray:
            log.warning(f"{stray} detections are for images outside split {split!r}; ignored")
        unknown = sorted({d["label"] for d in dets} - set(classes))
        if unknown:
            lower = {c.lower(): c for c in classes}
            hint = [f"{u!r} (did you mean {lower[u.lower()]!r}?)" if u.lower() in lower else repr(u) for u in unknown]
            log.warning(f"{sum(d['label'] not in classes for d in dets)} detections have labels the data set does "
                        f"not have, and score nothing: {', '.join(hint[:10])}{' …' if len(hint) > 10 else ''}; "
                        f"its classes are {', '.join(classes)}")
    if similar:
        unknown = sorted({c for group in similar for c in group} - set(classes))
        if unknown:
            raise UserError(f"--similar names classes the data set does not have: {', '.join(unknown)}")
    res = evaluate_voc(recs, dets, classes, metric, never_detected=untrained)
    coco_metrics = None
    if coco:
        from .evaluation.coco import evaluate_coco

        coco_metrics = evaluate_coco(recs, dets, classes, ds.category_ids)
    extra = {"data": ds.source, "split": str(split)}
    if run is not None and ds.report.unlisted:
        extra["not_in_model"] = dict(ds.report.unlisted)
    if untrained:
        import numpy as np

        trained_ap = [a for c, a in res["AP"].items() if c not in untrained and a is not None]
        extra["untrained"] = untrained
        extra["mAP_trained"] = float(np.mean(trained_ap)) if trained_ap else None
        log.warning(f"class{'es' if len(untrained) > 1 else ''} {', '.join(untrained)} had no training objects and "
                    f"{'are' if len(untrained) > 1 else 'is'} never detected: AP 0, counted in the mAP as the VOC "
                    "devkit counts a class without detections"
                    + (f"; the mAP of the trained classes is {extra['mAP_trained']:.4f}" if trained_ap else ""))
    try:
        # metrics.json is written last and means "the rest is there": an old one must not outlive
        # a failed rewrite of the files it describes
        _clear_eval_outputs(out_dir)
        (out_dir / "metrics.json").unlink(missing_ok=True)
        write_results(out_dir, res, dets, classes, split, len(recs), coco_metrics, plots, records=recs,
                      category_ids=ds.category_ids, extra=extra)
        log.info(f"metrics, detections, COCO results and comp4 files written to {out_dir}")
        if analyze:
            from .evaluation.analysis import analyze as analyze_errors

            analyze_errors(recs, dets, classes, out_dir / "analysis", max_gallery=gallery, metric=metric,
                           similar=[list(g) for g in similar] if similar else None, res=res)
            log.info(f"error analysis written to {out_dir / 'analysis' / 'report.html'}")
    except OSError as exc:
        from .fileio import describe_os_error

        raise UserError(f"cannot write the evaluation to {out_dir}: {describe_os_error(exc)}; free some space "
                        "and run it again (finished proposals and conv maps are kept in the cache)") from None
    metrics = json.loads((out_dir / "metrics.json").read_text())
    metrics["out"] = str(out_dir)
    return metrics


# -- detection over files --------------------------------------------------------------------
@checked(run=RUN, inputs=INPUTS, out=PATH, threshold=THRESHOLD.or_none(), paint=BOOL, exif_transpose=BOOL,
         device=DEVICE.or_none(), overwrite=BOOL, workers=WORKERS.or_none(), ray=RAY.or_none(), overrides=OVERRIDES,
         tile=whole(1).named("tile (--tile)").or_none(), overlap=NUMBER.named("overlap (--overlap)").or_none(),
         every=whole(1).named("every (--every)"),
         max_frames=whole(1).named("max_frames (--max-frames)").or_none(), sources=SOURCES, engine=ENGINE.or_none())
@_tidy_outs
def detect(run, inputs: Sequence[str | Path] | str | Path, out: str | Path, *,
           threshold: float | dict[str, float] | None = None, paint: bool = True, exif_transpose: bool = True,
           device: str | None = None, overwrite: bool = False, workers: int | None = None, ray: str | None = None,
           overrides: Sequence[str] = (), tile: int | None = None, overlap: float | None = None, every: int = 1,
           max_frames: int | None = None, sources: Sequence[str | int] = (), engine: str | None = None) -> dict:
    """Detect objects in image files, videos, folders of them and ``.txt`` lists of paths, and
    in ``sources`` (camera indices such as ``0``, or stream URLs and paths OpenCV opens).

    ``run``: a run folder, an exported ``model.onnx``, or a loaded detector; ``engine`` as
    :func:`load` takes it (``"onnxruntime"`` runs a run folder's graph, exported in memory).

    Image results are appended to ``out/detections.jsonl`` image by image (so an interruption
    keeps every finished image, and running the same call again continues where it stopped);
    at the end ``out/detections.json`` (a list of ``{"image", "label", "score", "bbox"}``,
    ``image`` being the path as given) is written atomically. Painted images keep each input's
    path relative to the inputs' common folder, so equal file names never collide.

    A video ``clip.mp4`` gives ``clip_det.jsonl`` (one JSON line per detected frame: ``frame``,
    ``time`` in seconds, ``boxes``, ``scores``, ``labels``) and, with ``paint``, the annotated
    ``clip_det.mp4``; ``every``: detect every N-th frame; ``max_frames``: at most that many
    detected frames per video or stream. A finished video is not detected again; one that was
    interrupted is detected again from its start (what it had written stays valid until then).
    Streams' outputs are named after the source and the time they started (never replaced).

    ``threshold``: a number, or per class (``{"RBC": 0.4, "WBC": 0.2}``, the classes not named
    keeping the run's ``test.score_thresh``, or the dict's ``"*"``). ``tile``: detect on
    overlapping ``tile``-pixel tiles (``overlap`` of a tile, default 0.25) and the whole image, merged
    (:mod:`sppdet.tiling`), for images much larger than the training scale.

    Returns ``{"images", "detections", "skipped": [messages], "out", "videos": [summaries],
    "frames"}``.
    """
    from .detector import Detector
    from .inputs import expand_inputs
    from .locking import folder_lock
    from .video import VIDEO_EXTENSIONS, is_video_file, parse_source

    det = run if _is_detector(run) else load(run, device=device, engine=engine)
    sources = [parse_source(str(s)) for s in sources]
    per_class, default = {}, threshold
    if isinstance(threshold, dict):  # per class; "*": the default for the classes not named
        per_class = dict(threshold)
        default = per_class.pop("*", None)
    if default is not None:
        if any(o.split("=", 1)[0].strip() == "test.score_thresh" for o in overrides):
            raise UserError("give the score threshold once: threshold (--threshold) or the override "
                            "test.score_thresh, not both")
    extra = list(overrides) + ([f"test.score_thresh={float(default)!r}"] if default is not None else [])
    if extra:
        det = copy.copy(det)
        det.cfg = override_config(det.cfg, extra, allowed=TEST_TIME_KEYS)
    thresholds = det.thresholds(per_class or None)  # names and ranges checked before any work
    if overlap is not None and tile is None:
        raise UserError("overlap (--overlap) only applies to tiles: add tile (--tile SIZE), or leave it out")
    tiling = det.tiling(tile, 0.25 if overlap is None else overlap)
    out = _out_dir(out, "--out")
    paths, skipped = expand_inputs(inputs, videos=True)
    if not paths and not sources:
        raise UserError("no input images or videos found" + (":\n  " + "\n  ".join(skipped) if skipped else
                                                             f" (videos: {', '.join(VIDEO_EXTENSIONS)})"))
    videos = [p for p in paths if is_video_file(p)]
    images = [p for p in paths if not is_video_file(p)]
    log.info(f"detecting in {len(images)} images" + (f", {len(videos)} videos" if videos else "")
             + (f", {len(sources)} streams" if sources else "")
             + (f" from {', '.join(map(str, inputs[:3]))}" if inputs else "")
             + (f" and {len(inputs) - 3} more inputs" if len(inputs) > 3 else "")
             + (f", on {tiling.size}-px tiles overlapping by {tiling.overlap:g}" if tiling else ""))
    with folder_lock(out, "--out"):
        return _detect_locked(det, paths, skipped, out, paint, exif_transpose, overwrite, workers, ray,
                              DetectMedia(thresholds, per_class, tiling, every, max_frames, sources))


@dataclass
class DetectMedia:
    """What :func:`detect` does beyond one pass over each image: per-class thresholds, tiles,
    videos' frame step and cap, streams."""

    thresholds: Any  # [C] numpy vector
    per_class: dict
    tiling: Any = None
    every: int = 1
    max_frames: int | None = None
    sources: list = field(default_factory=list)


def _detect_locked(det, paths: list[Path], skipped: list[str], out: Path, paint: bool, exif_transpose: bool,
                   overwrite: bool, workers, ray, media: DetectMedia) -> dict:
    import numpy as np

    from .fileio import atomic_write_json, describe_os_error
    from .images import ImageReadError, read_image
    from .inputs import output_names
    from .journal import DetectJournal, content_key, model_digest
    from .locking import check_plain_file
    from .detection import detect_images
    from .video import VideoJob, VideoReadError, is_video_file, source_name
    from .viz import paint as paint_image

    check_plain_file(out / "detections.json", "--out")
    videos = [p for p in paths if is_video_file(p)]
    images = [p for p in paths if not is_video_file(p)]
    names = output_names(paths)
    video_names = output_names(paths, "_det.mp4")
    line_names = output_names(paths, "_det.jsonl")
    cfg = det.cfg.to_dict()
    cfg.pop("device", None)  # the device changes no result
    cfg.get("backbone", {}).pop("weights", None)  # a path: the model digest covers the weights' sha256
    identity = {"model": model_digest(det), "config": cfg, "exif_transpose": exif_transpose}
    if media.per_class:  # only then: the journals of a plain detect stay those of earlier versions
        identity["class_thresholds"] = {c: float(t) for c, t in zip(det.classes, media.thresholds)
                                        if c in media.per_class}
    if media.tiling is not None:
        identity["tile"] = media.tiling.identity()
    journal = DetectJournal(out / "detections.jsonl", identity, det.classes, overwrite,
                            min_score=dict(zip(det.classes, media.thresholds.tolist())),
                            # tiles: the cap holds per pass, not per image
                            max_rows=det.cfg.test.max_per_image if media.tiling is None else 1 << 62)
    keys = {p: content_key(p) for p in paths}
    todo = [p for p in images if journal.result(str(p), keys[p]) is None]
    video_settings = {"every": media.every, "max_frames": media.max_frames}

    def video_done(p: Path) -> bool:
        e = journal.result(str(p), keys[p])
        if e is None or e["error"] is not None:
            return e is not None  # an unreadable video stays skipped until its file changes
        v = e.get("video") or {}
        return ({k: v.get(k) for k in video_settings} == video_settings and (out / line_names[p]).is_file()
                and (not paint or (e["painted"] == str(video_names[p]) and (out / video_names[p]).is_file())))

    todo_videos = [p for p in videos if not video_done(p)]
    if len(todo) + len(todo_videos) < len(paths):
        log.info(f"{len(paths) - len(todo) - len(todo_videos)} of {len(paths)} inputs already done in "
                 f"{journal.path}; continuing")

    def target(rel: Path, direct: bool = False) -> Path:
        """``out / rel``, its folder made; never through a link out of --out, nor, for a file
        written in place (``direct``: a video grows frame by frame), onto a link."""
        t = out / rel
        t.parent.mkdir(parents=True, exist_ok=True)
        if not Path(os.path.realpath(t.parent)).is_relative_to(os.path.realpath(out)):
            raise UserError(f"{t.parent} is a link out of --out {out}; sppdet does not write through "
                            "links: remove it or choose another --out")
        if direct:
            check_plain_file(t, "--out")
        return t

    def painted(p: Path, rows: list[dict], image=None) -> str | None:
        if not paint:
            return None
        target(names[p])
        if image is None:
            image = read_image(p, exif_transpose=exif_transpose)
        paint_image(image, np.array([r["bbox"] for r in rows]).reshape(-1, 4), [r["label"] for r in rows],
                    np.array([r["score"] for r in rows]), det.classes, out / names[p])
        return str(names[p])

    current: list[VideoJob] = []  # the video being detected, for the messages

    def kept() -> str:
        n = sum(journal.result(str(p), keys[p]) is not None for p in paths)
        what = "images and videos" if videos and images else "videos" if videos else "images"
        text = f"{n} of {len(paths)} {what} are done and kept in {journal.path}" if paths else "no files given"
        if current and not current[-1].finished:
            job = current[-1]
            text += (f"; {job.source}: the {job.frames_detected} frames detected so far are in {job.jsonl} (one "
                     "valid JSON line each)" + (f" and {job.video} (playable)" if job.video and job.frames_detected
                                                else "")
                     + (", and it is detected again from its start" if isinstance(job.source, Path) else ""))
        return text

    jobs: list[VideoJob] = []
    try:
        # a rerun with painting paints what an earlier run (--no-images, or interrupted) did not
        for p in images:
            e = journal.result(str(p), keys[p])
            if paint and e is not None and e["error"] is None and not (
                    e["painted"] == str(names[p]) and (out / names[p]).is_file()):
                try:
                    journal.add(str(p), keys[p], e["detections"], None, painted(p, e["detections"]))
                except ImageReadError:
                    todo.append(p)
        with make_executor(workers, ray) as ex:
            # proposals in the workers while this process runs the detector on the images before
            for res in detect_images(det, todo, ex, exif_transpose=exif_transpose, threshold=media.thresholds,
                                     tiling=media.tiling):
                p = res["path"]
                if "error" in res:
                    journal.add(str(p), keys[p], [], res["error"])
                    continue
                d = res["detections"]
                d.path = str(p)
                rows = d.to_list()
                journal.add(str(p), keys[p], rows, None, painted(p, rows, res["image"]))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        streams = [(s, Path(f"{source_name(s)}_{stamp}_det.jsonl"), Path(f"{source_name(s)}_{stamp}_det.mp4"))
                   for s in media.sources]
        for src, lines, video in [(p, line_names[p], video_names[p]) for p in todo_videos] + streams:
            job = VideoJob(det, src, target(lines, direct=True), target(video, direct=True) if paint else None,
                           media.every, media.max_frames, media.thresholds, media.tiling)
            current.append(job)
            try:
                job.run()
            except VideoReadError as exc:
                if isinstance(src, Path):
                    journal.add(str(src), keys[src], [], str(exc))
                else:
                    skipped.append(str(exc))
                continue
            for w in job.warnings:
                log.warning(w)
            jobs.append(job)
            if isinstance(src, Path):
                journal.add(str(src), keys[src], [], None, str(video_names[src]) if paint else None,
                            video={**video_settings, **job.summary(), "jsonl": str(line_names[src])})
    except KeyboardInterrupt:
        raise UserInterrupt(f"{kept()}; run the same command again to continue") from None
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {describe_os_error(exc)}; {kept()}: free some space and "
                        "run the same command again to continue") from None
    finally:
        journal.close()
    entries = [journal.result(str(p), keys[p]) for p in images]
    rows = [row for e in entries if e is not None for row in e["detections"]]
    # unreadable images and videos, of this run and of the runs it continues (the journal keeps their errors)
    skipped += [e["error"] for e in entries + [journal.result(str(p), keys[p]) for p in videos]
                if e is not None and e["error"]]
    try:
        atomic_write_json(out / "detections.json", rows, indent=1)
    except OSError as exc:
        raise UserError(f"cannot write {out / 'detections.json'}: {describe_os_error(exc)}; every image is "
                        f"done and kept in {journal.path}: free some space and run the same command again") from None
    summaries = []
    for p in videos:  # finished now or before
        e = journal.result(str(p), keys[p])
        if e is not None and e["error"] is None and e.get("video"):
            summaries.append({**e["video"], "source": str(p), "jsonl": str(out / line_names[p]),
                              "video": str(out / video_names[p]) if e["painted"] else None})
    summaries += [j.summary() for j in jobs if not isinstance(j.source, Path)]
    return {"images": len(images), "detections": len(rows), "skipped": skipped, "out": str(out),
            "videos": summaries, "frames": sum(v["frames_detected"] for v in summaries)}


class UserInterrupt(UserError):
    """Ctrl-C during long work: the message says what was kept and how to resume."""

    exit_code = 130


@checked(data=DATA, split=SPLIT, out=PATH, config=CONFIG.or_none(), overrides=OVERRIDES, cache=PATH.or_none(),
         workers=WORKERS.or_none(), ray=RAY.or_none(), runs=RUNS.or_none(), configured=BOOL)
@_tidy_outs
def proposal_recall(data, split: str = "test", *, out: str | Path, config: str | Path | Config | None = None,
                    overrides: Sequence[str] = (), cache: str | Path | None = None, workers: int | None = None,
                    ray: str | None = None, runs: Sequence = (), configured: bool = True, **settings: Any) -> dict:
    """How good proposals are on ``split``, before any training of the SVMs: recall at IoU
    0.5 and 0.7 per class (a ceiling on AP), mean best IoU, windows and seconds per image, and
    a recall-versus-windows curve. Writes ``proposals.json`` and ``proposal_recall.png`` to
    ``out`` and returns the JSON's content.

    ``runs``: trained runs (directories or detectors) whose own proposal method (e.g. their
    proposal network) is measured too, side by side with the configured method (unless
    ``configured=False``): each method's results go to ``out/<name>/`` and the comparison to
    ``out/comparison.md`` (recall at 100/300/1,000/2,000 windows); the return value is then
    ``{"methods": {name: result}, "comparison": markdown}``.

    ``seconds_per_image`` is the method's own time per image on one core (selective search:
    so it does not depend on ``workers``; the proposal network: beyond the trunk), over the
    images computed now; ``None`` when all were cached.
    """
    from .cache import CachedData
    from .evaluation.proposals import compare_proposals, evaluate_proposals

    runs = runs or []
    cfg = make_config(config, overrides, **settings)
    if cfg.proposals.method == "rpn" and configured:
        raise UserError("a proposal network is measured from the run it was trained in: give the run "
                        "(--run RUN), not proposals.method=rpn")
    if not runs and not configured:
        raise UserError("nothing to measure: give a run, or keep the configured proposals")
    out = _out_dir(out, "--out", lock=True)
    ds = load_data(data, split, cfg)
    results: dict[str, dict] = {}
    with make_executor(workers, ray) as ex:
        if configured:
            name = cfg.proposals.method if cfg.proposals.method == "external" else \
                f"selective_search ({cfg.proposals.mode})"  # auto: what it is before a training
            cache_data = CachedData(cfg, None, cache_dir(cache))
            recs = cache_data.prepare(ds.records, ds.report, {}, features=False, executor=ex)
            stats = cache_data.last_stats
            per_image = stats["busy_s"]["proposals"] / stats["computed"] if stats.get("computed") else None
            results[name] = evaluate_proposals(recs, cache_data.proposals_for, ds.classes, out / "configured" if runs else out,
                                               seconds_per_image=per_image)
        for i, run in enumerate(runs):
            det = load(run)
            name = f"{det.cfg.proposals.method} ({Path(det.run_dir).name if det.run_dir else i})"
            cache_data = det.cached_data(cache_dir(cache if cache is not None else _run_cache(det)))
            recs = cache_data.prepare(ds.records, ds.report, {}, executor=ex)
            if cache_data.proposals_from_maps:  # proposed here, after the maps: time the network alone
                boxes = {id(r): cache_data.proposals_for(r, cache_data.maps(r)) for r in recs}
                pc = cache_data.proposals
                per_image = pc.busy_s / pc.computed if pc.computed else None
            else:  # proposed by the caching tasks, from the pixels
                boxes = {id(r): cache_data.proposals_for(r) for r in recs}
                stats = cache_data.last_stats
                per_image = stats["busy_s"]["proposals"] / stats["computed"] if stats.get("computed") else None
            results[name] = evaluate_proposals(recs, lambda r: boxes[id(r)], ds.classes,
                                               out / f"run{i}_{Path(str(det.run_dir)).name}", seconds_per_image=per_image)
    if not runs:
        return results[next(iter(results))]
    return {"methods": results, "comparison": compare_proposals(results, out)}


# -- SPP image classification (sppdet train-cls / classify / eval-cls) -------------------------
def train_classifier(data, out: str | Path, *, split: str = "trainval", max_per_class: int | None = None,
                     seed: int = 0, device: str | None = None, **settings: Any):
    """Train an SPP image classifier on ``split`` of ``data`` (an ImageFolder, or a detection data
    set whose objects are cropped) and save it in ``out``. ``settings`` are
    :class:`~sppdet.classification.ClsConfig` fields (``levels``, ``sizes``, ``epochs``, ...).
    Returns ``(model, classes)``."""
    from .classification import ClsConfig, load_cls_data
    from .classification import train_classifier as fit

    cfg = ClsConfig(seed=seed, device=device or "auto", **settings)
    samples, classes = load_cls_data(data, split, max_per_class=max_per_class, seed=seed)
    log.info(f"training an SPP classifier on {len(samples)} images, {len(classes)} classes, sizes {cfg.sizes}")
    return fit(samples, classes, cfg, Path(out)), classes


def classify(run: str | Path, inputs: Sequence[str | Path] | str | Path, *, mode: str = "10view+full",
             size: int = 224, top_k: int = 5, exif_transpose: bool = True, device: str | None = None) -> dict:
    """Top-``top_k`` classes of image files, folders and ``.txt`` lists with the classifier run
    ``run``. Returns ``{"results": [{"image", "top": [(class, probability), ...]} or {"image",
    "error"}], "skipped": [messages for inputs that are not images]}``."""
    from .classification import load_classifier, predict
    from .images import ImageReadError, read_image
    from .inputs import expand_inputs

    model, classes = load_classifier(run, device)
    paths, skipped = expand_inputs([inputs] if isinstance(inputs, (str, Path)) else list(inputs))
    results = []
    for p in paths:
        try:
            img = read_image(p, exif_transpose=exif_transpose)
        except ImageReadError as exc:
            results.append({"image": str(p), "error": str(exc)})
            continue
        probs = predict(model, img, mode, size)
        top = probs.argsort()[::-1][:top_k]
        results.append({"image": str(p), "top": [(classes[i], float(probs[i])) for i in top]})
    return {"results": results, "skipped": skipped}


def evaluate_classifier(run: str | Path, data, *, split: str = "test", modes: Sequence[str] | None = None,
                        size: int = 224, max_per_class: int | None = None, seed: int = 0,
                        device: str | None = None, out: str | Path | None = None) -> dict:
    """Top-1/top-5 error of the classifier run ``run`` on ``split`` of ``data`` per test mode
    (default: all), written as JSON to ``out`` when given. Returns ``{"errors": {mode:
    {"top1_error", "top5_error"}}, "images", "classes"}``."""
    from .classification import MODES, load_classifier, load_cls_data
    from .classification import evaluate_classifier as score

    model, classes = load_classifier(run, device)
    samples, _ = load_cls_data(data, split, classes=classes, max_per_class=max_per_class, seed=seed)
    res = score(model, samples, modes or MODES, size)
    if out:
        from .fileio import atomic_write_json

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, res)
    return {"errors": res, "images": len(samples), "classes": len(classes)}


def summarize_timings(timings: dict[str, float]) -> str:
    if not timings:
        return ""
    lines = ["stage timings:"] + [f"  {k:<28s} {v:8.1f} s" for k, v in timings.items()]
    lines.append(f"  {'total':<28s} {sum(timings.values()):8.1f} s")
    return "\n".join(lines)


@checked(data=DATA, split=SPLIT, images=whole(1).named("images (--images)"),
         rcnn_images=whole(1).named("rcnn_images (--rcnn-images)").or_none(), out=PATH, run=RUN.or_none(),
         config=CONFIG.or_none(), overrides=OVERRIDES, cache=PATH.or_none(), device=DEVICE.or_none(),
         workers=WORKERS.or_none(), ray=RAY.or_none())
@_tidy_outs
def bench(data, split: str = "test", *, images: int = 5, rcnn_images: int | None = None, out: str | Path,
          run=None, config: str | Path | None = None, overrides: Sequence[str] = (),
          cache: str | Path | None = None, device: str | None = None, workers: int | None = None,
          ray: str | None = None) -> dict:
    """R-CNN vs SPP-net 1-scale vs 5-scale on the same images and proposals (``bench.json``,
    ``bench.md``, ``bench.png`` in ``out``); with ``run``, also that run's mAP on the split."""
    from .benchmark import run_bench
    from .detector import Detector
    from .features import resolve_device
    from .fileio import atomic_write_json

    det = None
    if run is not None:
        if config is not None:
            raise UserError("give either a run (its config is used) or --config, not both")
        det = run if isinstance(run, Detector) else load(run, device=device)
        # test-time keys and the proposals to time on; the model stays as trained
        cfg = override_config(det.cfg, overrides, allowed=TEST_TIME_KEYS + ("proposals.",))
        det = copy.copy(det)  # timed and scored with the same settings
        det.cfg = cfg
    else:
        cfg = make_config(config, overrides)
    out = _out_dir(out, "--out", lock=True)
    ds = load_data(data, split, cfg, classes=det.classes if det else None)
    recs = ds.records[:images]
    with make_executor(workers, ray) as ex:
        res = run_bench(cfg, [r.path for r in recs], resolve_device(device or cfg.device), out, run=det,
                        rcnn_images=rcnn_images, executor=ex, exif_transpose=any(r.exif_transpose for r in recs))
        if det is not None:
            metrics = evaluate(det, data=ds, split=split, out=eval_dir(out, split), cache=cache,
                               executor=ex)
            key = det.cfg.method + ("" if det.cfg.method == "rcnn" else f"-{len(det.cfg.features.scales)}scale")
            res["mAP"] = {key: metrics["mAP"]}
            res["mAP_images"] = metrics["images"]
            atomic_write_json(out / "bench.json", res)
    return res


def _run_cache(det) -> Path | None:
    """The cache folder a run was trained with (train_log.json's ``cache_dir``) while it
    exists: its proposals and conv maps serve the evaluation too. None: the default cache."""
    d = _run_log(det).get("cache_dir")
    return Path(d) if isinstance(d, str) and Path(d).is_dir() else None


def _run_data(det) -> str | None:
    """The data a run was trained on, as its train_log.json records it."""
    return _run_log(det).get("data")


def _run_log(det) -> dict:
    log_ = det.train_log
    if log_ is None and det.run_dir is not None:
        f = optional_file(det.run_dir, TRAIN_LOG_FILE)
        try:
            log_ = json.loads(f.read_text()) if f is not None else {}
        except (OSError, ValueError):
            return {}
    return log_ if isinstance(log_, dict) else {}


def _save_run(det, out: Path, train_log: dict, overwrite: bool = False, cache_dir: Path | None = None) -> Path:
    """Save a freshly trained run; never lose it to an unwritable or full ``out``.

    Replacing a run removes its ``eval_*`` folders, which describe the old model. If writing
    fails, the run goes to a new folder under the system's temporary directory, else under the
    cache folder, and the error says where (or, if nothing could be written, exactly that).
    ``train_log`` is written by the caller once training and evaluation are done, except to the
    rescue folder, which gets it at once.
    """
    import tempfile

    from .fileio import describe_os_error

    try:
        if overwrite:
            remove_evals(out)
        det.save(out)
        return out
    except OSError as exc:
        failures = [f"{out} ({describe_os_error(exc)})"]
    places = [Path(tempfile.gettempdir())] + ([Path(cache_dir) / "rescued-runs"] if cache_dir is not None else [])
    for place in places:
        rescue = None
        try:
            place.mkdir(parents=True, exist_ok=True)
            rescue = Path(tempfile.mkdtemp(prefix="sppdet-run-", dir=place))
            det.save(rescue, train_log)
        except OSError as exc2:
            failures.append(f"{rescue or place} ({describe_os_error(exc2)})")
            if rescue is not None:
                shutil.rmtree(rescue, ignore_errors=True)
            continue
        raise UserError(f"could not save the trained run to {failures[0]}; it was saved to {rescue} instead: "
                        "move that folder where you want it") from None
    raise UserError(f"the trained model could not be saved anywhere: {'; '.join(failures)}. Nothing of the "
                    "model was kept; the proposal and conv-map caches are, so after freeing some disk space "
                    "the same command trains again quicker") from None
