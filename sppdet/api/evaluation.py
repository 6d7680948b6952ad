"""``sppdet eval``: a run (or a detections file) scored on a split, its outputs and report."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Sequence

from ..config import TEST_TIME_KEYS, override_config
from ..arguments import (BOOL, DATA, DEVICE, EXECUTOR, METRIC, OVERRIDES, PATH, RAY, RUN, SIMILAR, SPLIT, TIMINGS, WORKERS, checked, whole)
from ..errors import UserError
from ..run_dir import eval_dir

from .setup import _out_dir, _run_cache, _run_data, _slug, _tidy_outs, cache_dir, is_other_data, load, load_data, make_executor

log = logging.getLogger("sppdet")


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
    from ..evaluation.report import write_results
    from ..evaluation.voc import evaluate_voc
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
        from ..cache import CachedData
        from ..detection import run_detection
        from ..detector import Detector

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
        from ..evaluation.detections import match_to_records, read_detections

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
        from ..evaluation.coco import evaluate_coco

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
            from ..evaluation.analysis import analyze as analyze_errors

            analyze_errors(recs, dets, classes, out_dir / "analysis", max_gallery=gallery, metric=metric,
                           similar=[list(g) for g in similar] if similar else None, res=res)
            log.info(f"error analysis written to {out_dir / 'analysis' / 'report.html'}")
    except OSError as exc:
        from ..fileio import describe_os_error

        raise UserError(f"cannot write the evaluation to {out_dir}: {describe_os_error(exc)}; free some space "
                        "and run it again (finished proposals and conv maps are kept in the cache)") from None
    metrics = json.loads((out_dir / "metrics.json").read_text())
    metrics["out"] = str(out_dir)
    return metrics
