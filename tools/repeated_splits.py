"""Compare training settings on a small data set over several random train/test splits.

One 80/20 split of a set like kangaroo (164 images, 33 test images, ~50 objects) measures mAP
to within several points: one object is about two AP points. This tool trains every setting
on the same ``--seeds`` splits (``data.split_seed``) and reports each setting's mean and
standard deviation, and its paired difference from the first setting (same test images), which
is what tells a real effect from split noise. Caches are keyed by image content, so proposals
and conv maps are computed once per image and setting, whatever the number of splits.

    python tools/repeated_splits.py --data ../shared/data/kangaroo --seeds 0 1 2 3 4 \\
        --setting fast=proposals.mode=fast --setting quality=proposals.mode=quality \\
        --out runs/splits_kangaroo --cache runs/cache

A data set with fixed split files (a VOC devkit such as BCCD) keeps them unless
``--resplit``: then all its images are pooled and split 80/20 by each seed, written as list
files under ``OUT/splits/``.

Writes ``OUT/summary.json`` and ``OUT/summary.md``; a run already evaluated is reused.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time

import sppdet
from sppdet.errors import UserError, report_errors
from sppdet.fileio import atomic_write, atomic_write_json, ensure_writable_dir


def _parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"--setting NAME=key=value[,key=value...], not {text!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        raise argparse.ArgumentTypeError(f"setting name {name!r}: letters, digits, '.', '_' and '-' only "
                                         "(it names the run folders)")
    return name, [kv for kv in rest.split(",") if kv]


def _t95(n: int) -> float:
    """Two-sided 95% Student t quantile for n paired samples (n - 1 degrees of freedom)."""
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a flat folder or any layout without a fixed split")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--setting", type=_parse_setting, action="append", required=True,
                    help="NAME=key=value[,key=value...] (the first is the baseline)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--resplit", action="store_true",
                    help="pool all images (also of a data set with split files) and split them 80/20 per seed")
    args = ap.parse_args(argv)
    names = [name for name, _ in args.setting]
    if len(set(names)) != len(names):
        ap.error(f"setting names must differ: {names}")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds repeats a seed: {args.seeds}")
    return report_errors("repeated_splits", lambda: _run(args),
                         "finished runs are kept and reused by the next call")


def _run(args: argparse.Namespace) -> int:
    out = ensure_writable_dir(args.out, "--out")
    splits = {seed: ("trainval", "test") for seed in args.seeds}
    if args.resplit:
        from sppdet.datasets.common import seeded_split

        ids = [r.image_id for r in sppdet.load_data(args.data, "all").records]
        for seed in args.seeds:
            files = []
            for part in ("trainval", "test"):
                f = out / "splits" / f"seed{seed}_{part}.txt"
                f.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(f, "\n".join(seeded_split(ids, part, seed, 0.2)) + "\n")
                files.append(str(f))
            splits[seed] = tuple(files)
    results: dict[str, dict[int, dict]] = {}
    for name, overrides in args.setting:
        results[name] = {}
        for seed in args.seeds:
            run = out / f"{name}-seed{seed}"
            done = run / "result.json"
            try:
                res = json.loads(done.read_text())
            except (OSError, ValueError):  # not trained yet, or cut off while writing: train (again)
                res = None
            if isinstance(res, dict) and "mAP" in res:
                if res.get("overrides") != overrides:
                    raise UserError(f"{run} was trained with {res.get('overrides')}, not {overrides}: "
                                    "give this setting another name or another --out")
                if bool(res.get("resplit", False)) != args.resplit:
                    raise UserError(f"{run} was trained {'with' if res.get('resplit') else 'without'} --resplit: "
                                    "its split differs; use another --out")
                results[name][seed] = res
                continue
            start = time.time()
            det = sppdet.train(args.data, run, split=splits[seed][0], eval_split=splits[seed][1], cache=args.cache,
                               overwrite=True, workers=args.workers,
                               overrides=[*overrides, f"data.split_seed={seed}"])
            res = {"mAP": det.metrics["mAP"], "AP": det.metrics["AP"], "wall_s": round(time.time() - start, 1),
                   "overrides": overrides, "resplit": args.resplit}
            run.mkdir(parents=True, exist_ok=True)
            atomic_write_json(done, res)
            results[name][seed] = res
            print(f"{name} seed {seed}: mAP {res['mAP']:.4f} ({res['wall_s']} s)", flush=True)
    base = args.setting[0][0]
    summary = {"data": args.data, "seeds": args.seeds, "settings": {}}
    lines = [f"| setting | mAP per split (seeds {', '.join(map(str, args.seeds))}) | mean ± sd | "
             f"paired diff vs {base}: mean ± sd [95% CI] |", "|---|---|---|---|"]
    for name, overrides in args.setting:
        maps = [results[name][s]["mAP"] for s in args.seeds]
        diffs = [results[name][s]["mAP"] - results[base][s]["mAP"] for s in args.seeds]
        sd = statistics.stdev(maps) if len(maps) > 1 else 0.0
        dsd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        half = _t95(len(diffs)) * dsd / len(diffs) ** 0.5  # half-width of the paired t interval
        dmean = statistics.fmean(diffs)
        summary["settings"][name] = {"overrides": overrides, "mAP": maps, "mean": statistics.fmean(maps),
                                     "sd": sd, "paired_diff_mean": dmean, "paired_diff_sd": dsd,
                                     "paired_diff_ci95": [dmean - half, dmean + half]}
        lines.append(f"| {name} (`{' '.join(overrides)}`) | {' '.join(f'{m:.3f}' for m in maps)} | "
                     f"{statistics.fmean(maps):.3f} ± {sd:.3f} | "
                     + ("—" if name == base else
                        f"{dmean:+.3f} ± {dsd:.3f} [{dmean - half:+.3f}, {dmean + half:+.3f}]") + " |")
    atomic_write_json(out / "summary.json", summary)
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
