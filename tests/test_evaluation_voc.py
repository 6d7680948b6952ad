"""VOC AP: hand-worked cases, edge cases, and agreement with the voc_eval.py procedure on files."""
from pathlib import Path

import numpy as np
import pytest

from sppdet.datasets import load_dataset
from sppdet.evaluation.voc import evaluate_voc, voc_ap, write_comp4
from voc_eval_oracle import oracle_voc_eval


def write_voc(root: Path, images: dict):
    """images: id → list of (name, (xmin, ymin, xmax, ymax) 1-based, difficult)."""
    from PIL import Image

    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for image_id, objs in images.items():
        Image.new("RGB", (200, 150), (90, 90, 90)).save(root / "JPEGImages" / f"{image_id}.jpg")
        xml = [f"<annotation><filename>{image_id}.jpg</filename>",
               "<size><width>200</width><height>150</height><depth>3</depth></size>"]
        for name, (x1, y1, x2, y2), diff in objs:
            xml.append(f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox>"
                       f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
        xml.append("</annotation>")
        (root / "Annotations" / f"{image_id}.xml").write_text("".join(xml))
    (root / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in images))


def det(image, label, score, box1):
    """A detection given in 1-based devkit pixels (the library takes 0-based)."""
    return {"image": f"{image}.jpg", "label": label, "score": score, "bbox": [v - 1 for v in box1]}


@pytest.fixture
def two_cats(tmp_path):
    write_voc(tmp_path, {"a": [("cat", (11, 11, 50, 50), False), ("cat", (101, 11, 140, 50), False)]})
    return load_dataset(tmp_path, "test")


def test_hand_worked_ap(two_cats):
    # Scores 0.9 (hits gt 1), 0.8 (misses), 0.7 (hits gt 2): recall .5 .5 1, precision 1 .5 2/3.
    dets = [det("a", "cat", 0.9, (11, 11, 50, 50)), det("a", "cat", 0.8, (60, 100, 90, 140)),
            det("a", "cat", 0.7, (101, 11, 140, 50))]
    r07 = evaluate_voc(two_cats.records, dets, ["cat"], "voc07")
    # 11-point: t = 0 … 0.5 see precision 1 (6 points), t = 0.6 … 1 see 2/3 (5 points).
    assert r07["AP"]["cat"] == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11, abs=1e-12)
    r12 = evaluate_voc(two_cats.records, dets, ["cat"], "voc12")
    # Area: recall 0→.5 at precision 1, .5→1 at 2/3.
    assert r12["AP"]["cat"] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3), abs=1e-12)
    assert r12["mAP"] == r12["AP"]["cat"]


def test_iou_threshold_is_strict_and_uses_plus_one(two_cats):
    # gt (11..50) is 40 px wide; a det (11..50, 11..29) is 40x19 → IoU 19/40 < .5: a miss.
    # A det (11..50, 11..31): 21/40 = .525 > .5: a hit.
    miss = evaluate_voc(two_cats.records, [det("a", "cat", 1.0, (11, 11, 50, 29))], ["cat"])
    hit = evaluate_voc(two_cats.records, [det("a", "cat", 1.0, (11, 11, 50, 31))], ["cat"])
    assert miss["AP"]["cat"] == 0.0
    # one of two gts found at precision 1: 11-point AP = 6/11
    assert hit["AP"]["cat"] == pytest.approx(6 / 11)


def test_edge_cases(tmp_path):
    write_voc(tmp_path, {
        "a": [("cat", (11, 11, 50, 50), False), ("dog", (61, 61, 90, 90), True)],
        "b": [("cat", (21, 21, 80, 80), True)],
    })
    ds = load_dataset(tmp_path, "test", classes=["cat", "dog", "bird"])
    # No detections at all: AP 0 for classes with ground truth, None for the others.
    r = evaluate_voc(ds.records, [], ["cat", "dog", "bird"])
    assert r["AP"] == {"cat": 0.0, "dog": None, "bird": None}
    assert r["mAP"] == 0.0
    # Duplicate detection: the second one on the same gt is a false positive.
    dets = [det("a", "cat", 0.9, (11, 11, 50, 50)), det("a", "cat", 0.8, (11, 11, 50, 50))]
    r = evaluate_voc(ds.records, dets, ["cat"], "voc12")
    assert r["AP"]["cat"] == pytest.approx(1.0)  # recall reaches 1 at precision 1 first
    np.testing.assert_allclose(r["curves"]["cat"][1], [1.0, 0.5])
    # A detection on a difficult object is neither TP nor FP.
    dets = [det("b", "cat", 0.95, (21, 21, 80, 80)), det("a", "cat", 0.5, (11, 11, 50, 50))]
    r = evaluate_voc(ds.records, dets, ["cat"], "voc12")
    assert r["AP"]["cat"] == pytest.approx(1.0)
    # Only difficult objects of a class: no AP, excluded from mAP.
    r = evaluate_voc(ds.records, [det("a", "dog", 0.9, (61, 61, 90, 90))], ["cat", "dog"])
    assert r["AP"]["dog"] is None and r["mAP"] == 0.0


def test_voc_ap_known_values():
    assert voc_ap(np.array([]), np.array([]), True) == 0.0
    assert voc_ap(np.array([]), np.array([]), False) == 0.0
    assert voc_ap(np.array([1.0]), np.array([1.0]), True) == pytest.approx(1.0)
    assert voc_ap(np.array([0.25, 0.5]), np.array([1.0, 0.5]), False) == pytest.approx(0.25 + 0.125)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_matches_voc_eval_procedure_on_files(tmp_path, seed, metric):
    """Random scenes with many tied scores, duplicates and difficult objects; the library's
    result must equal the voc_eval.py procedure run on the comp4 files it writes, exactly."""
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog"]
    images, dets = {}, []
    for i in range(12):
        objs = []
        for _ in range(rng.integers(0, 5)):
            x1, y1 = rng.integers(1, 120), rng.integers(1, 90)
            box = (int(x1), int(y1), int(x1 + rng.integers(5, 70)), int(y1 + rng.integers(5, 55)))
            objs.append((classes[rng.integers(0, 2)], box, bool(rng.random() < 0.15)))
        images[f"im{i:02d}"] = objs
        for _ in range(rng.integers(0, 9)):
            if objs and rng.random() < 0.6:  # near a gt box
                _, b, _ = objs[rng.integers(0, len(objs))]
                box = [v + float(rng.integers(-6, 7)) for v in b]
            else:
                x1, y1 = rng.uniform(1, 120), rng.uniform(1, 90)
                box = [x1, y1, x1 + rng.uniform(3, 60), y1 + rng.uniform(3, 50)]
            score = float(rng.choice([0.1, 0.5, 0.5, 0.9, rng.random()]))  # many ties
            dets.append(det(f"im{i:02d}", classes[rng.integers(0, 2)], score, box))
    write_voc(tmp_path / "voc", images)
    ds = load_dataset(tmp_path / "voc", "test")
    ours = evaluate_voc(ds.records, dets, classes, metric)
    write_comp4(dets, classes, "test", tmp_path / "res")
    for c in classes:
        rec, prec, ap, npos = oracle_voc_eval(
            str(tmp_path / "res" / f"comp4_det_test_{c}.txt"), str(tmp_path / "voc/Annotations/{}.xml"),
            str(tmp_path / "voc/ImageSets/Main/test.txt"), c, use_07=(metric == "voc07"))
        assert ours["npos"][c] == npos
        if npos == 0:
            assert ours["AP"][c] is None
        else:
            assert ours["AP"][c] == ap  # exactly, not approximately
            np.testing.assert_array_equal(ours["curves"][c][0], rec)
            np.testing.assert_array_equal(ours["curves"][c][1], prec)
