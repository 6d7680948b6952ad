"""coco_results.json: pycocotools scores it against the ORIGINAL COCO file (ids kept) with the AP
that hand-worked IoUs give; sets from other formats get ids consistent with evaluate_coco's ground truth."""
import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets import load_dataset
from sppdet.evaluation.report import write_results
from sppdet.evaluation.voc import evaluate_voc

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

# ids far from 1..N, categories out of order: nothing can match by accident
GT = {"images": [{"id": 1001, "file_name": "p.jpg", "width": 64, "height": 48},
                 {"id": 57, "file_name": "q.jpg", "width": 80, "height": 60}],
      "annotations": [{"id": 1, "image_id": 1001, "category_id": 12, "bbox": [10, 10, 20, 20], "area": 400,
                       "iscrowd": 0},
                      {"id": 2, "image_id": 57, "category_id": 4, "bbox": [30, 5, 25, 40], "area": 1000,
                       "iscrowd": 0},
                      {"id": 3, "image_id": 57, "category_id": 12, "bbox": [2, 3, 10, 12], "area": 120,
                       "iscrowd": 0}],
      "categories": [{"id": 12, "name": "cat"}, {"id": 4, "name": "dog"}]}


def score(gt_file, res_file):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(res_file))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.fixture
def coco_set(tmp_path):
    for im in GT["images"]:
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / "images" / im["file_name"])
    (tmp_path / "ann.json").write_text(json.dumps(GT))
    return tmp_path


def detections_from_gt(shift_first=0.0):
    """sppdet detections (0-based inclusive boxes) written out by hand from the COCO boxes."""
    name = {im["id"]: im["file_name"] for im in GT["images"]}
    cat = {c["id"]: c["name"] for c in GT["categories"]}
    dets = []
    for k, a in enumerate(GT["annotations"]):
        x, y, w, h = a["bbox"]
        dx = shift_first if k == 0 else 0.0
        dets.append({"image": name[a["image_id"]], "label": cat[a["category_id"]], "score": 0.9 - 0.1 * k,
                     "bbox": [x + dx, y, x + dx + w - 1, y + h - 1]})
    return dets


def write(ds, dets, out):
    res = evaluate_voc(ds.records, dets, ds.classes)
    write_results(out, res, dets, ds.classes, "all", len(ds), records=ds.records, category_ids=ds.category_ids)
    return out / "coco_results.json"


def test_original_ids_kept_and_perfect_detections_score_one(coco_set, tmp_path):
    ds = load_dataset(coco_set / "ann.json", "all")
    assert sorted(r.coco_id for r in ds.records) == [57, 1001]
    assert ds.category_ids == {"cat": 12, "dog": 4}
    path = write(ds, detections_from_gt(), tmp_path / "out")
    res = json.loads(path.read_text())
    assert {(d["image_id"], d["category_id"]) for d in res} == {(1001, 12), (57, 4), (57, 12)}
    assert res[0]["bbox"] == [10.0, 10.0, 20.0, 20.0] and set(res[0]) == {"image_id", "category_id", "bbox", "score"}
    stats = score(coco_set / "ann.json", path)  # against the ORIGINAL file
    assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)


def test_shifted_detection_has_the_hand_worked_ap(coco_set, tmp_path):
    """The cat of image 1001 shifted 4 px right: IoU = 16·20 / (2·400 - 320) = 2/3."""
    ds = load_dataset(coco_set / "ann.json", "all")
    path = write(ds, detections_from_gt(shift_first=4), tmp_path / "out")
    stats = score(coco_set / "ann.json", path)
    # cat has two objects; by score the shifted detection (0.9) ranks before the exact one (0.7).
    # IoU thresholds 0.50-0.65 (4 of 10): both hits → AP 1. Thresholds 0.70-0.95 (6): a miss, then a
    # hit → recall reaches only 1/2, at precision 1/2: 51 of COCO's 101 recall points (0, 0.01, ...,
    # 0.5) get precision 0.5, the rest 0.
    strict = 51 * 0.5 / 101
    cat_ap, dog_ap = (4 * 1.0 + 6 * strict) / 10, 1.0
    assert stats[0] == pytest.approx((cat_ap + dog_ap) / 2)
    assert stats[1] == pytest.approx(1.0)  # AP50: every detection a hit
    assert stats[2] == pytest.approx((strict + dog_ap) / 2)  # AP75


def test_other_formats_number_ids_like_evaluate_coco(tmp_path):
    """A VOC-like set: ids 1..N in record/class order, the same scheme evaluate_coco's ground truth
    uses, so coco_results.json scores the same as evaluate_coco."""
    from sppdet.datasets.common import DetectionDataset, ImageRecord
    from sppdet.evaluation.coco import coco_ground_truth, evaluate_coco

    recs = [ImageRecord("a", tmp_path / "a.jpg", np.array([[0.0, 0, 9, 9]]), ["x"], np.zeros(1, bool), 50, 40),
            ImageRecord("b", tmp_path / "b.png", np.array([[5.0, 5, 24, 14], [0, 0, 3, 3]]), ["y", "x"],
                        np.zeros(2, bool), 50, 40)]
    ds = DetectionDataset("t", ["x", "y"], recs)
    dets = [{"image": "a.jpg", "label": "x", "score": 1.0, "bbox": [0, 0, 9, 9]},
            {"image": "b.png", "label": "y", "score": 0.5, "bbox": [7, 5, 26, 14]},  # IoU 18/22
            {"image": "b.png", "label": "x", "score": 0.4, "bbox": [0, 0, 3, 3]}]
    path = write(ds, dets, tmp_path / "out")
    res = json.loads(path.read_text())
    assert [(d["image_id"], d["category_id"], d["bbox"]) for d in res] == [
        (1, 1, [0.0, 0.0, 10.0, 10.0]), (2, 2, [7.0, 5.0, 20.0, 10.0]), (2, 1, [0.0, 0.0, 4.0, 4.0])]
    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(recs, ds.classes)))
    stats = score(tmp_path / "gt.json", path)
    # y: IoU 18·10/(2·200 - 180) = 9/11 = 0.818 → hit at 0.50..0.80 (7 of 10); x: exact
    assert stats[0] == pytest.approx((1.0 + 0.7) / 2)
    assert evaluate_coco(recs, dets, ds.classes)["AP"] == pytest.approx(stats[0])


def test_ground_truth_coco_json_scores_the_results_with_plain_pycocotools(tmp_path):
    """A VOC set has no COCO file: eval writes one beside coco_results.json, with the same ids,
    so pycocotools alone scores the results. Detections equal to every non-difficult object,
    then false ones below them: AP 1 at every IoU threshold."""
    from pycocotools.cocoeval import COCOeval

    from sppdet.datasets.synth import write_synthetic

    ds = load_dataset(write_synthetic(tmp_path / "voc", 5, seed=1), "all")
    dets = [{"image": r.path.name, "label": lab, "score": 0.9, "bbox": [float(v) for v in b]}
            for r in ds.records for b, lab, d in zip(r.boxes, r.labels, r.difficult) if not d]
    dets += [{"image": r.path.name, "label": ds.classes[0], "score": 0.1, "bbox": [0.0, 0.0, 3.0, 3.0]}
             for r in ds.records]
    res = evaluate_voc(ds.records, dets, ds.classes)
    write_results(tmp_path / "ev", res, dets, ds.classes, "all", len(ds.records), records=ds.records)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "ev" / "ground_truth_coco.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "ev" / "coco_results.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)
    gt_json = json.loads((tmp_path / "ev" / "ground_truth_coco.json").read_text())
    assert len(gt_json["images"]) == len(ds.records)
    assert sorted(c["name"] for c in gt_json["categories"]) == sorted(ds.classes)
