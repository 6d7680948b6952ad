"""Bad annotations and data-set layouts (VOC XML, flat folders, COCO, YOLO, list files, split
names, external proposal files): refused with one UserError, or skipped and counted."""
import json
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets import load_dataset
from sppdet.datasets.common import OUTSIDE
from sppdet.errors import UserError

from .makers import MISSING, _xml, _img, _devkit


def test_xml_entity_attacks_are_refused_and_counted(tmp_path):
    root = _devkit(tmp_path / "VOC2007", 3)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 9))
              + "]>")
    (root / "Annotations" / "000.xml").write_text(laughs + _xml("000.jpg").replace("dog", "&lol8;"))
    (root / "Annotations" / "001.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
        + _xml("001.jpg").replace("dog", "&x;"))
    ds = load_dataset(root, "all")
    assert [r.image_id for r in ds.records] == ["002"]
    assert ds.report.counts["malformed XML (image skipped)"] == 2
    assert "TOPSECRET" not in ds.report.summary() and ds.classes == ["dog"]


def test_difficult_values(tmp_path):
    root = _devkit(tmp_path / "VOC2007", 1)
    values = ["1", "yes", "True", " 0 ", "no", "false", "", "maybe", "2"]
    objs = [("dog", (1, 1, 10 + i, 10), v) for i, v in enumerate(values)]
    (root / "Annotations" / "000.xml").write_text(_xml("000.jpg", objs))
    ds = load_dataset(root, "all")
    assert ds.records[0].difficult.tolist() == [True, True, True, False, False, False, False, False, False]
    assert ds.report.counts["unreadable <difficult> value (read as 0)"] == 2


def test_non_finite_xml_coordinates_and_sizes(tmp_path):
    root = _devkit(tmp_path / "VOC2007", 1)
    objs = [("dog", ("nan", 1, 10, 10), "0"), ("dog", (1, 1, "inf", 10), "0"), ("cat", (2, 2, 9, 9), "0")]
    (root / "Annotations" / "000.xml").write_text(_xml("000.jpg", objs, size=("inf", "nan")))
    ds = load_dataset(root, "all")
    assert ds.records[0].labels == ["cat"]
    assert ds.report.counts["object without a readable <bndbox> (skipped)"] == 2
    assert ds.report.counts["XML without <size> (size read from the image)"] == 1


def test_no_image_outside_the_data_folder_is_opened(tmp_path):
    outside = _img(tmp_path / "elsewhere" / "private.jpg", size=(64, 48))
    root = _devkit(tmp_path / "data" / "VOC2007", 4)
    (root / "Annotations" / "000.xml").write_text(_xml(str(outside)))  # absolute
    (root / "Annotations" / "001.xml").write_text(_xml("../../../elsewhere/private.jpg"))  # climbs
    (root / "JPEGImages" / "002.jpg").unlink()
    (root / "JPEGImages" / "002.jpg").symlink_to(outside)  # the owner's own link: followed
    ds = load_dataset(root, "all")
    assert [r.image_id for r in ds.records] == ["002", "003"]
    assert ds.report.counts[OUTSIDE] == 2
    assert ds.records[0].path == root / "JPEGImages" / "002.jpg" and (ds.records[0].width, ds.records[0].height) == (64, 48)

    # flat folder: a symlinked image and an XML naming a path outside
    flat = tmp_path / "flat"
    _img(flat / "a.jpg")
    (flat / "a.xml").write_text(_xml("a.jpg"))
    (flat / "b.jpg").symlink_to(outside)
    (flat / "b.xml").write_text(_xml("b.jpg"))
    (flat / "c.xml").write_text(_xml("../elsewhere/private.jpg"))
    ds = load_dataset(flat, "all")
    assert [r.image_id for r in ds.records] == ["a", "b"] and ds.report.counts[OUTSIDE] == 1

    # list file entries that are absolute or climb are skipped, not looked up
    lst = tmp_path / "list.txt"
    lst.write_text(f"{outside}\n../elsewhere/private.jpg\n003\n")
    ds = load_dataset(root, str(lst))
    assert [r.image_id for r in ds.records] == ["003"] and ds.report.counts[OUTSIDE] == 2


def test_yolo_lists_stay_inside_and_ids_are_safe(tmp_path):
    """The YOLO reader gets the same hardening as the others: list entries outside the data
    set are never opened, whitespace ids are made safe, huge images are counted at load."""
    outside = _img(tmp_path / "elsewhere" / "private.jpg")
    root = tmp_path / "yolo"
    for name in ("a.jpg", "my photo.jpg"):
        _img(root / "images" / name)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / (Path(name).stem + ".txt")).write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("path: .\ntrain: train.txt\nnames: [dog]\n")
    (root / "train.txt").write_text(f"images/a.jpg\n{outside}\n../elsewhere/private.jpg\n{root / 'images' / 'my photo.jpg'}\n")
    ds = load_dataset(root, "train")
    assert [r.image_id for r in ds.records] == ["a", "my_photo"]
    assert ds.report.counts[OUTSIDE] == 2
    assert ds.records[1].path.name == "my photo.jpg"


def test_coco_file_name_outside(tmp_path):
    outside = _img(tmp_path / "elsewhere" / "x.jpg")
    _img(tmp_path / "elsewhere" / "y.jpg")
    d = tmp_path / "coco"
    _img(d / "images" / "ok.jpg")
    coco = {"images": [{"id": 1, "file_name": str(outside)}, {"id": 2, "file_name": "../../elsewhere/y.jpg"},
                       {"id": 3, "file_name": "ok.jpg"}],
            "annotations": [{"image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in (1, 2, 3)],
            "categories": [{"id": 1, "name": "dog"}]}
    (d / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(d / "ann.json", "all")
    assert [r.image_id for r in ds.records] == ["ok"] and ds.report.counts[OUTSIDE] == 2


def test_coco_malformed_entries_are_counted(tmp_path):
    d = tmp_path / "coco"
    for name in ("a", "b", "c", "dup"):
        _img(d / "images" / f"{name}.jpg", size=(50, 40))
    good = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}, {"id": 3, "file_name": None}, "junk",
                   {"id": 1, "file_name": "b.jpg"},  # duplicate id: its annotations go to a.jpg
                   {"id": 4, "file_name": "c.jpg"}, {"id": 5, "file_name": "sub/c.png"},  # duplicate stem
                   {"id": [6], "file_name": "dup.jpg"}],
        "annotations": [good, {**good, "bbox": None}, {**good, "bbox": "1,1,10,10"}, {**good, "bbox": [1, 2, 3]},
                        {**good, "bbox": [1, "x", 3, 4]}, {**good, "bbox": [1, True, 3, 4]},
                        {**good, "bbox": [1, float("nan"), 3, 4]}, {**good, "category_id": 99},
                        {**good, "category_id": [1]}, {**good, "image_id": 42}, {**good, "image_id": {"a": 1}},
                        "junk", {**good, "image_id": 4, "iscrowd": "yes"}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2}, {"id": 3, "name": ""}, 7],
    }
    (d / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(d / "ann.json", "all")
    by_id = {r.image_id: r for r in ds.records}
    assert sorted(by_id) == ["a", "c"] and ds.classes == ["dog"]
    assert len(by_id["a"].boxes) == 1 and len(by_id["c"].boxes) == 1
    c = ds.report.counts
    assert c["image entry without an id or a file_name (skipped)"] == 4
    assert c["duplicate image id (its annotations go to the first image)"] == 1
    assert c["duplicate image file stem (first kept)"] == 1
    assert c["annotation without a bbox of 4 finite numbers (skipped)"] == 6
    assert c["annotation with an unknown category_id (skipped)"] == 2
    assert c["annotation of an unknown image_id (skipped)"] == 3
    assert c["category without an id or a name (skipped)"] == 3
    assert c["unreadable iscrowd value (read as 0)"] == 1


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "top level is a list"),
    ('{"images": {}, "categories": []}', "'images' must be a list"),
    ('{"images": [], "categories": [], "annotations": 3}', "'annotations' must be a list"),
    ('{"images": []}', "no 'categories' key"),
    ("{not json", "not valid JSON"),
])
def test_coco_wrong_top_level_is_a_user_error(tmp_path, content, message):
    p = tmp_path / "ann.json"
    p.write_text(content)
    with pytest.raises(UserError, match=message) as exc:
        load_dataset(p, "all")
    assert str(p) in str(exc.value)


def test_list_file_missing_ids_counted_in_every_layout(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("000\nnope1\n001\nnope2\n")
    voc = _devkit(tmp_path / "VOC2007", 2)
    flat = tmp_path / "flat"
    for i in range(2):
        _img(flat / f"{i:03d}.jpg")
        (flat / f"{i:03d}.xml").write_text(_xml(f"{i:03d}.jpg"))
    coco_dir = tmp_path / "coco"
    for i in range(2):
        _img(coco_dir / f"{i:03d}.jpg")
    (coco_dir / "ann.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i:03d}.jpg"} for i in range(2)],
        "annotations": [{"image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(2)],
        "categories": [{"id": 1, "name": "dog"}]}))
    for path in (voc, flat, coco_dir / "ann.json"):
        ds = load_dataset(path, str(lst))
        assert [r.image_id for r in ds.records] == ["000", "001"], path
        assert ds.report.counts[MISSING] == 2, path


def test_ids_with_whitespace_are_mapped_and_evaluate(tmp_path):
    from sppdet.evaluation.voc import evaluate_voc, write_comp4

    flat = tmp_path / "flat"
    _img(flat / "my photo 1.jpg")
    (flat / "my photo 1.xml").write_text(_xml("my photo 1.jpg", [("dog", (5, 5, 20, 20), "0")]))
    ds = load_dataset(flat, "all")
    r = ds.records[0]
    assert r.image_id == "my_photo_1" and r.path.name == "my photo 1.jpg"
    assert ds.report.counts["image id with whitespace (spaces replaced by _ in its id)"] == 1
    dets = [{"image": "my photo 1.jpg", "label": "dog", "score": 1.0, "bbox": [4.0, 4.0, 19.0, 19.0]}]
    assert evaluate_voc(ds.records, dets, ["dog"])["AP"]["dog"] == pytest.approx(1.0)
    (p,) = write_comp4(dets, ["dog"], "test", tmp_path / "comp4", ds.records)
    assert p.read_text().split() == ["my_photo_1", "1.0", "5.0", "5.0", "20.0", "20.0"]


def test_coco_boxes_that_are_not_objects_are_not_counted(tmp_path):
    from sppdet.evaluation.voc import evaluate_voc

    d = tmp_path / "coco"
    _img(d / "images" / "a.jpg", size=(50, 40))
    ann = [[5, 5, 10, 10], [5, 5, 0, 10], [5, 5, 10, 0], [5, 5, -3, 4],  # one object, three without area
           [60, 5, 10, 10], [5, 45, 10, 10], [-30, 5, 10, 10]]  # wholly outside the 50×40 image
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": b} for b in ann],
            "categories": [{"id": 1, "name": "dog"}]}
    (d / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(d / "ann.json", "all")
    np.testing.assert_array_equal(ds.records[0].boxes, [[5, 5, 14, 14]])
    c = ds.report.counts
    assert c["COCO bbox with zero or negative width or height (skipped)"] == 3
    assert c["box wholly outside the image (dropped)"] == 1  # counted per image, like the other repairs
    # npos is 1: one perfect detection gives AP 1
    res = evaluate_voc(ds.records, [{"image": "a", "label": "dog", "score": 1.0, "bbox": [5, 5, 14, 14]}],
                       ds.classes)
    assert res["npos"]["dog"] == 1 and res["AP"]["dog"] == pytest.approx(1.0)


def test_yolo_names_with_gaps_invent_no_class(tmp_path):
    root = tmp_path / "yolo"
    _img(root / "images" / "a.jpg", size=(100, 100))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.2 0.2\n1 0.7 0.7 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\nnames: {0: cat, 2: dog}\n")
    ds = load_dataset(root, "all")
    assert ds.classes == ["cat", "dog"]
    assert sorted(ds.records[0].labels) == ["cat", "dog"]
    assert ds.report.counts["class id out of range (object skipped)"] == 1  # id 1 has no name


def test_a_split_name_is_looked_up_in_the_data_set_first(tmp_path, monkeypatch):
    root = tmp_path / "voc"
    _devkit(root, 3)
    (root / "ImageSets" / "Main" / "test.txt").write_text("001\n002\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test").write_text("000\n")  # a stray file in the working folder
    assert [r.image_id for r in load_dataset(root, "test").records] == ["001", "002"]
    assert [r.image_id for r in load_dataset(root, "./test").records] == ["000"]  # a path is a list file
    flat = tmp_path / "flat"
    for i in range(5):
        _img(flat / f"{i}.jpg")
        (flat / f"{i}.xml").write_text(_xml(f"{i}.jpg"))
    seeded = [r.image_id for r in load_dataset(flat, "test", test_fraction=0.4).records]
    assert len(seeded) == 2 and seeded != ["000"]


def test_external_proposals_with_bad_numbers(tmp_path):
    from sppdet.proposals import load_external

    (tmp_path / "a.txt").write_text("0 0 10 10\n1 1 nan 5\n")
    (tmp_path / "b.txt").write_text("0 0 10 10 4\n")
    np.save(tmp_path / "c.npy", np.array([[0, 0, np.inf, 3]]))
    (tmp_path / "d.txt").write_text("0 0 30 10\n2 2 5 5\n")
    for image_id, message in (("a", "NaN or infinite"), ("b", "not 4 per box"), ("c", "NaN or infinite")):
        with pytest.raises(UserError, match=message):
            load_external(tmp_path, image_id, 20, 20)
    np.testing.assert_array_equal(load_external(tmp_path, "d", 20, 20), [[0, 0, 19, 10], [2, 2, 5, 5]])
