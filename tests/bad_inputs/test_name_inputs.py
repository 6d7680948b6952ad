"""Names and encodings: BOMs, names that are not UTF-8, names too long for the file system."""
import dataclasses
import json
import os

import numpy as np

from sppdet.datasets import load_dataset

from .makers import _img, LATIN1


def test_bom_and_non_utf8_names_are_read_as_the_file_system_has_them(shared_run):
    import sppdet

    d, det, imgs = shared_run
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


def test_non_utf8_names_through_eval_and_detect_cli(shared_run, tmp_path):
    import subprocess
    import sys

    d, det, imgs = shared_run
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
