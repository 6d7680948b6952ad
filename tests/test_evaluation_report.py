"""sppdet.evaluation.report.write_results on one hand-made image: which files an evaluation
writes (with and without records, with plots), metrics.json's fields, and metrics.json last (its
presence means the rest is there)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets.common import ImageRecord
from sppdet.evaluation import report
from sppdet.evaluation.report import write_results
from sppdet.evaluation.voc import evaluate_voc

CLASSES = ["cat", "dog"]
# one image, one cat [10, 10, 29, 29] (0-based inclusive); a perfect cat and a stray dog
RECORD = ImageRecord("im1", Path("/data/im1.jpg"), np.array([[10.0, 10, 29, 29]]), ["cat"], np.zeros(1, bool),
                     64, 48)
DETS = [{"image": "im1.jpg", "label": "cat", "score": 0.9, "bbox": [10.0, 10.0, 29.0, 29.0]},
        {"image": "im1.jpg", "label": "dog", "score": 0.4, "bbox": [40.0, 5.0, 60.0, 40.0]}]


def result():
    return evaluate_voc([RECORD], DETS, CLASSES)


def test_the_files_and_metrics_of_an_evaluation(tmp_path):
    res = result()
    assert res["AP"] == {"cat": pytest.approx(1.0), "dog": None} and res["npos"] == {"cat": 1, "dog": 0}
    out = write_results(tmp_path / "ev", res, DETS, CLASSES, "splits/test.txt", 1, extra={"note": "x"})
    assert sorted(os.listdir(out)) == ["comp4", "detections.json", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"metric": "voc07", "mAP": pytest.approx(1.0), "AP": {"cat": pytest.approx(1.0), "dog": None},
                       "npos": {"cat": 1, "dog": 0}, "images": 1, "detections": 2, "note": "x"}
    assert json.loads((out / "detections.json").read_text()) == DETS
    # comp4 files are named by the split's stem; their pixels are VOC's 1-based ones
    assert sorted(os.listdir(out / "comp4")) == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    assert (out / "comp4" / "comp4_det_test_cat.txt").read_text().split() == \
        ["im1", "0.9", "11.0", "11.0", "30.0", "30.0"]


def test_records_add_the_coco_files_and_plots_their_folder(tmp_path):
    out = write_results(tmp_path / "ev", result(), DETS, CLASSES, "test", 1, coco={"AP": 0.5},
                        plots=True, records=[RECORD])
    assert sorted(os.listdir(out)) == ["coco_results.json", "comp4", "detections.json", "ground_truth_coco.json",
                                       "metrics.json", "plots"]
    assert json.loads((out / "metrics.json").read_text())["coco"] == {"AP": 0.5}
    gt = json.loads((out / "ground_truth_coco.json").read_text())
    results = json.loads((out / "coco_results.json").read_text())
    assert {r["image_id"] for r in results} <= {im["id"] for im in gt["images"]}
    # COCO boxes are [x, y, width, height] in continuous pixels: the cat is 20 x 20 at (10, 10)
    cat = next(r for r in results if r["category_id"] == next(c["id"] for c in gt["categories"] if c["name"] == "cat"))
    assert cat["bbox"] == pytest.approx([10, 10, 20, 20]) and cat["score"] == pytest.approx(0.9)
    assert sorted(os.listdir(out / "plots")) == ["pr_cat.png", "pr_dog.png"]


def test_metrics_json_is_written_last(tmp_path, monkeypatch):
    order = []
    real = report.atomic_write_json
    monkeypatch.setattr(report, "atomic_write_json",
                        lambda path, *a, **k: (order.append(path.name), real(path, *a, **k)))
    monkeypatch.setattr(report, "write_comp4", lambda *a, **k: order.append("comp4"))
    write_results(tmp_path / "ev", result(), DETS, CLASSES, "test", 1, records=[RECORD])
    assert order[-1] == "metrics.json" and set(order) == {"detections.json", "coco_results.json",
                                                           "ground_truth_coco.json", "comp4", "metrics.json"}
