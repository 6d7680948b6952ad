"""Calibrated scores against the same SVMs' margins (sppdet 0.3's scores) on one run: mAP with
the per-image cap at several sizes (only the cap can tell them apart), and the reliability of
the calibrated scores (expected calibration error) from ``eval --analyze``.

    python tools/calibration_check.py --data D --train-split S --test-split T --out DIR [--set k=v ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys


def main(argv=None) -> int:
    import sppdet
    from sppdet.config import override_config
    from sppdet.errors import report_errors

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--train-split", default="trainval")
    p.add_argument("--test-split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--caps", default="100,20,1000000", help="test.max_per_image values to compare")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)

    def run() -> int:
        det = sppdet.train(a.data, f"{a.out}/run", split=a.train_split, cache=f"{a.out}/cache",
                           workers=a.workers, overrides=a.set, overwrite=True)
        rows = {}
        for cap in (int(c) for c in a.caps.split(",")):
            cal = copy.copy(det)
            cal.cfg = override_config(det.cfg, [f"test.max_per_image={cap}"])
            m = sppdet.evaluate(cal, data=a.data, split=a.test_split, out=f"{a.out}/eval_calibrated_{cap}",
                                analyze=cap == 100, gallery=1)
            raw = copy.copy(det)
            raw.platt = None  # the margins, as 0.3 scored
            raw.cfg = override_config(det.cfg, [f"test.max_per_image={cap}", "test.score_thresh=-1"])
            mu = sppdet.evaluate(raw, data=a.data, split=a.test_split, out=f"{a.out}/eval_margins_{cap}")
            rows[cap] = {"calibrated": m["mAP"], "margins": mu["mAP"], "AP_calibrated": m["AP"], "AP_margins": mu["AP"]}
        cal = json.loads(open(f"{a.out}/eval_calibrated_100/analysis/analysis.json").read())["calibration"]
        out = {"mAP_by_cap": rows, "ece": cal.get("ece"), "ece_by_class": cal.get("ece_by_class"),
               "platt": det.platt.tolist(), "calibration": det.train_log.get("calibration")}
        print(json.dumps(out, indent=1))
        with open(f"{a.out}/calibration_check.json", "w") as f:
            json.dump(out, f, indent=1)
        return 0

    return report_errors("calibration_check", run, "interrupted: nothing was compared")


if __name__ == "__main__":
    sys.exit(main())
