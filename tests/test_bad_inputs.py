"""Every class of bad input is refused up front (one UserError naming the value) or skipped and
counted, never a traceback and never silently wrong. Inputs are generated here."""
import dataclasses
import json
import logging
import math
import os
import struct
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sppdet.config import RULES, Config, config_from_dict, load_config
from sppdet.datasets import load_dataset
from sppdet.datasets.common import OUTSIDE
from sppdet.images import header_size as image_size
from sppdet.errors import UserError

MISSING = "image id in the split without an annotation file (skipped)"


# -- 1. config values -------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("test.nms=2", "test.nms must be in (0, 1], got 2"),
    ("test.nms=-1", "test.nms must be in (0, 1], got -1"),
    ("test.max_per_image=-1", "test.max_per_image must be in [1, "),
    ("test.score_thresh=.nan", "test.score_thresh must be a finite number, got nan"),
    ("proposals.max_boxes=0", "proposals.max_boxes must be in [1, "),
    ("proposals.max_boxes=-5", "proposals.max_boxes must be in [1, "),
    ("svm.epochs=0", "svm.epochs must be in [1, "),
    ("features.max_size=0", "features.max_size must be in [1, "),
    ("bbox_reg.min_iou=5", "bbox_reg.min_iou must be in (0, 1], got 5"),
    ("svm.C=.nan", "svm.C must be a finite number in (0, inf), got nan"),
    ("svm.C=-.inf", "svm.C must be a finite number"),
    ("finetune.lr=-0.1", "finetune.lr must be in (0, inf), got -0.1"),
    ("finetune.fg_fraction=1.5", "finetune.fg_fraction must be in (0, 1]"),
    ("data.test_fraction=-0.2", "data.test_fraction must be in [0, 1]"),
    ("features.levels=[6, 0]", "features.levels must be a non-empty list of integers in [1, 64]"),
    ("features.levels=[2.5]", "features.levels must be a non-empty list of integers"),
    ("features.scales=[-688]", "features.scales must be a non-empty list of integers in [1, "),
    ("features.scales=['a']", "features.scales must be a non-empty list of integers"),
    ("data.classes=[1, 2]", "data.classes must be a list of distinct non-empty strings"),
    ("data.classes=[cat, cat]", "data.classes must be a list of distinct non-empty strings"),
    ("backbone.weights=[a]", "backbone.weights must be a non-empty string"),
    ("proposals.external_dir=3", "proposals.external_dir must be a non-empty string"),
    ("backbone.name=''", "backbone.name must be a non-empty string"),
    ("seed=-1", "seed must be in [0, "),
    ("finetune.bg_iou_low=0.7", "finetune.bg_iou_low (0.7) must be below finetune.bg_iou_high"),
    ("svm.evict_thresh=0", "svm.evict_thresh (0) must not exceed svm.hard_thresh"),
])
def test_bad_config_values_are_refused_with_the_range(override, message):
    with pytest.raises(UserError) as exc:
        load_config(None, [override])
    assert message in str(exc.value)


def _fields(cls, prefix=""):
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _fields(type(default), f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_config_field_has_a_rule_and_every_rule_bites():
    assert set(_fields(Config)) == set(RULES)
    Config().validate()
    for key, rule in RULES.items():
        section, _, name = key.rpartition(".")
        bad = []
        if rule.kind in ("int", "float") and rule.interval:
            lo = float(rule.interval[1:-1].split(",")[0])
            if math.isfinite(lo):  # just below the lower bound (or at it, when it is excluded)
                bad.append(int(lo) - 1 if rule.kind == "int" else (lo if rule.interval[0] == "(" else lo - 0.5))
        if rule.kind == "float":
            bad += [float("nan"), float("inf")]
        if rule.kind in ("int", "bool", "choice", "str"):
            bad.append([1])  # a list where a scalar belongs
        if rule.kind == "ints":
            bad += ["x", [], [0]]
        if rule.kind == "strs":
            bad += [7, "cat"]
        for value in bad:
            tree = Config().to_dict()
            (tree[section] if section else tree)[name] = value
            with pytest.raises(UserError, match=key.replace(".", r"\.")):
                config_from_dict(tree)  # the path a run's config.yaml takes


def test_config_built_in_code_is_checked_too():
    cfg = Config()
    cfg.test.nms = float("nan")
    with pytest.raises(UserError, match="test.nms"):
        cfg.validate()


def test_classifier_config_and_synth_counts():
    from sppdet.classification import ClsConfig
    from sppdet.datasets.synth import write_synthetic

    for kwargs, key in [({"levels": [0]}, "levels"), ({"sizes": [0]}, "sizes"), ({"epochs": 0}, "epochs"),
                        ({"batch_size": -1}, "batch_size"), ({"lr": float("nan")}, "lr"),
                        ({"hidden": 0}, "hidden"), ({"train_blocks": -1}, "train_blocks")]:
        with pytest.raises(UserError, match=f"classifier config: {key} must be"):
            ClsConfig(**kwargs)
    for n in (0, -3):
        with pytest.raises(UserError, match="number of images must be a positive integer"):
            write_synthetic("/nonexistent/never/created", n)
    assert not Path("/nonexistent/never").exists()


# -- helpers: small data sets ---------------------------------------------------------------
def _xml(filename, objs=(("dog", (1, 1, 20, 20), "0"),), size=(40, 30), extra=""):
    s = f"{extra}<annotation><filename>{filename}</filename>"
    if size:
        s += f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    for name, (x1, y1, x2, y2), diff in objs:
        s += (f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin>"
              f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return s + "</annotation>"


def _img(path, size=(40, 30), colour=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _devkit(root, n=3):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _img(root / "JPEGImages" / f"{i:03d}.jpg")
        (root / "Annotations" / f"{i:03d}.xml").write_text(_xml(f"{i:03d}.jpg"))
    return root


# -- 2. XML -------------------------------------------------------------------------------------
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


# -- 3. paths outside the data folder -----------------------------------------------------------
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


# -- 4. COCO shapes ---------------------------------------------------------------------------
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


# -- 5. splits and ids ----------------------------------------------------------------------------
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


# -- 6. evaluation outputs ------------------------------------------------------------------------
def test_comp4_with_path_unsafe_class_names(tmp_path):
    from sppdet.evaluation.voc import write_comp4

    classes = ["a/b", "a_b", "../x", "c d", "plain"]
    dets = [{"image": "img1.jpg", "label": c, "score": float(i), "bbox": [0, 0, 9, 9]} for i, c in enumerate(classes)]
    out = tmp_path / "comp4"
    paths = write_comp4(dets, classes, "test", out)
    assert len(set(paths)) == 5 and all(p.parent == out and p.is_file() for p in paths)
    assert paths[4].name == "comp4_det_test_plain.txt"
    for i, p in enumerate(paths):  # each class's file holds that class's detection
        assert p.read_text().split()[:2] == ["img1", repr(float(i))]
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)  # nothing else, no temporaries


@pytest.mark.parametrize("text, message", [
    ('[{"image": "a.jpg", "label": "dog", "score": NaN, "bbox": [0, 0, 1, 1]}]', "contains NaN"),
    ('[{"image": "a.jpg", "label": "dog", "score": 1e999, "bbox": [0, 0, 1, 1]}]', "entry 0: score must be a finite"),
    ('[{"image": "a.jpg", "label": "dog", "score": true, "bbox": [0, 0, 1, 1]}]', "entry 0: score must be a finite"),
    ('[{"image": "a.jpg", "label": "dog", "score": 1, "bbox": [0, 0, 1, 1]},'
     ' {"image": "a.jpg", "label": "dog", "score": 1, "bbox": [0, 0, 1]}]', "entry 1: bbox must be 4 finite"),
    ('[{"image": "a.jpg", "label": "dog", "score": 1, "bbox": [0, Infinity, 1, 1]}]', "contains Infinity"),
    ('[{"image": "a.jpg", "label": "dog", "score": 1, "bbox": [0, false, 1, 1]}]', "entry 0: bbox must be 4"),
    ('[{"image": 3, "label": "dog", "score": 1, "bbox": [0, 0, 1, 1]}]', "entry 0: image must be"),
    ('[{"image": "a.jpg", "score": 1, "bbox": [0, 0, 1, 1]}]', "entry 0 has no label"),
    ('[7]', "entry 0 is a int"),
    ('{"a": 1}', "must hold a JSON list"),
    ('[{"image"', "not valid JSON"),
])
def test_read_detections_is_strict(tmp_path, text, message):
    from sppdet.evaluation.detections import read_detections

    p = tmp_path / "d.json"
    p.write_text(text)
    with pytest.raises(UserError, match=message):
        read_detections(p)


def test_read_detections_and_matching(tmp_path):
    from sppdet.datasets.common import ImageRecord
    from sppdet.evaluation.detections import match_to_records, read_detections

    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"image": "x.jpg", "label": "dog", "score": 2, "bbox": [0, 0, 3, 4], "extra": 1}]))
    assert read_detections(p) == [{"image": "x.jpg", "label": "dog", "score": 2.0, "bbox": [0.0, 0.0, 3.0, 4.0],
                                   "extra": 1}]
    n = 20000
    recs = [ImageRecord(f"id{i}", Path(f"/data/JPEGImages/img{i}.jpg"), np.zeros((0, 4)), [], np.zeros(0, bool), 9, 9)
            for i in range(n)]
    names = [f"img{i}.jpg" if i % 4 == 0 else f"JPEGImages/img{i}.jpg" if i % 4 == 1 else f"id{i}"
             if i % 4 == 2 else f"other{i}.jpg" for i in range(n)]
    dets = [{"image": s, "label": "dog", "score": 1.0, "bbox": [0, 0, 1, 1]} for s in names]
    t = time.perf_counter()
    kept, stray = match_to_records(dets, recs)
    assert time.perf_counter() - t < 2.0  # O(n + m): the O(n·m) version took 18.6 s
    assert stray == n // 4 and [d["image"] for d in kept] == [s for i, s in enumerate(names) if i % 4 != 3]


def test_results_written_atomically(tmp_path, monkeypatch):
    import sppdet.fileio as fileio
    from sppdet.evaluation.report import write_results

    res = {"metric": "voc07", "mAP": 0.5, "AP": {"a/b": 0.5}, "npos": {"a/b": 1}}
    dets = [{"image": "i.jpg", "label": "a/b", "score": 1.0, "bbox": [0, 0, 1, 1]}]
    write_results(tmp_path / "ev", res, dets, ["a/b"], "test", 1)
    before = (tmp_path / "ev" / "metrics.json").read_bytes()
    assert json.loads(before)["AP"] == {"a/b": 0.5}  # the real class name inside the file

    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("metrics.json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full_disk)
    with pytest.raises(OSError):
        write_results(tmp_path / "ev", {**res, "mAP": 0.9}, dets, ["a/b"], "test", 1)
    assert (tmp_path / "ev" / "metrics.json").read_bytes() == before
    leftovers = [p for p in (tmp_path / "ev").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# -- 7. caches --------------------------------------------------------------------------------
def _flip_every_byte(path: Path, load, expected, recomputed, step: int = 1) -> tuple[int, int]:
    """Flip each (``step``-th) byte of ``path`` in turn; every load must be detected
    (recomputed) or give the original content."""
    original = path.read_bytes()
    detected = same = 0
    logging.disable(logging.WARNING)
    try:
        for i in range(0, len(original), step):
            damaged = bytearray(original)
            damaged[i] ^= 0x5A
            path.write_bytes(bytes(damaged))
            n = recomputed[0]
            got = load()
            if recomputed[0] > n:
                detected += 1
            else:
                assert expected(got), f"byte {i}: damaged cache content was used"
                same += 1
    finally:
        logging.disable(logging.NOTSET)
    return detected, same


def test_proposal_cache_detects_every_damage(tmp_path):
    from sppdet.config import ProposalConfig
    from sppdet.proposals import ProposalCache

    boxes = np.array([[0, 0, 9, 9], [2, 3, 17, 11], [5, 5, 6, 6]], dtype=np.float32)
    calls = [0]
    cache = ProposalCache(tmp_path / "p", ProposalConfig())

    def compute(image_id, image, *rest):
        calls[0] += 1
        return boxes

    cache.compute = compute
    cache.get("k", lambda: None)
    detected, same = _flip_every_byte(cache.path("k"), lambda: cache.get("k", lambda: None),
                                      lambda got: got.dtype == np.float32 and np.array_equal(got, boxes), calls)
    assert detected > 0.5 * (detected + same)  # most bytes matter; the rest (zip dates...) load the same
    # truncation, and arrays of the wrong type or shape, are recomputed too
    p = cache.path("k")
    cache.get("k", lambda: None)
    p.write_bytes(p.read_bytes()[:-30])
    n = calls[0]
    np.testing.assert_array_equal(cache.get("k", lambda: None), boxes)
    assert calls[0] == n + 1
    from sppdet.fileio import save_checked_arrays

    for bad in (boxes.astype(np.float64), boxes[:, :3].copy(), np.full((2, 4), np.nan, np.float32)):
        save_checked_arrays(p, {"boxes": bad})
        n = calls[0]
        np.testing.assert_array_equal(cache.get("k", lambda: None), boxes)
        assert calls[0] == n + 1


def _stub_extractor(channels=4, scales=(32, 48)):
    def compute(image):
        return [ScaleMap(f, torch.arange(channels * 3 * (k + 2), dtype=torch.float16).reshape(channels, 3, k + 2))
                for k, f in enumerate((0.5, 0.75))]

    from sppdet.features import ScaleMap

    return types.SimpleNamespace(scales=list(scales), trunk=types.SimpleNamespace(channels=channels),
                                 compute=compute)


def test_feature_cache_detects_every_damage(tmp_path):
    from sppdet.features import FeatureCache

    ext = _stub_extractor()
    calls = [0]
    real = ext.compute

    def compute(image):
        calls[0] += 1
        return real(image)

    ext.compute = compute
    cache = FeatureCache(tmp_path / "f", ext)
    ref = cache.get("k", lambda: None)

    def same(got):
        return len(got) == 2 and all(g.factor == r.factor and g.fmap.dtype == torch.float16
                                     and torch.equal(g.fmap, r.fmap) for g, r in zip(got, ref))

    # every 2nd byte, to stay within a few seconds (the proposals test flips every byte)
    detected, unchanged = _flip_every_byte(cache.path("k"), lambda: cache.get("k", lambda: None), same, calls,
                                           step=2)
    assert detected > 0.5 * (detected + unchanged)
    # a map whose channel count differs from the trunk's (e.g. another backbone) is recomputed
    wide = _stub_extractor(channels=8)
    real = wide.compute
    wide.compute = compute
    other = FeatureCache(tmp_path / "f", wide)
    n = calls[0]
    assert other.get("k", lambda: None)[0].fmap.shape[0] == 8 and calls[0] == n + 1


def test_cache_writes_leave_no_temporaries(tmp_path, monkeypatch):
    from sppdet.config import ProposalConfig
    from sppdet.proposals import ProposalCache

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "old.npy.tmp12345").write_bytes(b"left by sppdet 0.2")
    (folder / "keep.npz").write_bytes(b"x")
    cache = ProposalCache(folder, ProposalConfig())
    assert sorted(os.listdir(folder)) == ["keep.npz"]  # the old temporary went, nothing else
    cache.compute = lambda image_id, image, *rest: np.zeros((1, 4), np.float32)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    with pytest.raises(UserError, match="No space left on device.*finished entries are kept"):
        cache.get("new", lambda: None)
    assert sorted(os.listdir(folder)) == ["keep.npz"]


def test_cache_key_follows_the_content(tmp_path):
    from sppdet.cache import cache_key
    from sppdet.datasets.common import ImageRecord

    p = _img(tmp_path / "a.bmp", colour=(1, 2, 3))  # uncompressed: same size whatever the pixels
    rec = ImageRecord("a", p, np.zeros((0, 4)), [], np.zeros(0, bool), 40, 30)
    k1 = cache_key(rec)
    st = p.stat()
    _img(p, colour=(1, 2, 4))  # same size and file name...
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and mtime, as cp -p / rsync keep it
    assert p.stat().st_size == st.st_size
    k2 = cache_key(rec)
    assert k1 != k2
    moved = tmp_path / "sub" / "a.bmp"
    moved.parent.mkdir()
    os.replace(p, moved)  # a moved file keeps its key
    assert cache_key(dataclasses.replace(rec, path=moved)) == k2
    assert cache_key(dataclasses.replace(rec, path=moved, exif_transpose=True)) != k2


# -- 8. images ------------------------------------------------------------------------------------
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes declaring a huge 1-bit image (what a decompression bomb looks like)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 4)  # far too little data: it must never be decoded
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_pixel_limit_refuses_from_the_header(tmp_path, monkeypatch):
    from sppdet.images import MAX_PIXELS, ImageReadError, ImageTooLargeError, read_image

    assert MAX_PIXELS == 100_000_000
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 15000)  # 300 Mpx in < 1 KB
    assert bomb.stat().st_size < 2000
    with pytest.raises(ImageTooLargeError, match=r"20000×15000 = 300\.0 Mpx is above the limit of 100 Mpx.*"
                                                r"SPPDET_MAX_PIXELS=300000000"):
        read_image(bomb)
    small = _img(tmp_path / "small.png", size=(40, 30))
    assert read_image(small).shape == (30, 40, 3)
    with pytest.raises(ImageTooLargeError, match="above the limit"):
        read_image(small, max_pixels=1000)
    monkeypatch.setenv("SPPDET_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError):
        read_image(small)
    monkeypatch.setenv("SPPDET_MAX_PIXELS", "nan")
    with pytest.raises(UserError, match="SPPDET_MAX_PIXELS must be a positive number"):
        read_image(small)
    monkeypatch.delenv("SPPDET_MAX_PIXELS")
    # in a data set the image is skipped and counted at load time, before any long work
    flat = tmp_path / "flat"
    flat.mkdir()
    os.replace(bomb, flat / "bomb.png")
    (flat / "bomb.xml").write_text(_xml("bomb.png", size=None))
    _img(flat / "ok.png")
    (flat / "ok.xml").write_text(_xml("ok.png"))
    ds = load_dataset(flat, "all")
    assert [r.image_id for r in ds.records] == ["ok"]
    assert ds.report.counts["image above the pixel limit (skipped)"] == 1
    assert issubclass(ImageTooLargeError, ImageReadError)


def test_large_image_under_the_limit_is_read(tmp_path):
    from sppdet.images import read_image

    p = tmp_path / "large.png"
    Image.new("1", (10000, 8000), 1).save(p)  # 80 Mpx, under the limit
    assert image_size(p) == (10000, 8000)
    arr = read_image(p)
    assert arr.shape == (8000, 10000, 3) and arr[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_opt_in(tmp_path):
    from sppdet.images import read_image

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    flat = tmp_path / "flat"
    flat.mkdir()
    p = flat / "photo.jpg"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    raw = read_image(p)
    assert raw.shape == (20, 40, 3) and image_size(p) == (40, 20)
    turned = read_image(p, exif_transpose=True)
    assert turned.shape == (40, 20, 3) and image_size(p, exif_transpose=True) == (20, 40)
    # turned clockwise: the left (red) half is now on top, the blue one at the bottom
    assert turned[5, 10, 0] > 200 and turned[5, 10, 2] < 60
    assert turned[35, 10, 2] > 200 and turned[35, 10, 0] < 60
    (flat / "photo.xml").write_text(_xml("photo.jpg", size=(40, 20)))
    r = load_dataset(flat, "all").records[0]
    assert (r.width, r.height) == (40, 20) and r.read().shape == (20, 40, 3)
    r = load_dataset(flat, "all", exif_transpose=True).records[0]
    assert (r.width, r.height) == (20, 40) and r.read().shape == (40, 20, 3)
    assert load_config(None, ["data.exif_transpose=true"]).data.exif_transpose is True
    assert Config().data.exif_transpose is None  # each format's own convention
    # YOLO: Ultralytics labels the oriented image, so its sets are read oriented by default
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "images" / "photo.jpg").write_bytes(p.read_bytes())
    (yolo / "labels" / "photo.txt").write_text("0 0.5 0.25 1.0 0.5\n")  # the red (top) half
    (yolo / "classes.txt").write_text("red\n")
    r = load_dataset(yolo, "all").records[0]
    assert (r.width, r.height) == (20, 40) and r.read().shape == (40, 20, 3)
    np.testing.assert_allclose(r.boxes[0], [0, 0, 19, 19])
    assert (load_dataset(yolo, "all", exif_transpose=False).records[0].width) == 40


# -- 9. classifier runs ---------------------------------------------------------------------------
def test_damaged_classifier_runs_are_user_errors(tmp_path):
    from sppdet.classification import ClsConfig, SPPClassifier, load_classifier, save_classifier

    torch.manual_seed(0)
    model = SPPClassifier(ClsConfig(hidden=8, device="cpu"), 3, pretrained=False)
    save_classifier(model, ["a", "b", "c"], tmp_path / "good", [])
    _, classes = load_classifier(tmp_path / "good")
    assert classes == ["a", "b", "c"]
    blob = torch.load(tmp_path / "good" / "classifier.pt", weights_only=True)

    def variant(name, obj):
        (tmp_path / name).mkdir()
        torch.save(obj, tmp_path / name / "classifier.pt")
        return tmp_path / name

    cases = {
        "list": ([1, 2], "holds a list"),
        "nokeys": ({"format": "x"}, "missing classes, config, state"),
        "classes": ({**blob, "classes": ["a", "b"]}, "2 classes but the output layer has"),
        "classes_type": ({**blob, "classes": "abc"}, "'classes' must be a non-empty list"),
        "config_list": ({**blob, "config": [1]}, "'config' is a list"),
        "config_bad": ({**blob, "config": {**blob["config"], "levels": [0]}}, "levels must be"),
        "config_key": ({**blob, "config": {**blob["config"], "bogus": 1}}, "unknown config keys bogus"),
        "hidden": ({**blob, "config": {**blob["config"], "hidden": 16}}, "does not match its own config"),
    }
    for name, (obj, message) in cases.items():
        with pytest.raises(UserError, match=message):
            load_classifier(variant(name, obj))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "classifier.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="damaged"):
        load_classifier(tmp_path / "garbage")


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
