"""``sppdet train``: a run trained, saved atomically, then evaluated if asked."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from ..config import Config
from ..arguments import (BOOL, CONFIG, DATA, DEVICE, OVERRIDES, PATH, RAY, SPLIT, TIMINGS, WORKERS, checked)
from ..errors import UserError
from ..run_dir import EVAL_PREFIX, eval_dir, is_trained_run, remove_evals, write_train_log

from .setup import UserInterrupt, _out_dir, _tidy_outs, cache_dir, is_other_data, load_data, make_config, make_executor
from .evaluation import eval_folder_name, evaluate

log = logging.getLogger("sppdet")


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
    from ..fileio import describe_os_error
    from ..locking import folder_lock, held_elsewhere

    cfg = make_config(config, overrides, **settings)
    if device:
        cfg = dataclasses.replace(cfg, device=device)
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
    from ..fileio import describe_os_error
    from ..training import train_detector

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


def _save_run(det, out: Path, train_log: dict, overwrite: bool = False, cache_dir: Path | None = None) -> Path:
    """Save a freshly trained run; never lose it to an unwritable or full ``out``.

    Replacing a run removes its ``eval_*`` folders, which describe the old model. If writing
    fails, the run goes to a new folder under the system's temporary directory, else under the
    cache folder, and the error says where (or, if nothing could be written, exactly that).
    ``train_log`` is written by the caller once training and evaluation are done, except to the
    rescue folder, which gets it at once.
    """
    import tempfile

    from ..fileio import describe_os_error

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
