"""The onnxruntime engine against the torch detector on a run's images: per image every torch
detection matched by one of the same class whose box is within ``--box-tol`` px (each
coordinate) and whose score is within ``--score-tol``, and the other way round; the only
detections allowed to go unmatched are ties at the cut (``at_cut``): one engine's list full at
``test.max_per_image`` or at the threshold keeping a detection, the other an equal-scoring one.

    python tools/onnx_check.py RUN --data D [--split test] [--images N] [--thresholds 0.25,0] [--out FILE.json]

The model is exported in memory from RUN (what `sppdet export` writes). Exit 0 when every image
agrees, 1 otherwise, 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _threshold_of(threshold, label: int):
    if threshold is None:
        return None
    t = np.asarray(threshold, dtype=float)
    return float(t) if t.ndim == 0 else float(t[label])


def _at_cut(score: float, label: int, other, score_tol: float, threshold, cap) -> bool:
    """Whether the other engine may have left out a detection scoring ``score`` for a reason that
    is only a tie: its list is full (``cap``) and holds nothing scoring below ``score`` by more
    than ``score_tol`` (it kept an equal one instead), or ``score`` is within ``score_tol`` of
    the threshold (kept on one side of it, dropped on the other)."""
    if cap is not None and len(other) >= cap and float(np.min(other.scores)) >= score - score_tol:
        return True
    t = _threshold_of(threshold, label)
    return t is not None and abs(score - t) <= score_tol


def match(a, b, box_tol: float = 0.5, score_tol: float = 1e-3, threshold=None, cap: int | None = None) -> dict:
    """Pair the detections ``a`` (the reference) with ``b``: within each class, best first, each of
    ``a`` with the unpaired one of ``b`` nearest to its box, if that is within ``box_tol`` px (any
    coordinate). Returns the counts, the largest box and score differences of the pairs, how many
    detections are left unpaired, and how many of those sit at the cut (``at_cut``, not counted
    in ``unpaired``): with ``cap`` (``test.max_per_image``) and ``threshold`` (a number or one
    per class), a detection the other list lacks because the other engine broke a tie at its
    cap or at the threshold the other way (see :func:`_at_cut`); anything else is a disagreement."""
    out = {"count": [len(a), len(b)], "box": 0.0, "score": 0.0, "unpaired": 0, "at_cut": 0}
    left = []  # (score, label, the list it lacks from)
    for c in np.union1d(a.labels, b.labels):
        ia = np.nonzero(a.labels == c)[0]
        ia = ia[np.argsort(-a.scores[ia], kind="stable")]
        free = list(np.nonzero(b.labels == c)[0])
        for i in ia:
            d = [float(np.abs(a.boxes[i] - b.boxes[j]).max()) for j in free]
            k = int(np.argmin(d)) if d else -1
            if k < 0 or d[k] > box_tol:
                left.append((float(a.scores[i]), int(c), b))
                continue
            j = free.pop(k)
            out["box"] = max(out["box"], d[k])
            out["score"] = max(out["score"], abs(float(a.scores[i]) - float(b.scores[j])))
        left += [(float(b.scores[j]), int(c), a) for j in free]
    # the unpaired ones that are not ties at the cut: (label, score, the list that holds it)
    out["left_out"] = [(label, round(score, 6), "b" if other is a else "a") for score, label, other in left
                       if not _at_cut(score, label, other, score_tol, threshold, cap)]
    out["unpaired"] = len(out["left_out"])
    out["at_cut"] = len(left) - out["unpaired"]
    return out


def agrees(m: dict, box_tol: float, score_tol: float) -> bool:
    """Every detection paired within the tolerances, or missing from the other list only by a tie
    at the cut (``m`` from :func:`match` with the same tolerances)."""
    return not m["unpaired"] and m["box"] <= box_tol and m["score"] <= score_tol


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
            m = match(torch_det(arr, wins, threshold=thr), onnx_det(arr, wins, threshold=thr), box_tol, score_tol,
                      torch_det.thresholds(thr), torch_det.cfg.test.max_per_image)
            rows.append({"image": str(img) if isinstance(img, str) else k, "threshold": thr, **m,
                         "ok": agrees(m, box_tol, score_tol)})
    return {"images": len(images), "thresholds": list(thresholds), "box_tol": box_tol, "score_tol": score_tol,
            "detections": sum(r["count"][0] for r in rows), "max_box_diff": max((r["box"] for r in rows), default=0.0),
            "max_score_diff": max((r["score"] for r in rows), default=0.0),
            "at_cut": sum(r["at_cut"] for r in rows),
            "comparisons_with_other_counts": sum(r["count"][0] != r["count"][1] for r in rows),
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
