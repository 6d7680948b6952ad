"""sppdet.datasets.common, what every reader shares, on hand-made values: box repairs (each kind
counted once per image), paths kept inside the data folder, safe ids, list files, seeded splits
(a partition, the same for the same seed), split names, and class lists."""
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets.common import (OUTSIDE, DataRoots, ImageRecord, LoadReport, canonical_split, finish_classes,
                                    read_list_file, repair_boxes, safe_image_id, seeded_split, select_split)
from sppdet.errors import UserError


def test_repair_boxes_by_hand():
    report = LoadReport()
    # a 50 x 40 image: x in [0, 49], y in [0, 39]
    boxes = np.array([[30.0, 20, 10, 5],   # inverted: becomes [10, 5, 30, 20]
                      [-5, -5, 60, 45],    # past every border: clipped to [0, 0, 49, 39]
                      [7, 7, 7.5, 20],     # 1.5 px wide: below min_size 2
                      [55, 5, 70, 10],     # wholly right of the image
                      [1, 1, 5, 5]])       # fine
    keep = repair_boxes(boxes, 50, 40, 2.0, report, "a.xml")
    assert keep.tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(boxes[[0, 1, 4]], [[10, 5, 30, 20], [0, 0, 49, 39], [1, 1, 5, 5]])
    assert dict(report.counts) == {"inverted box (corners swapped)": 1, "box wholly outside the image (dropped)": 1,
                                   "box extends past the image (clipped)": 1, "zero-area or tiny box (dropped)": 1}
    assert report.examples["inverted box (corners swapped)"] == "a.xml"
    assert repair_boxes(np.zeros((0, 4)), 50, 40, 1.0, report, "b.xml").shape == (0,)


def test_a_box_on_the_border_is_inside_and_one_beyond_leaves_no_sliver():
    report = LoadReport()
    boxes = np.array([[49.0, 39, 49, 39], [0, 0, 0, 0]])  # the last and the first pixel, 1 x 1
    assert repair_boxes(boxes, 50, 40, 1.0, report, "x").tolist() == [True, True] and not report.counts
    # wholly left of the image: clipping alone would leave a 1-px column [0, 5, 0, 30], an object at min size 1
    outside = np.array([[-30.0, 5, -1, 30], [3, 50, 9, 60]])
    assert repair_boxes(outside, 50, 40, 1.0, report, "y").tolist() == [False, False]
    assert report.counts == {"box wholly outside the image (dropped)": 1}  # counted once per image


def test_the_report_counts_and_keeps_the_first_example():
    report = LoadReport()
    assert report.summary() == ""
    for where in ("a", "b", "c"):
        report.add("thing", where)
    report.add("other", "z")
    assert report.counts == {"thing": 3, "other": 1}
    assert report.summary().splitlines() == ["data problems found (repaired or skipped):",
                                             "       1 × other (e.g. z)", "       3 × thing (e.g. a)"]


def test_data_roots_refuse_absolute_and_climbing_names(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    roots, report = DataRoots(root), LoadReport()
    assert roots.inside(root / "img", "a.jpg", report) == root / "img" / "a.jpg"
    assert roots.inside(root / "img", "missing.jpg", report) is None  # not there: not counted
    for name in (str(tmp_path / "secret.jpg"), "../../secret.jpg", "a\x00.jpg"):
        assert roots.inside(root / "img", name, report) is None
    assert report.counts[OUTSIDE] == 3
    assert roots.inside(root, "", report) is None and report.counts[OUTSIDE] == 3
    # a base outside the roots is outside too, even for a plain name
    assert roots.inside(tmp_path, "secret.jpg", report) is None and report.counts[OUTSIDE] == 4
    assert roots.contains(root / "img" / "a.jpg") and not roots.contains(tmp_path / "secret.jpg")


def test_safe_image_id():
    report = LoadReport()
    assert safe_image_id("plain-name_1", report) == "plain-name_1" and not report.counts
    assert safe_image_id(" my  photo\t1 ", report) == "my_photo_1"
    assert report.counts["image id with whitespace (spaces replaced by _ in its id)"] == 1


def test_read_list_file(tmp_path):
    lst = tmp_path / "s.txt"
    lst.write_bytes(b"\xef\xbb\xbf# ids\n000001 extra columns\nimg/000002.jpg\n000001\n/abs/x.jpg\n../y.jpg\n\n")
    report = LoadReport()
    assert read_list_file(lst, report) == ["000001", "000002"]  # first token, as stems, once each
    assert report.counts[OUTSIDE] == 2 and report.counts["duplicate image id in the split file (kept once)"] == 1
    csv = tmp_path / "s.csv"
    csv.write_text("filename,class\nb.jpg,x\na.jpg,y\nb.jpg,z\n")  # a row per object: repeats expected
    report = LoadReport()
    assert read_list_file(csv, report) == ["b", "a"] and not report.counts
    (tmp_path / "bad.csv").write_text("name,class\na.jpg,x\n")
    with pytest.raises(UserError, match="needs a 'filename' column"):
        read_list_file(tmp_path / "bad.csv")
    with pytest.raises(UserError, match="cannot read split file"):
        read_list_file(tmp_path / "missing.txt")


def test_seeded_splits_partition_and_repeat():
    ids = [f"{i:03d}" for i in range(10)]
    test = seeded_split(ids[::-1], "test", 4, 0.3)
    train = seeded_split(ids, "train", 4, 0.3)
    assert len(test) == 3 and sorted(test + train) == ids and test == sorted(test)  # sorted, whatever the order given
    assert seeded_split(ids, "val", 4, 0.3) == seeded_split(ids, "validation", 4, 0.3) == test
    assert seeded_split(ids, "trainval", 4, 0.3) == train
    assert seeded_split(ids, "all", 4, 0.3) == ids
    assert seeded_split(ids, "test", 4, 0.3) == test  # the same seed: the same split
    others = {tuple(seeded_split(ids, "test", s, 0.3)) for s in range(10)}
    assert len(others) > 1  # the seed matters
    assert seeded_split(ids, "test", 4, 0.0) == [] and seeded_split(ids, "train", 4, 1.0) == []
    with pytest.raises(UserError, match="unknown split 'dev'"):
        seeded_split(ids, "dev", 4, 0.3)


def test_select_split_from_a_list_file_counts_missing_ids(tmp_path):
    lst = tmp_path / "mine.txt"
    lst.write_text("b\nzz\na\n")
    report = LoadReport()
    assert select_split(["a", "b", "c"], str(lst), 0, 0.2, report) == ["b", "a"]
    assert report.counts["image id in the split without an annotation file (skipped)"] == 1


def test_canonical_split_names():
    assert [canonical_split(n) for n in ("Train", "training", "VALID", "validation", "val", "Testing", "dev")] == \
        ["train", "train", "val", "val", "val", "test", None]


def test_finish_classes_drops_unlisted_objects():
    rec = ImageRecord("a", Path("a.jpg"), np.array([[0.0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7]]),
                      ["cat", "zebra", "dog"],
                      np.array([False, True, False]), 10, 10)
    other = ImageRecord("b", Path("b.jpg"), np.array([[0.0, 0, 5, 5]]), ["zebra"], np.array([False]), 10, 10)
    report = LoadReport()
    classes, records = finish_classes([rec, other], ["dog", "cat"], report)
    assert classes == ["dog", "cat"]  # the given order
    assert rec.labels == ["cat", "dog"] and rec.difficult.tolist() == [False, False]
    np.testing.assert_array_equal(rec.boxes, [[0, 0, 5, 5], [2, 2, 7, 7]])
    assert other.labels == [] and other.boxes.shape == (0, 4)
    assert report.counts["unknown class 'zebra' (object skipped)"] == 2 and report.unlisted == {"zebra": 2}
    found, _ = finish_classes([ImageRecord("c", Path("c.jpg"), np.zeros((2, 4)), ["b", "a"], np.zeros(2, bool), 9, 9)],
                              None, LoadReport())
    assert found == ["a", "b"]  # collected from the data, sorted


def test_eval_objects_are_one_based_unless_the_file_s_own_are_kept():
    rec = ImageRecord("a", Path("a.jpg"), np.array([[0.0, 1, 9, 19]]), ["cat"], np.array([True]), 20, 20)
    assert rec.eval_objects() == [("cat", [1.0, 2.0, 10.0, 20.0], True)]
    rec.raw_objects = [("cat", [0.0, 0.0, 10.0, 20.0], True)]  # as the annotation had it, unrepaired
    assert rec.eval_objects() == rec.raw_objects
