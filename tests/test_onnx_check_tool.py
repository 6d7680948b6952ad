"""tools/onnx_check.py's matching, on hand-made detection lists: a pair within the tolerances,
a box or score too far, and what counts as a tie at the cut (the per-image cap or the threshold)
against a real disagreement."""
import numpy as np
import pytest

from sppdet.detections import Detections

NAMES = ["a", "b"]


def dets(rows):
    """``rows``: (label, score, x1, y1, x2, y2)."""
    r = np.array(rows, dtype=float).reshape(-1, 6)
    return Detections(r[:, 2:], r[:, 1], r[:, 0].astype(np.int64), names=NAMES)


@pytest.fixture
def check(load_tool):
    return load_tool("onnx_check")


BASE = [(0, 0.9, 0, 0, 10, 10), (0, 0.8, 50, 50, 70, 70), (1, 0.7, 5, 5, 30, 30), (1, 0.40, 80, 0, 99, 20)]


def test_the_same_lists_within_rounding_agree(check):
    b = [(l, s + 2e-4, x1 + 0.3, y1, x2, y2 - 0.2) for l, s, x1, y1, x2, y2 in BASE[::-1]]  # any order
    m = check.match(dets(BASE), dets(b), 0.5, 1e-3)
    assert m["unpaired"] == m["at_cut"] == 0 and m["box"] == pytest.approx(0.3) and m["score"] == pytest.approx(2e-4)
    assert check.agrees(m, 0.5, 1e-3)
    assert not check.agrees(m, 0.25, 1e-3) and not check.agrees(m, 0.5, 1e-4)


def test_a_box_moved_past_the_tolerance_is_unpaired_on_both_sides(check):
    b = list(BASE)
    b[1] = (0, 0.8, 50, 50, 70, 75)  # 5 px
    m = check.match(dets(BASE), dets(b), 0.5, 1e-3)
    assert m["unpaired"] == 2 and not check.agrees(m, 0.5, 1e-3)
    # the same class's other box is not taken in its place
    assert m["box"] == 0.0


def test_a_class_swapped_for_another_is_a_disagreement(check):
    b = list(BASE)
    b[2] = (0, 0.7, 5, 5, 30, 30)
    m = check.match(dets(BASE), dets(b), 0.5, 1e-3, threshold=0.25, cap=100)
    assert m["unpaired"] == 2 and not check.agrees(m, 0.5, 1e-3)


def test_at_a_full_cap_an_equal_score_may_take_the_last_place(check):
    # cap 4: both lists full; the 4th place went to a different window scoring the same within 1e-3
    b = BASE[:3] + [(0, 0.4004, 20, 60, 40, 90)]
    m = check.match(dets(BASE), dets(b), 0.5, 1e-3, threshold=0.0, cap=4)
    assert m["unpaired"] == 0 and m["at_cut"] == 2 and check.agrees(m, 0.5, 1e-3)
    # without the cap, or when the lists are not full, that is a real difference
    assert not check.agrees(check.match(dets(BASE), dets(b), 0.5, 1e-3, threshold=0.0), 0.5, 1e-3)
    assert not check.agrees(check.match(dets(BASE), dets(b), 0.5, 1e-3, threshold=0.0, cap=5), 0.5, 1e-3)
    # nor may the last place go to something scoring clearly less: the other list kept it over 0.40
    low = BASE[:3] + [(0, 0.30, 20, 60, 40, 90)]
    m = check.match(dets(BASE), dets(low), 0.5, 1e-3, threshold=0.0, cap=4)
    # the 0.30 may be missing from a list full of better ones; the 0.40 not from one that kept a 0.30
    assert m["unpaired"] == 1 and m["at_cut"] == 1
    # and a detection high in the list is never at the cut
    top = [(1, 0.95, 60, 0, 90, 30)] + BASE[1:]
    m = check.match(dets(BASE), dets(top), 0.5, 1e-3, threshold=0.0, cap=4)
    assert m["unpaired"] == 2 and not check.agrees(m, 0.5, 1e-3)


def test_at_the_threshold_one_engine_may_keep_what_the_other_drops(check):
    edge = BASE + [(1, 0.2504, 0, 40, 20, 60)]
    m = check.match(dets(edge), dets(BASE), 0.5, 1e-3, threshold=0.25, cap=100)
    assert m["at_cut"] == 1 and m["unpaired"] == 0 and check.agrees(m, 0.5, 1e-3)
    # per-class thresholds: class 1's is 0.5 here, so 0.2504 is far from it
    m = check.match(dets(edge), dets(BASE), 0.5, 1e-3, threshold=np.array([0.25, 0.5]), cap=100)
    assert m["unpaired"] == 1 and not check.agrees(m, 0.5, 1e-3)
    above = BASE + [(1, 0.30, 0, 40, 20, 60)]
    assert not check.agrees(check.match(dets(above), dets(BASE), 0.5, 1e-3, threshold=0.25, cap=100), 0.5, 1e-3)


def test_empty_lists(check):
    m = check.match(dets([]), dets([]), 0.5, 1e-3, threshold=0.25, cap=100)
    assert check.agrees(m, 0.5, 1e-3) and m["count"] == [0, 0]
    m = check.match(dets(BASE[:1]), dets([]), 0.5, 1e-3, threshold=0.25, cap=100)
    assert m["unpaired"] == 1 and not check.agrees(m, 0.5, 1e-3)
