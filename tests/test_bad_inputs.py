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
from sppdet.config import TestConfig as _TestConfig  # (not a class of tests)
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
    cfg = Config(test=_TestConfig(nms=float("nan")))
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


# -- a trained run for the journal, run-folder and API cases (small images: quick detection) --
RUN_FAST = {"proposals": {"max_boxes": 60, "work_size": 200}, "features": {"scales": [224]},
            "svm": {"retrain_limit": 300}}


LATIN1 = b"caf\xe9"  # an image name from an old Windows zip: not UTF-8


def _latin1_names_and_bom(root: Path, renames: dict[str, bytes]) -> None:
    """Rename images (and their XML) to non-UTF-8 names; save every split file with a BOM."""
    for old, new in renames.items():
        for sub, ext in (("JPEGImages", b".jpg"), ("Annotations", b".xml")):
            folder = os.fsencode(root / sub)
            os.rename(folder + b"/" + old.encode() + ext, folder + b"/" + new + ext)
    for f in (root / "ImageSets" / "Main").iterdir():
        data = f.read_bytes()
        for old, new in renames.items():
            data = data.replace(old.encode(), new)
        f.write_bytes(b"\xef\xbb\xbf" + data)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data):
    import sppdet

    d = tmp_path_factory.mktemp("tiny")
    tiny_data(d, 10)
    _latin1_names_and_bom(d / "data", {"000001": LATIN1, "000008": LATIN1 + b"-t"})
    det = sppdet.train(d / "data", d / "run", cache=d / "cache", workers=1,
                       backbone={"weights": str(d / "w.pth")}, **RUN_FAST)
    imgs = sorted((d / "data" / "JPEGImages").glob("*.jpg"))
    return d, det, imgs


def _detect(run, inputs, out, **kw):
    import sppdet

    kw.setdefault("threshold", 0.0)
    return sppdet.detect(run, inputs, out, workers=1, **kw)


def _rows(out):
    return json.loads((out / "detections.json").read_text())


def _by_image(rows):
    out = {}
    for r in rows:
        out.setdefault(r["image"], []).append((r["label"], r["score"], r["bbox"]))
    return {k: sorted(v) for k, v in out.items()}


def test_detect_journal_entries_are_checked_and_keyed_by_content(tiny_run, tmp_path):
    d, det, imgs = tiny_run
    src = tmp_path / "in"
    src.mkdir()
    a, b = src / "a.jpg", src / "b.jpg"
    a.write_bytes(imgs[0].read_bytes())
    b.write_bytes(imgs[1].read_bytes())
    out = tmp_path / "det"
    _detect(d / "run", [a, b], out, paint=False)
    first = _by_image(_rows(out))
    assert set(first) == {str(a), str(b)} and len(first[str(a)]) > 0
    assert not list(out.glob("*_det.jpg"))
    journal = out / "detections.jsonl"
    header, ea, eb = journal.read_text().splitlines()
    # a rerun with painting paints what --no-images left unpainted (from the journal, same boxes)
    _detect(d / "run", [a, b], out)
    assert {p.name for p in out.glob("*_det.jpg")} == {"a_det.jpg", "b_det.jpg"}
    assert _by_image(_rows(out)) == first
    # entries that are not results: that image is detected again, never taken as done
    entry = json.loads(ea)
    row = entry["detections"][0]
    for bad in [None, "boxes", [{k: v for k, v in row.items() if k != "bbox"}], [{**row, "score": "high"}],
                [{**row, "bbox": [0, 0, float("nan"), 1]}], [{**row, "label": "not-a-class"}],
                [{**row, "bbox": [1, 2, 3]}], [{**row, "score": True}],
                [{**row, "score": -7.0}],  # below the threshold the journal was written with (-5)
                [row] * 101]:  # more than test.max_per_image
        journal.write_text("\n".join([header, json.dumps({**entry, "detections": bad}), eb]) + "\n")
        _detect(d / "run", [a, b], out, paint=False)
        assert _by_image(_rows(out)) == first, bad
    # a header that cannot be read or is foreign: refused, its rows never reused
    for head in ['{"sppdet_detect": 2, "sett', '{"x": 1}', "[]", '{"sppdet_detect": 1, "settings": {}}']:
        journal.write_text("\n".join([head, ea, eb]) + "\n")
        with pytest.raises(UserError, match="journal|another sppdet version"):
            _detect(d / "run", [a, b], out)
    journal.write_text("\n".join([header, ea, eb]) + "\n")
    with pytest.raises(UserError, match="another detect command"):  # other settings
        _detect(d / "run", [a, b], out, threshold=0.5)
    with pytest.raises(UserError, match="another detect command"):  # an edited model: other digest
        edited = copy_detector(det)
        edited.svm_b = edited.svm_b + 1.0
        _detect(edited, [a, b], out)
    # an input replaced under the same name gets the new picture's boxes
    a.write_bytes(imgs[1].read_bytes())
    _detect(d / "run", [a, b], out, paint=False)
    assert _by_image(_rows(out))[str(a)] == first[str(b)]
    # an input that failed (empty file) and was fixed is detected on the rerun
    b.write_bytes(b"")
    res = _detect(d / "run", [a, b], out, paint=False)
    assert len(res["skipped"]) == 1 and str(b) not in _by_image(_rows(out))
    b.write_bytes(imgs[1].read_bytes())
    res = _detect(d / "run", [a, b], out, paint=False)
    assert not res["skipped"] and _by_image(_rows(out))[str(b)] == first[str(b)]
    # a torn last line (a kill or a full disk mid-write) is ended before the next append
    journal.write_text(journal.read_text() + '{"image": "to')
    _detect(d / "run", [a, b, imgs[2]], out, paint=False)
    assert all(json.loads(line) for line in journal.read_text().splitlines()[:-2] if not line.startswith('{"image": "to'))
    assert str(imgs[2]) in _by_image(_rows(out))


def copy_detector(det):
    import copy

    return copy.copy(det)


def test_detect_out_links_directories_and_a_second_writer(tiny_run, tmp_path):
    import subprocess
    import sys

    from sppdet.locking import folder_lock

    d, det, imgs = tiny_run
    out = tmp_path / "det"
    (out / "detections.jsonl").mkdir(parents=True)
    with pytest.raises(UserError, match="not a regular file"):
        _detect(det, [imgs[0]], out)
    (out / "detections.jsonl").rmdir()
    (out / "detections.json").mkdir()
    with pytest.raises(UserError, match="detections.json exists and is not a regular file"):
        _detect(det, [imgs[0]], out)
    (out / "detections.json").rmdir()
    (out / "detections.jsonl").unlink(missing_ok=True)
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (out / "detections.jsonl").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        _detect(det, [imgs[0]], out, overwrite=True)
    assert target.read_text() == "keep"
    (out / "detections.jsonl").unlink()
    # a painted image's folder planted as a link out of --out
    sub = tmp_path / "in" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "in" / "top.jpg").write_bytes(imgs[0].read_bytes())
    (sub / "x.jpg").write_bytes(imgs[1].read_bytes())
    (tmp_path / "outside").mkdir()
    (out / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(UserError, match="link out of --out"):
        _detect(det, [tmp_path / "in" / "top.jpg", sub / "x.jpg"], out, overwrite=True)
    assert not any((tmp_path / "outside").iterdir())
    (out / "sub").unlink()
    # a second writer is refused while the first holds --out; a killed holder blocks nothing
    with folder_lock(out):
        with pytest.raises(UserError, match="another sppdet command is writing to"):
            _detect(det, [imgs[0]], out)
    code = ("import os, sys, time; from sppdet.locking import folder_lock\n"
            f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="another sppdet command"):
            with folder_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert _detect(det, [imgs[0]], out)["images"] == 1
    # the same lock guards a run folder being trained into
    with folder_lock(tmp_path / "run2"):
        with pytest.raises(UserError, match="another sppdet command is writing to"):
            import sppdet

            sppdet.train(d / "data", tmp_path / "run2", cache=d / "cache", workers=1,
                         backbone={"weights": str(d / "w.pth")}, **RUN_FAST)


def test_detect_threshold_precedence_and_eval_set(tiny_run, tmp_path):
    import sppdet
    from sppdet.cli import build_parser

    d, det, imgs = tiny_run
    # --set test.score_thresh is not overridden by --threshold's default; both at once are refused
    low = _detect(det, [imgs[0]], tmp_path / "a", threshold=None, overrides=["test.score_thresh=0"])
    assert low["detections"] == _detect(det, [imgs[0]], tmp_path / "b", threshold=0.0)["detections"] > 0
    with pytest.raises(UserError, match="threshold once"):
        _detect(det, [imgs[0]], tmp_path / "c", threshold=0.0, overrides=["test.score_thresh=0"])
    args = build_parser().parse_args(["detect", "RUN", "x.jpg", "--out", "o", "--set", "test.score_thresh=-5"])
    assert args.threshold is None
    # eval of a detections file: --set has no effect there, so it is refused (valid or not)
    rows = tmp_path / "a" / "detections.json"
    for s in (["test.nms=0.4"], ["bogus.key=1"]):
        with pytest.raises(UserError, match="no effect on a detections file"):
            sppdet.evaluate(data=d / "data", split="test", detections=rows, overrides=s)
    for kw, name in (({"device": "cpu"}, "--device"), ({"cache": d / "cache"}, "--cache"), ({"workers": 2}, "--workers")):
        with pytest.raises(UserError, match=f"{name} has no effect on a detections file"):
            sppdet.evaluate(data=d / "data", split="test", detections=rows, **kw)
    with pytest.raises(UserError, match="--similar only applies"):
        sppdet.evaluate(data=d / "data", split="test", detections=rows, similar=[["a", "b"]])
    from sppdet.cli import cmd_eval

    args = build_parser().parse_args(["eval", "--detections", str(rows), "--data", str(d / "data"), "--gallery", "3"])
    with pytest.raises(UserError, match="--gallery only applies"):
        cmd_eval(args)
    with pytest.raises(UserError, match="bogus"):  # a run: invalid keys refused
        sppdet.evaluate(det, data=d / "data", split="test", out=tmp_path / "e", overrides=["bogus.key=1"])


def test_api_arguments_are_checked_by_name(tiny_run, tmp_path):
    import sppdet

    d, det, imgs = tiny_run
    image = np.asarray(Image.open(imgs[0]).convert("RGB"))
    cases = [
        (lambda: sppdet.load(123), "run must be a path"),
        (lambda: sppdet.load(None), "run must be a path"),
        (lambda: sppdet.detect(det, None, tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, [imgs[0], None], tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, 3, tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, [imgs[0]], None), "out must be a path"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", threshold="0.5"), "threshold must be a finite"),
        (lambda: sppdet.evaluate(det, data=None, out=tmp_path / "e"), "data must be a path"),
        (lambda: sppdet.evaluate(det, data=d / "data", split=None, out=tmp_path / "e"), "split must be"),
        (lambda: sppdet.evaluate(det, data=d / "data", gallery="3", out=tmp_path / "e"), "gallery must be"),
        (lambda: sppdet.evaluate(det, data=d / "data", similar="ab", out=tmp_path / "e"), "similar must be"),
        (lambda: sppdet.train(None, tmp_path / "r"), "data must be a path"),
        (lambda: sppdet.train(d / "data", None), "out must be a path"),
        (lambda: sppdet.make_config(None, overrides=[1]), "overrides must be a list"),
        (lambda: det(image, proposals=np.zeros((5, 3))), "proposals must be an \\[N, 4\\]"),
        (lambda: det(image, proposals=np.array([[0, 0, np.nan, 5]])), "NaN or infinite"),
        (lambda: det(image, proposals="boxes"), "proposals must be"),
        (lambda: det([image, image], proposals=np.zeros((1, 4))), "belongs to one image"),
        (lambda: det(image, proposals=np.array([[10.0, 10, 5, 5]])), "inverted"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", ray=5), "ray must be"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", workers="2"), "workers must be a whole number"),
        (lambda: sppdet.evaluate(det, data=d / "data", cache=3, out=tmp_path / "e"), "cache must be a path"),
        (lambda: sppdet.load_data(d / "data", "test", classes="cat"), "classes must be a list"),
        (lambda: sppdet.bench(d / "data", images="3", out=tmp_path / "b"), "images .--images. must be"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()
    # a bare string is one override, never its characters
    assert sppdet.make_config(None, overrides="test.nms=0.4").test.nms == 0.4
    with pytest.raises(UserError, match="test.nmz"):
        sppdet.make_config(None, overrides="test.nmz=0.4")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- the run folder is checked against what was trained ----------------------------------------
@pytest.fixture
def run_copy(tiny_run, tmp_path):
    import shutil

    d, _, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, ignore=shutil.ignore_patterns("eval_*", ".sppdet.lock"))
    return run


def test_run_config_edited_after_training(run_copy, caplog):
    import yaml

    from sppdet.detector import Detector

    cfg_path = run_copy / "config.yaml"
    original = cfg_path.read_text()
    tree = yaml.safe_load(original)
    meta = json.loads((run_copy / "meta.json").read_text())
    assert len(meta["config_sha256"]) == 64
    for edit, message in [
        (lambda t: t["features"].update(scales=[400]), "features.scales"),
        (lambda t: t.clear(), "differs from the configuration"),
        (lambda t: t["svm"].update(C=0.5), "svm.C"),
    ]:
        t = yaml.safe_load(original)
        edit(t)
        cfg_path.write_text(yaml.safe_dump(t))
        with pytest.raises(UserError, match=message):
            Detector.load(run_copy)
    # test-time keys may change: warned, and used
    t = yaml.safe_load(original)
    t["test"]["nms"] = 0.45
    cfg_path.write_text(yaml.safe_dump(t))
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        assert Detector.load(run_copy).cfg.test.nms == 0.45
    assert "edited after training" in caplog.text and "test.nms" in caplog.text
    # YAML that does not parse, or asks for Python objects: one line naming config.yaml
    for text in ["features: [1, 2\n", "a: !!python/object/apply:os.system ['echo pwned']\n", "- 1\n- 2\n",
                 "\ufeffbad: [\n"]:
        cfg_path.write_text(text)
        with pytest.raises(UserError) as exc:
            Detector.load(run_copy)
        assert "config.yaml" in str(exc.value) and "\n" not in str(exc.value)
    for text in ["a: !!python/object/apply:os.system ['echo pwned']\n", "svm: {C: [\n"]:  # --config files too
        (run_copy / "mine.yaml").write_text(text)
        with pytest.raises(UserError) as exc:
            load_config(run_copy / "mine.yaml")
        assert "mine.yaml" in str(exc.value) and "\n" not in str(exc.value)
    cfg_path.write_text(original)
    assert Detector.load(run_copy).cfg.to_dict() == tree | {"device": Detector.load(run_copy).cfg.device}
    (run_copy / "meta.json").write_text(json.dumps({**meta, "config_sha256": "0" * 64}))
    with pytest.raises(UserError, match="disagree on the configuration"):
        Detector.load(run_copy)


def test_run_weights_not_finite_and_old_runs(run_copy):
    from sppdet.detector import Detector

    blob = torch.load(run_copy / "model.pt", weights_only=True)
    for key, change in [("svm_W", lambda v: v.index_fill(0, torch.tensor([0]), float("nan"))),
                        ("svm_b", lambda v: v + float("inf")),
                        ("bbox_W", lambda v: v * float("nan")),
                        ("feat_scale", lambda v: float("nan"))]:
        torch.save({**blob, key: change(blob[key])}, run_copy / "model.pt")
        with pytest.raises(UserError, match=f"damaged: {key} holds NaN or infinite"):
            Detector.load(run_copy)
    # a 0.3 run folder (no record of its config) still loads
    torch.save({k: v for k, v in blob.items() if k != "config"}, run_copy / "model.pt")
    assert Detector.load(run_copy).classes == blob["classes"]


# -- a full disk: one line, the finished work kept, a rerun completes equal ---------------------
def _enospc(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "injected")


def test_full_disk_during_detect_keeps_the_journal_and_resumes_equal(tiny_run, tmp_path, monkeypatch):
    from sppdet import journal as journal_mod

    d, det, imgs = tiny_run
    inputs = imgs[:3]
    _detect(det, inputs, tmp_path / "whole", paint=False)
    whole = _by_image(_rows(tmp_path / "whole"))
    real_write, calls = journal_mod.DetectJournal._write, []

    def write_then_fill(self, obj):
        calls.append(obj)
        if len(calls) > 2:  # the header and one image fit, then the disk is full
            _enospc()
        real_write(self, obj)

    monkeypatch.setattr(journal_mod.DetectJournal, "_write", write_then_fill)
    with pytest.raises(UserError, match=r"No space left on device.*1 of 3 images are done and kept"):
        _detect(det, inputs, tmp_path / "cut", paint=False)
    assert not (tmp_path / "cut" / "detections.json").exists()
    monkeypatch.setattr(journal_mod.DetectJournal, "_write", real_write)
    _detect(det, inputs, tmp_path / "cut", paint=False)
    assert _by_image(_rows(tmp_path / "cut")) == whole


def test_full_disk_during_eval_leaves_no_metrics_and_reruns_equal(tiny_run, tmp_path, monkeypatch):
    import sppdet
    from sppdet.evaluation import report

    d, det, _ = tiny_run
    out = tmp_path / "e"
    whole = sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    real = report.atomic_write_json
    monkeypatch.setattr(report, "atomic_write_json",
                        lambda path, *a, **k: _enospc() if Path(path).name == "metrics.json" else real(path, *a, **k))
    with pytest.raises(UserError, match="cannot write the evaluation to .*No space left"):
        sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    assert not (out / "metrics.json").exists()  # the old one does not outlive the files it described
    monkeypatch.setattr(report, "atomic_write_json", real)
    again = sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    assert again == whole


def test_full_disk_when_saving_a_run_keeps_it_somewhere_or_says_so(tiny_run, tmp_path, monkeypatch):
    import tempfile

    from sppdet import api
    from sppdet.detector import Detector

    d, det, _ = tiny_run
    real_save = Detector.save
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    full = [tmp_path / "out", tmp_path / "tmp"]

    def save(self, run_dir, train_log=None):
        if any(Path(run_dir).is_relative_to(f) for f in full):
            _enospc()
        return real_save(self, run_dir, train_log)

    monkeypatch.setattr(Detector, "save", save)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="it was saved to") as exc:
        api.training._save_run(det, tmp_path / "out", {"x": 1}, cache_dir=cache)
    rescue = Path(str(exc.value).split("it was saved to ")[1].split(" instead")[0])
    assert rescue.is_relative_to(cache) and Detector.load(rescue).classes == det.classes
    full.append(cache)
    with pytest.raises(UserError, match="could not be saved anywhere.*Nothing of the model was kept"):
        api.training._save_run(det, tmp_path / "out", {"x": 1}, cache_dir=cache)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 96 KiB file system (root only; skipped where mounting is not allowed)."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mnt
    import gc

    gc.collect()  # a failed torch.save's writer (held by its traceback) closes its file
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_real_full_disk(tiny_run, tiny_tmpfs, tmp_path):
    import shutil

    d, det, imgs = tiny_run
    # torch.save's RuntimeError on a full disk is the OSError it is: the run save is rescued
    with pytest.raises(OSError) as exc:
        det.save(tiny_tmpfs / "run")
    assert exc.value.errno == 28
    assert not [p for p in (tiny_tmpfs / "run").iterdir() if p.name.endswith(".tmp")]
    shutil.rmtree(tiny_tmpfs / "run")
    # detect with painted images fills it: one line, the journal kept; elsewhere it finishes equal
    inputs = [tmp_path / f"{i}.png" for i in range(4)]
    for src, dst in zip(imgs, inputs):
        Image.open(src).resize((300, 300)).save(dst)  # PNGs big enough to fill the disk
    with pytest.raises(UserError, match="No space left on device"):
        _detect(det, inputs, tiny_tmpfs / "det")
    shutil.copytree(tiny_tmpfs / "det", tmp_path / "moved")
    _detect(det, inputs, tmp_path / "moved")
    _detect(det, inputs, tmp_path / "whole")
    assert _by_image(_rows(tmp_path / "moved")) == _by_image(_rows(tmp_path / "whole"))
    assert sorted(p.name for p in (tmp_path / "moved").glob("*_det.*")) == \
        sorted(p.name for p in (tmp_path / "whole").glob("*_det.*"))


def test_ctrl_c_during_the_final_evaluation_says_how_to_finish(tiny_run, tmp_path, monkeypatch):
    import sppdet
    from sppdet import api
    from sppdet.detector import Detector

    d, _, _ = tiny_run

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.training, "evaluate", interrupted)  # what train calls
    out = tmp_path / "run"
    train = lambda: sppdet.train(d / "data", out, cache=d / "cache", workers=1, eval_split="test",  # noqa: E731
                                 backbone={"weights": str(d / "w.pth")}, **RUN_FAST)
    with pytest.raises(api.UserInterrupt, match=r"model is saved in .*sppdet eval .* --split test") as exc:
        train()
    assert exc.value.exit_code == 130 and Detector.load(out).classes  # it was saved, as said
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"evaluation on test did not finish: run `sppdet eval .*--split test`"):
        train()
    sppdet.evaluate(out, data=d / "data", split="test", cache=d / "cache", workers=1)
    with pytest.raises(UserError) as exc:  # finished: the plain message
        train()
    assert "did not finish" not in str(exc.value)


# -- names and encodings ------------------------------------------------------------------------
def test_bom_and_non_utf8_names_are_read_as_the_file_system_has_them(tiny_run):
    import sppdet

    d, det, imgs = tiny_run
    ids = sorted(r.image_id for r in sppdet.load_data(d / "data", "trainval").records)
    lines = (d / "data" / "ImageSets" / "Main" / "trainval.txt").read_bytes()[3:].split()
    assert ids == sorted(os.fsdecode(x) for x in lines) and os.fsdecode(LATIN1) in ids  # first id kept
    # a CSV with a BOM keeps its 'filename' column
    csv = d / "split.csv"
    csv.write_bytes(b"\xef\xbb\xbffilename,label\n000000.jpg,x\n" + LATIN1 + b".jpg,y\n")
    ids = sorted(r.image_id for r in sppdet.load_data(d / "data", str(csv)).records)
    assert ids == ["000000", os.fsdecode(LATIN1)]
    # a detections file and a COCO file saved with a BOM
    from sppdet.evaluation.detections import read_detections

    row = {"image": "a.jpg", "label": "dog", "score": 1.0, "bbox": [0.0, 0.0, 5.0, 5.0]}
    (d / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([row]).encode())
    assert read_detections(d / "bom.json")[0]["label"] == "dog"
    coco = d / "coco"
    _img(coco / "images" / "a.jpg", size=(50, 40))
    (coco / "ann.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "dog"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}).encode())
    assert len(load_dataset(coco / "ann.json", "all").records[0].boxes) == 1


def test_non_utf8_names_through_eval_and_detect_cli(tiny_run, tmp_path):
    import subprocess
    import sys

    d, det, imgs = tiny_run
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "sppdet", "eval", str(d / "run"), "--data", str(d / "data"),
                        "--split", "test", "--out", str(tmp_path / "e"), "--cache", str(d / "cache"),
                        "--workers", "1", "--analyze", "--coco"], capture_output=True, env=env)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    comp4 = b"".join(p.read_bytes() for p in (tmp_path / "e" / "comp4").iterdir())
    assert LATIN1 + b"-t " in comp4  # the id as the file system names it
    dets = json.loads((tmp_path / "e" / "detections.json").read_text())
    assert os.fsdecode(LATIN1 + b"-t.jpg") in {x["image"] for x in dets}
    latin = [p for p in imgs if os.fsencode(p.name).startswith(LATIN1)]
    r = subprocess.run([sys.executable, "-m", "sppdet", "detect", str(d / "run"), *map(str, latin),
                        str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"), "--workers", "1",
                        "--threshold", "0"], capture_output=True, env=env)
    assert r.returncode == 2 and b"Traceback" not in r.stderr and b"nope.jpg" in r.stderr, r.stderr[-2000:]
    painted = {os.fsencode(p.name) for p in (tmp_path / "o").glob("*_det.jpg")}
    assert painted == {LATIN1 + b"_det.jpg", LATIN1 + b"-t_det.jpg"}


def test_long_names_fit_the_file_name_limit(tmp_path):
    from sppdet.cache import cache_key
    from sppdet.datasets.common import ImageRecord
    from sppdet.inputs import output_names

    for stem in ["é" * 120 + "x" * 10, "a" * 250, os.fsdecode(LATIN1 * 80)]:
        p = _img(tmp_path / (stem[:200] + ".jpg"))
        rec = ImageRecord(path=p, image_id=stem, width=40, height=30,
                          boxes=np.zeros((0, 4)), labels=[], difficult=np.zeros(0, bool))
        key = cache_key(rec)
        assert len(os.fsencode(key + ".npz")) <= 200, key
        (tmp_path / (key + ".npz")).write_bytes(b"x")  # a name the file system takes
        name = output_names([p])[p]
        assert len(os.fsencode(name.name)) <= 255
    a, b = ImageRecord(path=p, image_id="a" * 300 + "1", width=1, height=1, boxes=np.zeros((0, 4)),
                       labels=[], difficult=np.zeros(0, bool)), None
    b = dataclasses.replace(a, image_id="a" * 300 + "2")
    assert cache_key(a) != cache_key(b)  # the hash covers the whole id


# -- data that is wrong in the usual ways -----------------------------------------------------
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


def test_eval_detections_with_unknown_labels_warns_naming_them(tiny_run, tmp_path, caplog):
    import sppdet

    d, det, _ = tiny_run
    ds = sppdet.load_data(d / "data", "test")
    r = ds.records[0]
    rows = [{"image": r.path.name, "label": r.labels[0].upper(), "score": 1.0, "bbox": list(map(float, r.boxes[0]))},
            {"image": r.path.name, "label": "zebra", "score": 0.5, "bbox": [0.0, 0.0, 5.0, 5.0]}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        m = sppdet.evaluate(data=d / "data", split="test", detections=tmp_path / "d.json", out=tmp_path / "e")
    assert f"{r.labels[0].upper()!r} (did you mean {r.labels[0]!r}?)" in caplog.text and "'zebra'" in caplog.text
    assert m["mAP"] == 0


def test_analysis_files_of_classes_with_colliding_names(tmp_path):
    from sppdet.datasets.common import ImageRecord
    from sppdet.evaluation.analysis import analyze

    img = _img(tmp_path / "a.jpg", size=(60, 60))
    classes = ["red cell", "red_cell"]
    rec = ImageRecord("a", img, np.array([[2.0, 2, 20, 20], [30, 30, 50, 50]]), classes, np.zeros(2, bool), 60, 60)
    dets = [{"image": "a", "label": "red cell", "score": 0.9, "bbox": [30, 30, 50, 50]},  # on the other class
            {"image": "a", "label": "red_cell", "score": 0.8, "bbox": [2, 2, 20, 20]}]
    analyze([rec], dets, classes, tmp_path / "an", max_gallery=2)
    plots = sorted(p.name for p in (tmp_path / "an").glob("fp_*.png"))
    assert len(plots) == 3 and "fp_red_cell.png" in plots  # one per class, plus all classes
    folders = [p for p in (tmp_path / "an").iterdir() if p.is_dir()]
    assert len(folders) == len({p.name for p in folders})


def test_cli_full_disk_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    code = ("import errno, sys, sppdet.cli as c\n"
            "def full(args): raise OSError(errno.ENOSPC, 'No space left on device', 'somewhere/file')\n"
            "c.cmd_train = full\n"
            "sys.exit(c.main(['train', '--data', 'd', '--out', 'o']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("sppdet: error: No space left on device (somewhere/file)")
    assert "kept in the cache" in lines[0]  # what the command keeps
