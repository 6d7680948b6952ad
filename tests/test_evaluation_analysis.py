"""Error analysis: each Hoiem category on a hand-built case; "correct" is exactly VOC's true
positives; report.html only links to files that exist."""
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets.common import ImageRecord
from sppdet.evaluation.analysis import analyze, categorise
from sppdet.evaluation.voc import evaluate_voc


def rec(tmp_path, image_id, objs, size=(400, 400)):
    p = tmp_path / f"{image_id}.jpg"
    rng = np.random.default_rng(len(image_id))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
    return ImageRecord(image_id, p, np.array([o[1] for o in objs], dtype=np.float64).reshape(-1, 4),
                       [o[0] for o in objs], np.array([o[2] if len(o) > 2 else False for o in objs], dtype=bool),
                       size[0], size[1])


@pytest.fixture
def scene(tmp_path):
    r1 = rec(tmp_path, "one", [("cat", (10, 10, 49, 49)), ("dog", (100, 10, 139, 49)),
                               ("bird", (200, 10, 239, 49)), ("cat", (300, 100, 339, 139), True),
                               ("dog", (10, 200, 49, 239))])
    r2 = rec(tmp_path, "two", [("cat", (50, 50, 89, 89))])
    d = lambda box, s, lab="cat", im="one.jpg": {"image": im, "label": lab, "score": s, "bbox": list(box)}  # noqa
    dets = [
        d((10, 10, 49, 49), 0.9),      # correct
        d((10, 10, 49, 49), 0.8),      # the same object again: duplicate → localisation
        d((30, 10, 69, 49), 0.7),      # IoU 800/2400 = 1/3 with the cat → localisation
        d((100, 10, 139, 49), 0.6),    # on the dog → similar (cat~dog) / other (no groups)
        d((200, 10, 239, 49), 0.5),    # on the bird → other
        d((300, 300, 339, 339), 0.4),  # nothing there → background
        d((300, 100, 339, 139), 0.3),  # the difficult cat → ignored
    ]
    return [r1, r2], dets


def test_each_category_hand_built(scene):
    records, dets = scene
    classes = ["bird", "cat", "dog"]
    ranked, missed = categorise(records, dets, classes, similar=[["cat", "dog"]])
    got = [(e["score"], e["category"]) for e in ranked["cat"]]
    assert got == [(0.9, "correct"), (0.8, "localisation"), (0.7, "localisation"), (0.6, "similar"),
                   (0.5, "other"), (0.4, "background"), (0.3, "ignored")]
    assert ranked["cat"][1]["duplicate"] and not ranked["cat"][2].get("duplicate")
    assert ranked["cat"][2]["iou"] == pytest.approx(1 / 3)
    assert missed["cat"] == [("two", 0)]  # the difficult cat is not "missed"
    assert len(missed["dog"]) == 2 and len(missed["bird"]) == 1
    # without groups a confusion with the dog is "other"
    plain, _ = categorise(records, dets, classes)
    assert plain["cat"][3]["category"] == "other"


def test_localisation_before_confusion(tmp_path):
    """IoU 1 with a cat but 1/3 with a dog: a dog detection there is a localisation error."""
    records = [rec(tmp_path, "x", [("cat", (0, 0, 39, 39)), ("dog", (20, 0, 59, 39))], size=(80, 60))]
    d = [{"image": "x.jpg", "label": "dog", "score": 1.0, "bbox": [0, 0, 39, 39]}]
    ranked, _ = categorise(records, d, ["cat", "dog"], similar=[["cat", "dog"]])
    assert ranked["dog"][0]["category"] == "localisation" and ranked["dog"][0]["iou"] == pytest.approx(1 / 3)


def test_correct_is_exactly_voc_true_positives(tmp_path):
    rng = np.random.default_rng(3)
    records, dets = [], []
    for i in range(6):
        objs = []
        for _ in range(4):
            x, y = rng.integers(0, 150, 2)
            objs.append((["a", "b"][rng.integers(2)], (x, y, x + rng.integers(10, 60), y + rng.integers(10, 60)),
                         bool(rng.random() < 0.2)))
        records.append(rec(tmp_path, f"im{i}", objs, size=(220, 220)))
        for lab, b, _ in objs:
            for _ in range(3):
                j = rng.normal(0, 6, 4)
                dets.append({"image": f"im{i}.jpg", "label": ["a", "b"][rng.integers(2)],
                             "score": float(rng.random()), "bbox": [float(v) for v in np.array(b) + j]})
    res = evaluate_voc(records, dets, ["a", "b"])
    ranked, missed = categorise(records, dets, ["a", "b"])
    for c in ("a", "b"):
        tp = int(round(res["curves"][c][0][-1] * res["npos"][c]))
        assert sum(e["category"] == "correct" for e in ranked[c]) == tp
        assert len(missed[c]) == res["npos"][c] - tp


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def check_report(out: Path) -> list[str]:
    parser = Links()
    parser.feed((out / "report.html").read_text())
    for link in parser.links:
        assert link.startswith("data:") or link.startswith("#") or (out / link).is_file(), link
        assert not Path(link).is_absolute()
    return parser.links


def test_report_written_and_links_resolve(scene, tmp_path, monkeypatch):
    import sppdet.evaluation.analysis as an

    records, dets = scene
    # the TIDE table as tidecv's numbers would fill it (tidecv itself is optional)
    monkeypatch.setattr(an, "tide_breakdown", lambda *a: {
        "available": True, "AP50": 0.5, "dAP": {"Cls": 0.1, "Loc": 0.2, "Both": 0.0, "Dupe": 0.0, "Bkg": 0.05,
                                                 "Miss": 0.0}, "dAP_special": {"FalsePos": 0.3, "FalseNeg": 0.0}})
    out = tmp_path / "analysis"
    result = analyze(records, dets, ["bird", "cat", "dog"], out, max_gallery=3, similar=[["cat", "dog"]])
    links = check_report(out)
    assert sum(link.endswith(".jpg") for link in links) >= 4 and any("pr_cat" in link for link in links)
    cat = result["classes"]["cat"]
    # N = 2 objects: the top 2 (ignored excluded) are a hit and a duplicate
    assert cat["npos"] == 2 and cat["top_n"]["correct"] == 1 and cat["top_n"]["localisation"] == 1
    assert cat["all"] == {"correct": 1, "localisation": 2, "similar": 1, "other": 1, "background": 1,
                          "duplicate": 1}
    assert cat["ignored"] == 1 and cat["missed"] == 1
    assert (out / "analysis.json").is_file() and (out / "fp_cat.png").is_file()
    assert len(result["files"]["gallery"]["cat"]["false_positives"]) == 3
    page = (out / "report.html").read_text()
    assert "AP50 50.00" in page and "<td>20.00</td>" in page


def test_tide_when_installed(scene):
    pytest.importorskip("tidecv")
    from sppdet.evaluation.analysis import tide_breakdown

    records, dets = scene
    t = tide_breakdown(records, dets, ["bird", "cat", "dog"])
    assert t["available"] and set(t["dAP"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}


def test_bccd_jittered_ground_truth(shared_data, tmp_path):
    from sppdet.datasets import load_dataset

    ds = load_dataset(shared_data / "bccd" / "BCCD", "test")
    records = ds.records[:6]
    rng = np.random.default_rng(0)
    dets = []
    for r in records:
        for lab, b in zip(r.labels, r.boxes):
            if rng.random() < 0.2:
                continue  # missed
            w, h = b[2] - b[0], b[3] - b[1]
            jit = b + rng.normal(0, 0.15, 4) * [w, h, w, h]
            if rng.random() < 0.15:
                lab = ds.classes[(ds.classes.index(lab) + 1) % len(ds.classes)]  # wrong class
            dets.append({"image": r.path.name, "label": lab, "score": float(rng.random()),
                         "bbox": [float(v) for v in jit]})
        for _ in range(3):  # background
            x, y = rng.uniform(0, r.width - 40), rng.uniform(0, r.height - 40)
            dets.append({"image": r.path.name, "label": ds.classes[rng.integers(3)], "score": float(rng.random()),
                         "bbox": [x, y, x + 30, y + 30]})
    out = tmp_path / "bccd_analysis"
    result = analyze(records, dets, ds.classes, out, max_gallery=4)
    check_report(out)
    for c, s in result["classes"].items():
        assert sum(s["all"][k] for k in ("correct", "localisation", "similar", "other", "background")) \
            + s["ignored"] == s["detections"]
    assert result["mAP"] == pytest.approx(evaluate_voc(records, dets, ds.classes)["mAP"])
    assert len(list((out / "gallery").rglob("*.jpg"))) > 0
