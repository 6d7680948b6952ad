"""Scores a user can read: each class's SVM margin ``m`` mapped to the probability that a
detection is correct, by Platt's sigmoid ``p = 1 / (1 + exp(-(A·m + B)))``.

The sigmoid is fitted on detections the SVM scoring them did not train on: the training
images are cut into :data:`FOLDS` folds, and for each fold an SVM is retrained on the other
folds' positives and cached hard negatives (a cheap refit: no new mining); it scores a sample
of the fold's images (at most :data:`MAX_IMAGES` in all), whose windows go through the same
candidate floor and per-class NMS as detection, and each surviving detection is labelled as
VOC's matching labels it (a hit: IoU > 0.5 with an object not matched before). Platt's
algorithm (target smoothing, Platt 1999) fits ``A`` and ``B``; ``A`` is kept positive, so the
map is increasing and each class's ranking, hence its AP, is the margins'.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize
from torchvision.ops import nms

FOLDS = 3
MAX_IMAGES = 200
# Windows scoring below this margin are never detections (the 0.3 test.score_thresh, and the
# hard-negative boundary of mining): evaluation keeps every window above it.
MARGIN_FLOOR = -1.0
MIN_SLOPE = 1e-3


# Above this logit the sigmoid's float64 values run out (1 - 2^-53 at z ≈ 36.7): confident
# detections would tie at exactly 1 and lose their order. Beyond it the tail is
# 1 - e^-TAIL / (1 + z - TAIL), which meets the sigmoid there (to 1e-17) and keeps rising.
TAIL = 20.0


def sigmoid(margins: np.ndarray, a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """Platt's map ``1 / (1 + e^-(a·m + b))`` in float64, strictly increasing in ``m`` (for
    a > 0) over every finite margin: see :data:`TAIL`."""
    from scipy.special import expit

    z = np.asarray(np.asarray(margins, dtype=np.float64) * a + b, dtype=np.float64)
    p = expit(z)
    hi = z > TAIL
    p[hi] = 1.0 - math.exp(-TAIL) / (1.0 + (z[hi] - TAIL))
    return p


def fit_platt(margins: np.ndarray, hits: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid ``(A, B)`` for margins and their 0/1 labels, with his smoothed targets
    ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` (so that a class with few or no hits gets a
    finite, low probability rather than 0 or a degenerate fit), ``A >= MIN_SLOPE``."""
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(hits, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(ab):
        z = ab[0] * m + ab[1]
        # -[t log s(z) + (1 - t) log(1 - s(z))] = log(1 + e^z) - t z, stably
        return float(np.sum(np.logaddexp(0, z) - t * z)), np.array(
            [np.sum((1 / (1 + np.exp(-z)) - t) * m), np.sum(1 / (1 + np.exp(-z)) - t)])

    prior = math.log((n_pos + 1) / (n_neg + 1))
    res = minimize(nll, np.array([1.0, prior]), jac=True, method="L-BFGS-B",
                   bounds=[(MIN_SLOPE, None), (None, None)])
    return float(res.x[0]), float(res.x[1])


def image_folds(n_images: int, seed: int, folds: int = FOLDS) -> np.ndarray:
    """Each training image's fold, seeded."""
    return np.random.default_rng([seed, 7]).permutation(n_images) % folds


def calibration_images(n_images: int, seed: int, limit: int = MAX_IMAGES) -> np.ndarray:
    rng = np.random.default_rng([seed, 11])
    return np.sort(rng.choice(n_images, min(n_images, limit), replace=False))


def labelled_detections(boxes: np.ndarray, margins: np.ndarray, gts: np.ndarray, nms_iou: float,
                        floor: float = MARGIN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """One class's detections in one image as detection makes them (windows above ``floor``,
    per-class NMS on inclusive-pixel boxes), labelled as VOC labels them: in descending
    margin order, a hit is IoU > 0.5 with an object of the class not matched before.
    Returns ``(margins, hits)``."""
    from .windows import iou

    keep = np.nonzero(margins > floor)[0]
    if len(keep) == 0:
        return np.zeros(0), np.zeros(0, bool)
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64)[keep]) + torch.tensor([0.0, 0.0, 1.0, 1.0],
                                                                                   dtype=torch.float64)
    order = nms(b.float(), torch.as_tensor(margins[keep], dtype=torch.float32), nms_iou).numpy()
    kept = keep[order]
    m = np.asarray(margins, dtype=np.float64)[kept]
    hits = np.zeros(len(kept), bool)
    if len(gts):
        ov = iou(np.asarray(boxes)[kept], gts)
        used = np.zeros(len(gts), bool)
        for k in range(len(kept)):  # nms returns them by decreasing score
            j = int(ov[k].argmax())
            if ov[k, j] > 0.5 and not used[j]:
                hits[k], used[j] = True, True
    return m, hits


def reliability(scores: np.ndarray, hits: np.ndarray, bins: int = 10) -> dict:
    """Reliability of probabilities: per equal-width bin of [0, 1], the mean score, the
    fraction of hits and the count; the expected calibration error (count-weighted mean
    |hit rate - mean score|)."""
    s = np.asarray(scores, dtype=np.float64)
    h = np.asarray(hits, dtype=np.float64)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for k in range(bins):
        sel = idx == k
        n = int(sel.sum())
        rows.append({"low": k / bins, "high": (k + 1) / bins, "count": n,
                     "mean_score": float(s[sel].mean()) if n else None,
                     "hit_rate": float(h[sel].mean()) if n else None})
        if n:
            ece += n * abs(float(h[sel].mean()) - float(s[sel].mean()))
    return {"bins": rows, "ece": ece / len(s) if len(s) else None, "detections": int(len(s))}
