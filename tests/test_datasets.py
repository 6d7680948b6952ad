"""Data readers: devkit, flat folders, COCO JSON; repairs and skips are counted, never silent."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets import load_dataset
from sppdet.errors import UserError


def xml(filename, objs, size=(100, 80)):
    s = f"<annotation><filename>{filename}</filename>"
    if size is not None:
        s += f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    for name, (x1, y1, x2, y2), *diff in objs:
        s += (f"<object><name>{name}</name><difficult>{int(diff[0]) if diff else 0}</difficult>"
              f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return s + "</annotation>"


def img(path: Path, size=(100, 80), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def test_devkit_layout_one_based_to_zero_based(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    img(root / "JPEGImages" / "000001.jpg")
    (root / "Annotations" / "000001.xml").write_text(xml("000001.jpg", [("dog", (1, 1, 100, 80)),
                                                                          ("cat", (10, 20, 30, 40), 1)]))
    (root / "ImageSets/Main/test.txt").write_text("000001\n")
    ds = load_dataset(tmp_path / "VOCdevkit", "test")  # VOCdevkit/ itself also works
    r = ds.records[0]
    assert ds.classes == ["cat", "dog"] and ds.is_voc2007
    np.testing.assert_array_equal(r.boxes, [[0, 0, 99, 79], [9, 19, 29, 39]])
    assert r.difficult.tolist() == [False, True]
    # the evaluator sees the file's own 1-based numbers
    assert r.eval_objects()[1] == ("cat", [10.0, 20.0, 30.0, 40.0], True)
    with pytest.raises(UserError, match="available splits: test"):
        load_dataset(root, "trainval")


def test_flat_folder_sibling_dirs_any_extension_case(tmp_path):
    img(tmp_path / "images" / "a.JPG")
    img(tmp_path / "images" / "b.png", mode="L")
    (tmp_path / "annots").mkdir()
    (tmp_path / "annots" / "a.xml").write_text(xml("a.JPG", [("roo", (5, 5, 50, 50))]))
    (tmp_path / "annots" / "b.xml").write_text(xml("b.png", [("roo", (5, 5, 50, 50))]))
    ds = load_dataset(tmp_path, "all")
    assert [r.path.name for r in ds.records] == ["a.JPG", "b.png"]
    # seeded splits are deterministic and disjoint
    tr = {r.image_id for r in load_dataset(tmp_path, "train", seed=3, test_fraction=0.5).records}
    te = {r.image_id for r in load_dataset(tmp_path, "test", seed=3, test_fraction=0.5).records}
    assert tr.isdisjoint(te) and tr | te == {"a", "b"}


def test_images_and_xml_in_one_folder_with_list_file(tmp_path):
    for n in "abc":
        img(tmp_path / f"{n}.jpeg")
        (tmp_path / f"{n}.xml").write_text(xml(f"{n}.jpeg", [("x", (2, 2, 20, 20))]))
    (tmp_path / "list.csv").write_text("filename,class\nb.jpeg,x\nc.jpeg,x\nc.jpeg,x\n")
    ds = load_dataset(tmp_path, str(tmp_path / "list.csv"))
    assert [r.image_id for r in ds.records] == ["b", "c"]


def test_repairs_and_skips_are_reported(tmp_path):
    img(tmp_path / "images" / "ok.jpg", size=(100, 80))
    img(tmp_path / "images" / "size.jpg", size=(120, 90))
    (tmp_path / "images" / "notimage.jpg").write_bytes(b"hello")
    a = tmp_path / "annotations"
    a.mkdir()
    a.joinpath("ok.xml").write_text(xml("ok.jpg", [
        ("cat", (50, 60, 10, 20)),      # inverted: swapped
        ("cat", (-5, -5, 500, 500)),    # outside: clipped
        ("cat", (30, 30, 30, 30)),      # 1x1: kept (min size 1)
        ("zebra", (1, 1, 10, 10)),      # unknown class with a class list: dropped
    ]))
    a.joinpath("size.xml").write_text(xml("size.jpg", [("cat", (1, 1, 10, 10))], size=None))
    a.joinpath("notimage.xml").write_text(xml("notimage.jpg", [("cat", (1, 1, 10, 10))]))
    a.joinpath("missing.xml").write_text(xml("missing.jpg", [("cat", (1, 1, 10, 10))]))
    a.joinpath("broken.xml").write_text("<annotation><object>")
    ds = load_dataset(tmp_path, "all", classes=["cat"])
    ok = next(r for r in ds.records if r.image_id == "ok")
    np.testing.assert_array_equal(ok.boxes, [[9, 19, 49, 59], [0, 0, 99, 79], [29, 29, 29, 29]])
    size = next(r for r in ds.records if r.image_id == "size")
    assert (size.width, size.height) == (120, 90)
    c = ds.report.counts
    assert c["inverted box (corners swapped)"] == 1
    assert c["box extends past the image (clipped)"] == 1
    assert c["unknown class 'zebra' (object skipped)"] == 1
    assert c["XML without <size> (size read from the image)"] == 1
    assert c["file that is not a readable image (skipped)"] == 1
    assert c["annotation whose image is missing (skipped)"] == 1
    assert c["malformed XML (image skipped)"] == 1
    assert "data problems found" in ds.report.summary()


def test_coco_json(tmp_path):
    img(tmp_path / "images" / "p.jpg", size=(64, 48))
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "p.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0},
                        {"id": 2, "image_id": 7, "category_id": 9, "bbox": [0, 0, 5, 5], "iscrowd": 1}],
        "categories": [{"id": 9, "name": "b"}, {"id": 3, "name": "a"}]}))
    ds = load_dataset(tmp_path / "ann.json", "all")
    assert ds.classes == ["a", "b"]  # by category id
    r = ds.records[0]
    np.testing.assert_array_equal(r.boxes, [[10, 5, 29, 14], [0, 0, 4, 4]])
    assert r.labels == ["a", "b"] and r.difficult.tolist() == [False, True]


def test_empty_split_and_missing_path_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_dataset(tmp_path / "nope", "all")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.xml").write_text(xml("a.jpg", [("x", (1, 1, 5, 5))]))
    with pytest.raises(UserError, match="no usable images"):
        load_dataset(tmp_path, "all")


def test_shared_data_sets_load_as_they_are(shared_data):
    bccd = load_dataset(shared_data / "bccd" / "BCCD", "trainval")
    assert len(bccd) == 292 and bccd.classes == ["Platelets", "RBC", "WBC"]
    assert len(load_dataset(shared_data / "bccd" / "BCCD", "test")) == 72
    rac = load_dataset(shared_data / "raccoon", str(shared_data / "raccoon" / "data" / "test_labels.csv"))
    assert len(rac) == 40 and rac.classes == ["raccoon"]
    kan = load_dataset(shared_data / "kangaroo", "all")
    assert kan.classes == ["kangaroo"] and len(kan) >= 160


def test_selective_search_does_not_depend_on_history():
    """OpenCV ranks with C rand(): proposals of an image must not depend on earlier calls."""
    from sppdet.proposals import selective_search

    rng = np.random.default_rng(0)
    a_img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    b_img = (rng.random((100, 140, 3)) * 255).astype(np.uint8)
    first = selective_search(a_img, max_boxes=300)
    selective_search(b_img, max_boxes=300)
    np.testing.assert_array_equal(selective_search(a_img, max_boxes=300), first)


def test_duplicate_ids_in_a_split_file_are_counted(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    img(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(xml("a.jpg", [("dog", (1, 1, 50, 50))]))
    (root / "ImageSets/Main/test.txt").write_text("a\na\n")
    ds = load_dataset(root, "test")
    assert len(ds) == 1 and ds.report.counts["duplicate image id in the split file (kept once)"] == 1
