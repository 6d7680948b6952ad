"""Per-class score thresholds: the --threshold syntax, the checks, Detector.postprocess against a
hand-written reference, and det(img)/sppdet.detect/the CLI on a tiny run."""
import json
import subprocess
import sys

import numpy as np
import pytest

import sppdet
from sppdet.errors import UserError
from sppdet.runtime import single_threaded
from sppdet.thresholds import class_thresholds, parse_threshold
from test_detector import bare_detector, greedy_nms


@pytest.mark.parametrize("text, expected", [
    ("0.3", 0.3), (" 1 ", 1.0), ("-1", -1.0),
    ("RBC=0.4,WBC=0.2", {"RBC": 0.4, "WBC": 0.2}),
    ("RBC = 0.4 , WBC=.2", {"RBC": 0.4, "WBC": 0.2}),
    ("0.3,WBC=0.2", {"*": 0.3, "WBC": 0.2}),
    ("red cell=0.5", {"red cell": 0.5}),
])
def test_parse_threshold(text, expected):
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text, message", [
    ("high", "must be a number"), ("nan", "finite"), ("RBC=", "must be a number"), ("RBC=x", "for RBC must be"),
    ("=0.3", "names no class"), ("0.1,0.2", "two defaults"), ("RBC=0.1,RBC=0.2", "twice"), ("RBC=0.1,", "empty"),
])
def test_parse_threshold_refuses(text, message):
    with pytest.raises(UserError, match=message):
        parse_threshold(text)


def test_class_thresholds():
    classes = ["RBC", "WBC", "Platelets"]
    np.testing.assert_array_equal(class_thresholds(None, classes, 0.25, True), [0.25, 0.25, 0.25])
    np.testing.assert_array_equal(class_thresholds(0.5, classes, 0.25, True), [0.5, 0.5, 0.5])
    # classes not named keep the run's default; "*" replaces that default
    np.testing.assert_array_equal(class_thresholds({"WBC": 0.1}, classes, 0.25, True), [0.25, 0.1, 0.25])
    np.testing.assert_array_equal(class_thresholds({"WBC": 0.1, "*": 0.6}, classes, 0.25, True), [0.6, 0.1, 0.6])
    with pytest.raises(UserError, match=r"'rbc' the run does not have; its classes are RBC, WBC, Platelets"):
        class_thresholds({"rbc": 0.1}, classes, 0.25, True)
    for bad in (1.5, -0.1, {"WBC": 2}, {"*": -1}):
        with pytest.raises(UserError, match=r"probabilities: give a value in \[0, 1\]"):
            class_thresholds(bad, classes, 0.25, True)
    with pytest.raises(UserError, match="test.score_thresh"):  # the run's own default, out of range
        class_thresholds({"WBC": 0.1}, classes, 3.0, True)
    # a run before 0.4 scores margins: any finite number
    np.testing.assert_array_equal(class_thresholds({"RBC": -1.5}, classes, -1.0, False), [-1.5, -1.0, -1.0])
    for bad in (float("nan"), True, "0.3", {"WBC": None}):
        with pytest.raises(UserError, match="finite number"):
            class_thresholds(bad, classes, 0.25, False)


def _case(seed=0, n=80, classes=3):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 80, (n, 2))
    props = np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2))], 1)
    return props, rng.normal(size=(n, classes))


def _reference(props, margins, keep_window, nms):
    """Per class: the windows ``keep_window(margin, class)`` accepts, then greedy NMS on the margins."""
    out = []
    for c in range(margins.shape[1]):
        idx = np.array([k for k in range(len(props)) if keep_window(margins[k, c], c)], dtype=int)
        for k in greedy_nms(props[idx], margins[idx, c], nms) if len(idx) else []:
            out.append((c, tuple(props[idx][k])))
    return sorted(out)


def test_postprocess_with_a_threshold_per_class_margins():
    props, margins = _case()
    det = bare_detector(num_classes=3, score_thresh=0.0, nms=0.3, max_per_image=1000)
    thr = np.array([-0.5, 0.8, 0.0])
    out = det.postprocess(props, margins, None, 200, 200, threshold=thr)
    got = sorted((int(c), tuple(b)) for b, c in zip(out.boxes, out.labels))
    assert got == _reference(props, margins, lambda m, c: m > thr[c], 0.3)
    # the same as a dict; a class it does not name keeps test.score_thresh (0.0 here)
    d = det.postprocess(props, margins, None, 200, 200, threshold={"c0": -0.5, "c1": 0.8})
    np.testing.assert_array_equal(d.boxes, out.boxes)
    with pytest.raises(UserError, match="one value per class"):
        det.postprocess(props, margins, None, 200, 200, threshold=np.array([0.1, 0.2]))


def test_postprocess_with_a_threshold_per_class_probabilities():
    props, margins = _case(seed=1)
    det = bare_detector(num_classes=3, nms=0.4, max_per_image=1000)
    det.platt = np.array([[2.0, 0.5], [1.0, -1.0], [3.0, 1.0]])
    thr = np.array([0.9, 0.2, 0.6])

    def keep(m, c):  # Platt's sigmoid by hand; the margin floor -1 first
        a, b = det.platt[c]
        return m > -1 and 1 / (1 + np.exp(-(a * m + b))) > thr[c]

    out = det.postprocess(props, margins, None, 200, 200, threshold={"c0": 0.9, "c1": 0.2, "c2": 0.6})
    assert sorted((int(c), tuple(b)) for b, c in zip(out.boxes, out.labels)) == _reference(props, margins, keep, 0.4)
    assert all(s > thr[c] for s, c in zip(out.scores, out.labels))


def test_detector_call_per_class_equals_filtering_a_low_threshold(small_run):
    """NMS is per class and greedy from the best, so thresholding before it equals thresholding
    its output: per-class thresholds are the low-threshold detections filtered per class."""
    d, det, imgs = small_run
    low = det(imgs[0], threshold=0.0)  # one process, one thread count: the same bits both times
    assert 0 < len(low) < det.cfg.test.max_per_image  # the cap does not bind
    chosen = {det.classes[0]: float(np.median(low.scores)), det.classes[1]: 0.0}
    thr = np.array([chosen.get(c, det.cfg.test.score_thresh) for c in det.classes])
    per = det(imgs[0], threshold=chosen)
    keep = low.scores > thr[low.labels]
    np.testing.assert_array_equal(np.sort(per.scores), np.sort(low.scores[keep]))
    assert sorted(map(tuple, per.boxes)) == sorted(map(tuple, low.boxes[keep]))
    with pytest.raises(UserError, match="its classes are " + ", ".join(det.classes)):
        det(imgs[0], threshold={"unicorn": 0.3})
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        det(imgs[0], threshold=-5)


def test_sppdet_detect_per_class_and_its_journal(small_run, tmp_path):
    d, det, imgs = small_run
    c0 = det.classes[0]
    res = sppdet.detect(det, imgs[:2], tmp_path / "o", threshold={"*": 0.0, c0: 0.5}, workers=1, paint=False)
    rows = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert res["detections"] == len(rows) > 0
    assert all(r["score"] > (0.5 if r["label"] == c0 else 0.0) for r in rows)
    with single_threaded():  # as detect scores (the products differ in the last bit between thread counts)
        low = json.loads(json.dumps(sum((det(p, threshold=0.0).to_list(str(p)) for p in imgs[:2]), [])))
    assert sorted((r["image"], r["label"], r["score"]) for r in rows) == sorted(
        (r["image"], r["label"], r["score"]) for r in low if r["score"] > (0.5 if r["label"] == c0 else 0.0))
    # other per-class thresholds are another detect: the journal's results are not reused
    with pytest.raises(UserError, match="another detect command"):
        sppdet.detect(det, imgs[:2], tmp_path / "o", threshold={"*": 0.0, c0: 0.6}, workers=1, paint=False)
    with pytest.raises(UserError, match="threshold once"):
        sppdet.detect(det, imgs[:1], tmp_path / "p", threshold={"*": 0.1}, overrides=["test.score_thresh=0.2"])


def test_cli_threshold_errors_are_one_line(small_run, tmp_path):
    d, det, imgs = small_run

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sppdet", "detect", str(d / "run"), str(imgs[0]), "--out",
                               str(tmp_path / "o"), "--workers", "1", *args], capture_output=True, text=True)

    for args, message in ((["--threshold", "unicorn=0.3"], "its classes are " + ", ".join(det.classes)),
                          (["--threshold", "1.5"], "[0, 1]"), (["--threshold", f"{det.classes[0]}=abc"], "number")):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sppdet: error:") and message in lines[0], r.stderr
    assert not (tmp_path / "o").exists()  # refused before any work: no folder left behind
    r = cli("--threshold", f"0.0,{det.classes[0]}=0.9", "--no-images")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert all(row["score"] > 0.9 for row in rows if row["label"] == det.classes[0])
