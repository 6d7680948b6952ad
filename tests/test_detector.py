"""Post-processing against a hand-written greedy NMS; run directories: round trip and refusals."""
import json

import numpy as np
import pytest
import torch
import torchvision

from sppdet.backbones import build_trunk
from sppdet.config import BackboneConfig, BBoxRegConfig, Config, FeatureConfig
from sppdet.config import TestConfig as _TestConfig  # (not a class of tests)
from sppdet.detector import Detector
from sppdet.errors import UserError
from sppdet.features import FeatureExtractor


def greedy_nms(boxes, scores, thresh):
    """Reference NMS with the +1 pixel convention, written plainly."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            xx1, yy1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            xx2, yy2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, xx2 - xx1 + 1) * max(0.0, yy2 - yy1 + 1)
            a = (boxes[i][2] - boxes[i][0] + 1) * (boxes[i][3] - boxes[i][1] + 1)
            b = (boxes[j][2] - boxes[j][0] + 1) * (boxes[j][3] - boxes[j][1] + 1)
            if inter / (a + b - inter) <= thresh:
                rest.append(j)
        order = rest
    return keep


def bare_detector(num_classes=2, **test):
    cfg = Config(bbox_reg=BBoxRegConfig(enabled=False), test=_TestConfig(**test))
    return Detector(cfg, [f"c{i}" for i in range(num_classes)], None, None,
                    np.zeros((4, num_classes)), np.zeros(num_classes), 1.0, None, 1.0)


def test_postprocess_is_per_class_nms_with_threshold_and_cap():
    rng = np.random.default_rng(0)
    props = rng.uniform(0, 80, (60, 2))
    props = np.concatenate([props, props + rng.uniform(10, 40, (60, 2))], 1)
    scores = rng.normal(size=(60, 2))
    det = bare_detector(score_thresh=-0.5, nms=0.3, max_per_image=1000)
    out = det.postprocess(props, scores, None, 200, 200)
    expected = []
    for c in range(2):
        idx = np.nonzero(scores[:, c] > -0.5)[0]
        for k in greedy_nms(props[idx], scores[idx, c], 0.3):
            expected.append((c, tuple(props[idx][k]), scores[idx[k], c]))
    got = sorted((int(c), tuple(b), s) for b, s, c in zip(out.boxes, out.scores, out.labels))
    assert got == sorted(expected)
    assert (np.diff(out.scores) <= 0).all()  # best first
    capped = bare_detector(score_thresh=-0.5, max_per_image=5).postprocess(props, scores, None, 200, 200)
    np.testing.assert_array_equal(capped.scores, out.scores[:5])


@pytest.fixture
def small_run(tmp_path, random_weights):
    wpath = random_weights
    cfg = Config(backbone=BackboneConfig(weights=str(wpath)), device="cpu",
                 features=FeatureConfig(levels=[2, 1], scales=[128]))
    trunk = build_trunk("mobilenet_v2", str(wpath))
    ext = FeatureExtractor(trunk, [128], levels=[2, 1])
    from sppdet.bbox_regression import BoxRegressor
    from sppdet.heads import FCHead

    head = FCHead(ext.dim, 16, 2)
    det = Detector(cfg, ["a", "b"], ext, head, np.ones((16, 2)), np.zeros(2), 2.0, BoxRegressor(2, ext.dim), 3.0)
    det.save(tmp_path / "run", {"note": "test"})
    return tmp_path, det


def test_run_round_trip(small_run):
    tmp_path, det = small_run
    loaded = Detector.load(tmp_path / "run", device="cpu")
    assert loaded.classes == ["a", "b"] and loaded.feat_scale == 2.0 and loaded.pool5_scale == 3.0
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    props = np.array([[0, 0, 50, 50], [20, 10, 119, 89]], dtype=np.float32)
    a = det.detect(img, props)
    b = loaded.detect(img, props)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_runs_saved_before_the_channels_last_order_still_load(small_run):
    """A 0.1 run has no "channels_last" key: its heads were trained on [C, n, n] vectors, so
    loading must pool in that order and detect exactly as the same detector did then."""
    tmp_path, det = small_run
    run = tmp_path / "run"
    assert Detector.load(run, device="cpu").extractor.channels_last is True
    blob = torch.load(run / "model.pt", weights_only=True)
    del blob["channels_last"]
    torch.save(blob, run / "model.pt")
    old = Detector.load(run, device="cpu")
    assert old.extractor.channels_last is False
    det.extractor.channels_last = False
    img = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    props = np.array([[0, 0, 50, 50], [20, 10, 119, 89], [5, 5, 60, 40]], dtype=np.float32)
    ref = det.detect(img, props).scores
    assert len(ref) > 0
    np.testing.assert_array_equal(ref, old.detect(img, props).scores)
    det.extractor.channels_last = True  # the other order must change the scores
    assert not np.array_equal(det.detect(img, props).scores, ref)


def test_damaged_or_mismatched_runs_are_refused(small_run, tmp_path):
    _, det = small_run
    run = tmp_path / "run"
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "classes": ["x", "y"]}))
    with pytest.raises(UserError, match="disagree"):
        Detector.load(run)
    (run / "meta.json").write_text(json.dumps(meta))
    other = tmp_path / "other.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), other)
    with pytest.raises(UserError, match="sha256"):
        Detector.load(run, weights=str(other))
    (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:100])
    with pytest.raises(UserError, match="damaged"):
        Detector.load(run)
    (run / "model.pt").unlink()
    with pytest.raises(UserError, match="model.pt is missing"):
        Detector.load(run)
    with pytest.raises(UserError, match="not found"):
        Detector.load(tmp_path / "nope")
