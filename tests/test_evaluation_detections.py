"""sppdet.evaluation.detections, beyond bad_inputs/test_evaluation_inputs.py's strictness cases:
the names a detection may give its image by (id, file name, path, a relative path), which record
a shared name goes to, and the reading of files that are not there or not UTF-8."""
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets.common import ImageRecord
from sppdet.errors import UserError
from sppdet.evaluation.detections import check_detection, image_id_of, match_to_records, read_detections, record_index


def rec(image_id, path):
    return ImageRecord(image_id, Path(path), np.zeros((0, 4)), [], np.zeros(0, bool), 10, 10)


def test_every_name_of_an_image_and_the_first_record_wins():
    records = [rec("r1", "/data/A/x.jpg"), rec("r2", "/data/B/x.jpg"), rec("x", "/data/C/y.jpg")]
    index = record_index(records)
    assert index["r1"] == "r1" and index["/data/A/x.jpg"] == "r1" and index["/data/B/x.jpg"] == "r2"
    assert index["x.jpg"] == "r1"  # two records share the file name: the first one has it
    assert index["x"] == "x" and index["y.jpg"] == "x"
    assert image_id_of(index, "JPEGImages/y.jpg") == "x"  # a relative path: by its file name
    assert image_id_of(index, "/elsewhere/B/x.jpg") == "r1"
    assert image_id_of(index, "z.jpg") is None


def test_match_keeps_the_order_and_counts_strays():
    records = [rec("a", "/d/a.png"), rec("b", "/d/b.png")]
    dets = [{"image": n} for n in ("b.png", "c.png", "a", "/d/a.png", "sub/b.png", "d")]
    kept, stray = match_to_records(dets, records)
    assert [d["image"] for d in kept] == ["b.png", "a", "/d/a.png", "sub/b.png"] and stray == 2


def test_check_detection_keeps_other_keys_and_makes_floats():
    d = check_detection({"image": "a.jpg", "label": "cat", "score": 1, "bbox": [0, 1, 2, 3], "margin": -0.5}, "e")
    assert d == {"image": "a.jpg", "label": "cat", "score": 1.0, "bbox": [0.0, 1.0, 2.0, 3.0], "margin": -0.5}
    assert isinstance(d["score"], float) and all(isinstance(v, float) for v in d["bbox"])
    for bad, message in [({"image": " ", "label": "c", "score": 1, "bbox": [0, 0, 1, 1]}, "image must be"),
                         ({"image": "a", "label": "", "score": 1, "bbox": [0, 0, 1, 1]}, "label must be"),
                         ({"image": "a", "label": "c"}, "has no score, bbox")]:
        with pytest.raises(UserError, match=rf"^here.*{message}"):
            check_detection(bad, "here")


def test_files_that_are_not_there_or_not_utf8(tmp_path):
    with pytest.raises(UserError, match="detections file not found"):
        read_detections(tmp_path / "none.json")
    (tmp_path / "latin1.json").write_bytes(b'[{"image": "caf\xe9.jpg"}]')
    with pytest.raises(UserError, match="is not UTF-8 text"):
        read_detections(tmp_path / "latin1.json")
    (tmp_path / "empty.json").write_text("[]")
    assert read_detections(tmp_path / "empty.json") == []
