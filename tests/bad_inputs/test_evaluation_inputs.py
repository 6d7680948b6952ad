"""Bad detections files and evaluation outputs: strict reading, unknown labels named, class
names unsafe as paths, results written atomically."""
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sppdet.errors import UserError

from .makers import _img


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


def test_eval_detections_with_unknown_labels_warns_naming_them(shared_run, tmp_path, caplog):
    import sppdet

    d, det, _ = shared_run
    ds = sppdet.load_data(d / "data", "test")
    r = ds.records[0]
    rows = [{"image": r.path.name, "label": r.labels[0].upper(), "score": 1.0, "bbox": list(map(float, r.boxes[0]))},
            {"image": r.path.name, "label": "zebra", "score": 0.5, "bbox": [0.0, 0.0, 5.0, 5.0]}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        m = sppdet.evaluate(data=d / "data", split="test", detections=tmp_path / "d.json", out=tmp_path / "e")
    assert f"{r.labels[0].upper()!r} (did you mean {r.labels[0]!r}?)" in caplog.text and "'zebra'" in caplog.text
    assert m["mAP"] == 0
