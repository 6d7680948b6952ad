"""``sppdet proposals`` and ``sppdet bench``: proposal recall and SPP-net/R-CNN timings."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Sequence

from ..config import TEST_TIME_KEYS, Config, override_config
from ..arguments import (BOOL, CONFIG, DATA, DEVICE, OVERRIDES, PATH, RAY, RUN, RUNS, SPLIT, WORKERS, checked, whole)
from ..errors import UserError
from ..run_dir import eval_dir

from .setup import _out_dir, _run_cache, _tidy_outs, cache_dir, load, load_data, make_config, make_executor
from .evaluation import evaluate

log = logging.getLogger("sppdet")


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
    from ..cache import CachedData
    from ..evaluation.proposals import compare_proposals, evaluate_proposals

    runs = runs or []
    cfg = make_config(config, overrides, **settings)
    if cfg.proposals.uses_rpn and configured:
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
            cache_data = CachedData.from_config(cfg, None, cache_dir(cache))
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
    from ..benchmark import run_bench
    from ..detector import Detector
    from ..features import resolve_device
    from ..fileio import atomic_write_json

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
