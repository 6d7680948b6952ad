"""Calibrated scores: Platt's fit against an independent logistic regression, detections
labelled as VOC labels them (hand-worked), the reliability table (hand-worked), and the
detector's map keeping each class's ranking, hence its AP."""
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sppdet.calibration import MARGIN_FLOOR, fit_platt, labelled_detections, reliability, sigmoid
from sppdet.config import BBoxRegConfig, Config
from sppdet.config import TestConfig as _TestConfig  # (not a class of tests)
from sppdet.detector import Detector


def test_platt_matches_a_logistic_regression_on_smoothed_targets():
    rng = np.random.default_rng(0)
    m = np.concatenate([rng.normal(1.0, 0.7, 80), rng.normal(-0.8, 0.5, 400)])
    y = np.concatenate([np.ones(80, bool), np.zeros(400, bool)])
    a, b = fit_platt(m, y)
    # Platt's targets as weights of two copies of each point, fitted by sklearn without a penalty
    tp, tn = (80 + 1) / (80 + 2), 1 / (400 + 2)
    t = np.where(y, tp, tn)
    X = np.concatenate([m, m])[:, None]
    lab = np.concatenate([np.ones(len(m)), np.zeros(len(m))])
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000).fit(X, lab, sample_weight=np.concatenate([t, 1 - t]))
    assert a == pytest.approx(ref.coef_[0, 0], rel=1e-3) and b == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-3)


def test_platt_without_hits_is_low_and_still_increasing():
    m = np.linspace(-1, 2, 50)
    a, b = fit_platt(m, np.zeros(50, bool))
    p = sigmoid(m, a, b)
    assert a > 0 and (np.diff(p) > 0).all() and p.max() < 0.1
    a0, b0 = fit_platt(np.zeros(0), np.zeros(0, bool))  # nothing to fit on: finite
    assert np.isfinite([a0, b0]).all() and a0 > 0


def test_labelled_detections_by_hand():
    # two objects; windows: a hit on A (0.9), its duplicate (suppressed by NMS), a loose box on B
    # (IoU 0.25: a miss), a hit on B, and one below the floor
    gts = np.array([[0, 0, 9, 9], [50, 50, 69, 69]], float)
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 10], [50, 50, 59, 59], [51, 50, 69, 69], [30, 30, 40, 40]], float)
    margins = np.array([0.9, 0.8, 0.5, 0.2, -1.5])
    m, h = labelled_detections(boxes, margins, gts, nms_iou=0.3)
    np.testing.assert_array_equal(m, [0.9, 0.5, 0.2])
    np.testing.assert_array_equal(h, [True, False, True])
    m, h = labelled_detections(boxes, margins, gts[:0], nms_iou=0.3)
    assert not h.any() and len(m) == 3


def test_reliability_by_hand():
    r = reliability(np.array([0.05, 0.15, 0.95, 0.91]), np.array([0, 1, 1, 0]), bins=10)
    assert [b["count"] for b in r["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    # |0 - 0.05| + |1 - 0.15| + 2 |0.5 - 0.93|, over 4
    assert r["ece"] == pytest.approx((0.05 + 0.85 + 2 * 0.43) / 4)


def bare(platt=None, max_per_image=100000, score_thresh=0.25):
    cfg = Config(bbox_reg=BBoxRegConfig(enabled=False),
                 test=_TestConfig(max_per_image=max_per_image, score_thresh=score_thresh))
    return Detector(cfg, ["a", "b", "c"], None, None, np.zeros((4, 3)), np.zeros(3), 1.0, None, 1.0, platt=platt)


def test_calibration_keeps_each_class_ranking_and_ap():
    from sppdet.datasets.common import ImageRecord
    from sppdet.evaluation.voc import evaluate_voc

    rng = np.random.default_rng(1)
    platt = np.array([[3.0, -2.0], [0.5, 1.0], [8.0, -6.0]])
    recs, cal, raw = [], [], []
    for k in range(6):
        xy = rng.uniform(0, 150, (300, 2))
        props = np.concatenate([xy, xy + rng.uniform(8, 50, (300, 2))], 1)
        margins = rng.normal(-0.5, 1.0, (300, 3))
        gt = props[rng.choice(300, 4, replace=False)]
        recs.append(ImageRecord(f"i{k}", Path(f"i{k}.jpg"), gt, ["a", "b", "c", "a"], np.zeros(4, bool), 200, 200))
        c = bare(platt).postprocess(props, margins, None, 200, 200, threshold=0.0)
        r = bare(None, score_thresh=MARGIN_FLOOR).postprocess(props, margins, None, 200, 200)
        assert ((c.scores >= 0) & (c.scores <= 1)).all() and c.calibrated and not r.calibrated
        np.testing.assert_allclose(c.margins, margins[[np.nonzero((props == b).all(1))[0][0] for b in c.boxes],
                                                      c.labels])
        # the same detections, each class in the same order
        for cls in range(3):
            np.testing.assert_array_equal(c.boxes[c.labels == cls], r.boxes[r.labels == cls])
        cal += c.to_list(f"i{k}")
        raw += r.to_list(f"i{k}")
    assert evaluate_voc(recs, cal, ["a", "b", "c"])["AP"] == evaluate_voc(recs, raw, ["a", "b", "c"])["AP"]
    # the cap keeps the most probable across classes, margins ordered within each
    capped = bare(platt, max_per_image=5).postprocess(props, margins, None, 200, 200, threshold=0.0)
    full = bare(platt).postprocess(props, margins, None, 200, 200, threshold=0.0)
    np.testing.assert_array_equal(capped.scores, np.sort(full.scores)[::-1][:5])
    # the default threshold is on the probability
    d = bare(platt).postprocess(props, margins, None, 200, 200)
    assert len(d) and (d.scores > 0.25).all() and len(d) == (full.scores > 0.25).sum()


def test_analysis_calibration_table_by_hand():
    from sppdet.evaluation.analysis import calibration_table

    ranked = {"a": [{"score": 0.95, "category": "correct"}, {"score": 0.91, "category": "background"},
                    {"score": 0.5, "category": "ignored"}],
              "b": [{"score": 0.15, "category": "correct"}, {"score": 0.05, "category": "localisation"}]}
    t = calibration_table(ranked)
    assert t["available"] and t["detections"] == 4
    assert t["ece"] == pytest.approx((0.05 + 0.85 + 2 * 0.43) / 4)
    assert t["ece_by_class"]["a"] == pytest.approx(0.43) and t["ece_by_class"]["b"] == pytest.approx(0.45)
    margins = {"a": [{"score": 1.7, "category": "correct"}, {"score": -0.4, "category": "background"}]}
    assert not calibration_table(margins)["available"]


def test_confident_scores_never_tie():
    """A steep sigmoid (A = 14, as a class with few, well-separated windows gets) would round
    every margin above ~2.6 to exactly 1.0 in float64 and lose their order; the scores must
    rise strictly with the margin over any range, and stay in [0, 1]."""
    m = np.linspace(-5, 40, 5000)
    p = sigmoid(m, 14.0, 8.5)
    assert (np.diff(p) > 0).all() and p.min() >= 0 and p.max() <= 1
    exact = 1 / (1 + np.exp(-(m * 14.0 + 8.5)))
    low = m * 14.0 + 8.5 < 20
    np.testing.assert_allclose(p[low], exact[low], rtol=1e-15, atol=0)
    assert np.abs(p - exact).max() < 3e-9  # a probability all the same
