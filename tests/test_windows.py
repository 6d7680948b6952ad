"""sppdet.windows by hand: an image's training windows and their overlaps with the ground truth
(build_windows), and SPP-net's pruning of negatives that overlap a kept negative by more than
70% (prune_negatives)."""
import numpy as np
import pytest

from sppdet.config import load_config
from sppdet.errors import UserError
from sppdet.windows import build_windows, prune_negatives

# inclusive-pixel boxes; IoUs worked out by hand (areas count the +1 pixel):
#   0 [0,0,9,9]   100 px
#   1 [0,0,9,12]  130 px: IoU(0,1) = 100/130 = 0.769
#   2 [0,0,9,6]    70 px: IoU(0,2) = 70/100 = 0.7 exactly (not "more than"); IoU(1,2) = 70/130
#   3 [1,0,10,9]  100 px: IoU(0,3) = 90/110 = 0.818; IoU(1,3) = 90/140 = 0.643; IoU(2,3) = 63/107
#   4 [0,2,9,13]  120 px: IoU(1,4) = 110/140 = 0.786; IoU(0,4) = 80/140; IoU(2,4) = 50/140
BOXES = np.array([[0, 0, 9, 9], [0, 0, 9, 12], [0, 0, 9, 6], [1, 0, 10, 9], [0, 2, 9, 13]], dtype=np.float32)


def test_greedy_in_ranking_order_per_class():
    neg = np.ones((5, 2), dtype=bool)
    neg[0, 1] = False  # window 0 is no negative of class 1 (it covers an object of that class)
    kept = prune_negatives(BOXES, neg, 0.7)
    # class 0: 0 kept; 1 and 3 overlap it > 0.7; 2 overlaps it by exactly 0.7 (kept); 4 overlaps
    # only the removed 1 by more than 0.7, so it stays (greedy against *kept* negatives)
    assert kept[:, 0].tolist() == [True, False, True, False, True]
    # class 1: without 0, 1 comes first; 2 and 3 overlap it < 0.7; 4 overlaps it by 0.786
    assert kept[:, 1].tolist() == [False, True, True, True, False]


def test_only_candidates_are_kept_and_shape_is_preserved():
    neg = np.array([False, True, False, True, True])
    kept = prune_negatives(BOXES, neg, 0.7)
    assert kept.shape == (5,)
    assert kept.tolist() == [False, True, False, True, False]  # 3 vs 1: 0.643 stays; 4 vs 1 goes
    assert not (kept & ~neg).any()


@pytest.mark.parametrize("thresh", [0.0, 1.0])
def test_off(thresh):
    neg = np.ones((5, 3), dtype=bool)
    assert prune_negatives(BOXES, neg, thresh).all()


def test_config_key():
    assert load_config(None, []).svm.neg_overlap_prune == 0.7
    assert load_config(None, ["svm.neg_overlap_prune=0"]).svm.neg_overlap_prune == 0.0
    with pytest.raises(UserError, match="neg_overlap_prune"):
        load_config(None, ["svm.neg_overlap_prune=1.5"])


# -- build_windows ---------------------------------------------------------------------------------
# two objects, inclusive pixels: A = [0,0,9,9] (class 1, 100 px), B = [20,0,29,9] (class 0, 100 px)
# proposals: P0 = [0,0,9,4] (50 px, inside A): IoU(P0, A) = 50/100 = 0.5, IoU(P0, B) = 0
#            P1 = [5,0,24,9] (200 px): IoU(P1, A) = 50/250 = 0.2, IoU(P1, B) = 50/250 = 0.2
#            P2 = [15,0,29,9] (150 px): IoU(P2, A) = 0, IoU(P2, B) = 100/150 = 0.667
#            P3 = [40,40,49,49]: touches nothing
GT = np.array([[0, 0, 9, 9], [20, 0, 29, 9]])
PROPOSALS = np.array([[0, 0, 9, 4], [5, 0, 24, 9], [15, 0, 29, 9], [40, 40, 49, 49]])


def test_build_windows_by_hand():
    w = build_windows(GT, np.array([1, 0]), PROPOSALS, num_classes=3)
    assert w.n_gt == 2 and w.boxes.dtype == np.float32
    np.testing.assert_array_equal(w.boxes, np.concatenate([GT, PROPOSALS]))  # ground truth first
    np.testing.assert_allclose(w.max_iou, [1, 1, 0.5, 0.2, 2 / 3, 0], atol=1e-6)
    assert w.max_class[[0, 1, 2, 4]].tolist() == [1, 0, 1, 0]  # the class of the best ground truth
    assert w.class_iou.dtype == np.float16 and w.class_iou.shape == (6, 3)
    expected = np.array([[0, 1, 0], [1, 0, 0], [0, 0.5, 0], [0.2, 0.2, 0], [2 / 3, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(w.class_iou.astype(np.float64), expected, atol=1e-3)  # class 2: no object


def test_build_windows_keeps_the_best_object_of_each_class():
    # two objects of class 0 and one proposal between them: its class IoU is the larger overlap
    gt = np.array([[0, 0, 9, 9], [0, 0, 19, 19]])  # 100 px and 400 px
    w = build_windows(gt, np.array([0, 0]), np.array([[0, 0, 14, 14]]), num_classes=1)  # 225 px
    # IoU with the first: 100/225 = 0.444; with the second: 225/400 = 0.5625
    assert w.max_iou[2] == pytest.approx(0.5625) and float(w.class_iou[2, 0]) == pytest.approx(0.5625, abs=1e-3)


def test_build_windows_of_an_image_without_objects():
    w = build_windows(np.zeros((0, 4)), np.zeros(0), PROPOSALS, num_classes=2)
    assert w.n_gt == 0 and len(w.boxes) == 4
    assert (w.max_iou == 0).all() and (w.max_class == -1).all() and (w.class_iou == 0).all()
