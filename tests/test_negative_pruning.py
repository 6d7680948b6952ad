"""SPP-net's pruning of negatives that overlap a kept negative by more than 70%, by hand."""
import numpy as np
import pytest

from sppdet.config import load_config
from sppdet.errors import UserError
from sppdet.windows import prune_negatives

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
