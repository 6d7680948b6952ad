"""Proposal recall on boxes whose overlaps are worked out by hand (inclusive-pixel areas)."""
import json
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets.common import ImageRecord
from sppdet.evaluation.proposals import evaluate_proposals, window_grid


def _record(image_id, boxes, labels, difficult):
    return ImageRecord(image_id, Path(f"{image_id}.jpg"), np.array(boxes, dtype=np.float64), labels,
                       np.array(difficult, dtype=bool), 100, 100)


# Image 1: A (class a) = [0,0,9,9] and B (class b) = [20,20,29,29], 10×10 = 100 pixels each.
#   p1 [0,0,9,4]   covers 10×5 = 50 of A: IoU 50/100 = 0.5 (without the +1 it would be 36/81)
#   p2 [0,0,9,7]   covers 80 of A: IoU 0.8
#   p3 [20,20,29,25] covers 60 of B: IoU 0.6
#   p4 far away
# Image 2: D (class a) = [0,0,19,19] (400 px); q1 [0,0,9,9] inside it: IoU 100/400 = 0.25;
#   a difficult class-b object [50,50,59,59] that q2 covers exactly must not count.
RECORDS = [
    _record("i1", [[0, 0, 9, 9], [20, 20, 29, 29]], ["a", "b"], [False, False]),
    _record("i2", [[0, 0, 19, 19], [50, 50, 59, 59]], ["a", "b"], [False, True]),
]
PROPOSALS = {
    "i1": np.array([[0, 0, 9, 4], [0, 0, 9, 7], [20, 20, 29, 25], [70, 70, 90, 90]], dtype=np.float32),
    "i2": np.array([[0, 0, 9, 9], [50, 50, 59, 59]], dtype=np.float32),
}


def test_recall_and_best_iou_hand_worked(tmp_path):
    res = evaluate_proposals(RECORDS, lambda r: PROPOSALS[r.image_id], ["a", "b", "c"], tmp_path,
                             seconds_per_image=1.5)
    assert res["windows_per_image"] == 3.0  # median of 4 and 2
    assert res["seconds_per_image"] == 1.5
    assert res["objects"] == {"a": 2, "b": 1, "c": 0}
    # a: A best 0.8, D best 0.25; b: B best 0.6; c has no objects
    assert res["recall"]["0.5"] == {"a": 0.5, "b": 1.0, "c": None}
    assert res["recall"]["0.7"] == {"a": 0.5, "b": 0.0, "c": None}
    assert res["mean_best_iou"]["a"] == pytest.approx((0.8 + 0.25) / 2)
    assert res["mean_best_iou"]["b"] == pytest.approx(0.6)
    assert res["mean_best_iou"]["c"] is None
    assert res["recall_all"] == {"0.5": pytest.approx(2 / 3), "0.7": pytest.approx(1 / 3)}

    # top-k curve, k = 1, 2, 4: p1 alone reaches A at exactly 0.5; p2 lifts A to 0.8;
    # B is reached only by p3 (k = 4 on this grid)
    curve = res["recall_curve"]
    assert curve["k"] == [1, 2, 4]
    assert curve["0.5"]["a"] == [0.5, 0.5, 0.5]
    assert curve["0.5"]["b"] == [0.0, 0.0, 1.0]
    assert curve["0.7"]["a"] == [0.0, 0.5, 0.5]
    assert curve["0.5"]["all"] == pytest.approx([1 / 3, 1 / 3, 2 / 3])

    on_disk = json.loads((tmp_path / "proposals.json").read_text())
    assert on_disk["recall"]["0.5"] == {"a": 0.5, "b": 1.0, "c": None}
    assert set(on_disk) >= {"windows_per_image", "seconds_per_image", "recall", "mean_best_iou"}
    assert (tmp_path / "proposal_recall.png").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_no_proposals_means_zero_recall():
    res = evaluate_proposals(RECORDS[:1], lambda r: np.zeros((0, 4)), ["a", "b"])
    assert res["recall"]["0.5"] == {"a": 0.0, "b": 0.0}
    assert res["mean_best_iou"] == {"a": 0.0, "b": 0.0}
    assert res["windows_per_image"] == 0.0


def test_window_grid():
    # the 1-2-5 series plus the budgets methods are compared at (100, 300, 1,000, 2,000)
    assert window_grid(2000) == [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000]
    assert window_grid(911) == [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 911]
