"""The onnxruntime engine against the torch detector on a run's images: per image the same number
of detections, and every torch detection matched by one of the same class whose box is within
``--box-tol`` px (each coordinate) and whose score is within ``--score-tol``.

    python tools/onnx_check.py RUN --data D [--split test] [--images N] [--thresholds 0.25,0] [--out FILE.json]

The model is exported in memory from RUN (what `sppdet export` writes). Exit 0 when every image
agrees, 1 otherwise, 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def match(a, b) -> dict:
    """Pair the detections ``a`` (the reference) with ``b``: within each class, best first, each of
    ``a`` with the unpaired one of ``b`` nearest to its box. Returns the counts and the largest box
    (px, any coordinate) and score differences of the pairs."""
    out = {"count": [len(a), len(b)], "box": 0.0, "score": 0.0, "unpaired": 0}
    for c in np.union1d(a.labels, b.labels):
        ia = np.nonzero(a.labels == c)[0]
        ia = ia[np.argsort(-a.scores[ia], kind="stable")]
        free = list(np.nonzero(b.labels == c)[0])
        for i in ia:
            if not free:
                out["unpaired"] += 1
                continue
            d = [np.abs(a.boxes[i] - b.boxes[j]).max() for j in free]
            j = free.pop(int(np.argmin(d)))
            out["box"] = max(out["box"], float(np.min(d)))
            out["score"] = max(out["score"], abs(float(a.scores[i]) - float(b.scores[j])))
        out["unpaired"] += len(free)
    return out


def agrees(m: dict, box_tol: float, score_tol: float) -> bool:
    return m["count"][0] == m["count"][1] and not m["unpaired"] and m["box"] <= box_tol and m["score"] <= score_tol


def compare(torch_det, onnx_det, images, thresholds, box_tol: float = 0.5, score_tol: float = 1e-3) -> dict:
    """Both detectors on each image (RGB arrays or paths) at each threshold → a report."""
    from sppdet.images import read_image

    rows = []
    for k, img in enumerate(images):
        arr = read_image(img) if isinstance(img, str) else img
        # windows from the pixels are computed once for both: OpenCV's selective search does not
        # always give the same windows twice for the same image
        wins = None if torch_det.proposer.needs_maps else torch_det.propose(arr, None, arr.shape[1], arr.shape[0])
        for thr in thresholds:
            m = match(torch_det(arr, wins, threshold=thr), onnx_det(arr, wins, threshold=thr))
            rows.append({"image": str(img) if isinstance(img, str) else k, "threshold": thr, **m,
                         "ok": agrees(m, box_tol, score_tol)})
    return {"images": len(images), "thresholds": list(thresholds), "box_tol": box_tol, "score_tol": score_tol,
            "detections": sum(r["count"][0] for r in rows), "max_box_diff": max((r["box"] for r in rows), default=0.0),
            "max_score_diff": max((r["score"] for r in rows), default=0.0),
            "disagreeing": [r for r in rows if not r["ok"]], "agree": all(r["ok"] for r in rows)}


def main(argv=None) -> int:
    import sppdet
    from sppdet.errors import report_errors
    from sppdet.onnx_engine import from_detector

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=int, default=None, help="the first N images of the split (default: all)")
    p.add_argument("--thresholds", default="0.25,0", help="score thresholds to compare at (0: all eval keeps)")
    p.add_argument("--box-tol", type=float, default=0.5)
    p.add_argument("--score-tol", type=float, default=1e-3)
    p.add_argument("--out", help="write the report here (JSON)")
    a = p.parse_args(argv)

    def run() -> int:
        det = sppdet.load(a.run, device="cpu")
        ds = sppdet.load_data(a.data, a.split, det.cfg, classes=det.classes)
        recs = ds.records[: a.images] if a.images else ds.records
        rep = compare(det, from_detector(det), [str(r.path) for r in recs],
                      [float(t) for t in a.thresholds.split(",")], a.box_tol, a.score_tol)
        print(json.dumps({k: v for k, v in rep.items() if k != "disagreeing"}, indent=1))
        for r in rep["disagreeing"]:
            print(f"disagree: {r}", file=sys.stderr)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(rep, f, indent=1)
        return 0 if rep["agree"] else 1

    return report_errors("onnx_check", run, "interrupted: nothing was compared")


if __name__ == "__main__":
    sys.exit(main())
