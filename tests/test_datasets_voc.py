"""sppdet.datasets.voc, beyond test_datasets.py's devkit case: where the devkit is found, the
XML's own numbers kept for evaluation while the record's boxes are repaired, <size> checked
against the image, the image found by <filename> or by its stem in any extension's case, and
per-class split files not offered as splits."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets.common import LoadReport
from sppdet.datasets.voc import find_devkit_root, load_voc, parse_flag, parse_voc_xml
from sppdet.errors import UserError


def devkit(root: Path) -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def xml(filename="", size=(40, 30), objects=(("cat", (1, 1, 20, 20), "0"),)):
    s = f"<annotation><filename>{filename}</filename>"
    if size:
        s += f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    for name, (x1, y1, x2, y2), diff in objects:
        s += (f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
              f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return s + "</annotation>"


def test_find_devkit_root(tmp_path):
    assert find_devkit_root(tmp_path) is None
    one = devkit(tmp_path / "VOCdevkit" / "VOC2007")
    assert find_devkit_root(tmp_path / "VOCdevkit") == one == find_devkit_root(one)
    devkit(tmp_path / "VOCdevkit" / "VOC2012")
    with pytest.raises(UserError, match=r"holds several devkit folders \(VOC2007, VOC2012\); point --data at one"):
        find_devkit_root(tmp_path / "VOCdevkit")


def test_parse_flag():
    report = LoadReport()
    assert [parse_flag(v, "truncated", report, "a.xml") for v in ("1", " Yes ", "TRUE", "1.0")] == [True] * 4
    assert [parse_flag(v, "truncated", report, "a.xml") for v in (None, "0", "no", "", "0.0")] == [False] * 5
    assert not report.counts
    assert parse_flag("2", "truncated", report, "a.xml") is False
    assert report.counts["unreadable <truncated> value (read as 0)"] == 1
    assert report.examples["unreadable <truncated> value (read as 0)"] == "a.xml: '2'"


def test_parse_voc_xml_is_zero_based_and_counts_what_it_skips(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(xml("a.jpg", size=("40.0", "30"), objects=[("cat", (1, 2, 20, 30), "1"), ("", (1, 1, 5, 5), "0"),
                                                            ("dog", (1, "x", 5, 5), "0")]))
    report = LoadReport()
    parsed = parse_voc_xml(p, report)
    assert parsed == {"filename": "a.jpg", "width": 40, "height": 30,
                      "objects": [("cat", [0.0, 1.0, 19.0, 29.0], True)]}
    assert report.counts == {"object without a <name> (skipped)": 1, "object without a readable <bndbox> (skipped)": 1}
    p.write_text("<annotation><object>")
    assert parse_voc_xml(p, report) is None and report.counts["malformed XML (image skipped)"] == 1


def test_records_keep_the_file_s_numbers_for_evaluation(tmp_path):
    root = devkit(tmp_path / "VOC2007")
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "a.jpg")
    # the box runs past the 40 x 30 image; the <size> is wrong
    (root / "Annotations" / "a.xml").write_text(xml("a.jpg", size=(50, 30), objects=[("cat", (10, 5, 45, 30), "0")]))
    ds = load_voc(root, "all", None)
    (r,) = ds.records
    assert (r.width, r.height) == (40, 30)  # the image's size wins
    np.testing.assert_array_equal(r.boxes, [[9, 4, 39, 29]])  # 0-based, clipped to the last pixel
    assert r.eval_objects() == [("cat", [10.0, 5.0, 45.0, 30.0], False)]  # what the devkit scores against
    assert ds.report.counts["XML <size> disagrees with the image (image size used)"] == 1
    assert ds.report.counts["box extends past the image (clipped)"] == 1
    assert ds.is_voc2007 and ds.source == f"{root} (every annotation)"


def test_the_image_by_filename_or_by_stem_in_any_case(tmp_path):
    root = devkit(tmp_path / "set")
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "photo.png")
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "b.JPEG")
    (root / "Annotations" / "a.xml").write_text(xml("photo.png"))  # named by <filename>
    (root / "Annotations" / "b.xml").write_text(xml(""))  # no <filename>: b.* in any extension
    (root / "Annotations" / "c.xml").write_text(xml(""))  # no image at all
    ds = load_voc(root, "all", None)
    assert [(r.image_id, r.path.name) for r in ds.records] == [("a", "photo.png"), ("b", "b.JPEG")]
    assert ds.report.counts["annotation whose image is missing (skipped)"] == 1
    assert not ds.is_voc2007


def test_per_class_split_files_are_not_offered(tmp_path):
    root = devkit(tmp_path / "VOC2007")
    for name in ("trainval", "test", "cat_trainval"):
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("")
    with pytest.raises(UserError, match=r"available splits: test, trainval \(or use --split all\)"):
        load_voc(root, "val", None)
