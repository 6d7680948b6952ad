"""A new user's own data: classes without training objects, exports as a labelling service
writes them (COCO one file per split with an empty category 0, YOLO with a foreign data.yaml),
splits used as given. Tiny synthetic images, a random-weights trunk."""
import json
import logging

import numpy as np
import pytest
import torch

import exports
from sppdet.config import Config
from sppdet.datasets import load_dataset
from sppdet.errors import UserError

CLASSES = ["disc", "triangle", "star", "cross", "ring"]


def fast_cfg(weights) -> Config:
    cfg = Config()
    cfg.backbone.weights = str(weights)
    cfg.device = "cpu"
    cfg.proposals.max_boxes = 120
    cfg.proposals.work_size = 300
    cfg.features.scales = [256]
    cfg.svm.retrain_limit = 300
    return cfg


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "w.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), p)
    return p


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from sppdet.datasets.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("syn") / "voc", 12, seed=4)


@pytest.fixture(scope="module")
def coco_export(voc, tmp_path_factory):
    """The COCO export; 'ring' objects are kept only in the test split, and 'cross' keeps
    a single training object."""
    root = exports.write_coco_export(voc, tmp_path_factory.mktemp("coco") / "export", CLASSES, exports.assign(voc))
    f = root / "train" / "_annotations.coco.json"
    d = json.loads(f.read_text())
    ring, cross = CLASSES.index("ring") + 1, CLASSES.index("cross") + 1
    crosses = [a for a in d["annotations"] if a["category_id"] == cross]
    assert crosses, "the synthetic set should hold cross objects"
    d["annotations"] = [a for a in d["annotations"] if a["category_id"] not in (ring, cross)] + crosses[:1]
    f.write_text(json.dumps(d))
    test = json.loads((root / "test" / "_annotations.coco.json").read_text())
    assert any(a["category_id"] == ring for a in test["annotations"]), "the test split should hold rings"
    return root


@pytest.mark.slow
def test_class_without_objects_is_left_out_with_one_warning(coco_export, weights, tmp_path, caplog):
    from sppdet.training import train_detector

    ds = load_dataset(coco_export / "train" / "_annotations.coco.json", "all")
    assert ds.classes == ["shapes"] + CLASSES  # category 0 is listed by the file
    cfg = fast_cfg(weights)
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        det, log = train_detector(cfg, ds, tmp_path / "cache")
    assert det.classes == ["disc", "triangle", "star", "cross"]
    warned = [r.getMessage() for r in caplog.records if "no training objects" in r.getMessage()]
    assert len(warned) == 1 and "'shapes'" in warned[0] and "'ring'" in warned[0]
    assert log["classes_without_objects"] == ["shapes", "ring"]
    assert log["positives"]["cross"] == 1
    assert all(0 < n <= cfg.svm.max_negatives for n in log["svm_peak_negatives"].values())
    # every class scores with evidence: no class gives every window the same score
    test = load_dataset(coco_export / "test" / "_annotations.coco.json", "all", classes=det.classes)
    from sppdet.cache import CachedData

    data = CachedData(cfg, det.extractor, tmp_path / "cache")
    recs = data.prepare(test.records, test.report)
    scores = det.score(det.window_features(det.extractor.pool(data.maps(recs[0]), data.boxes(recs[0]))))
    assert all(np.ptp(scores[:, c]) > 0 for c in range(len(det.classes)))

    # a class asked for by name without objects is an error, before any long work
    cfg.data.classes = ["disc", "ring"]
    with pytest.raises(UserError, match="'ring'"):
        train_detector(cfg, load_dataset(coco_export / "train" / "_annotations.coco.json", "all",
                                         classes=cfg.data.classes), tmp_path / "cache2")
    assert not (tmp_path / "cache2").exists() or not any((tmp_path / "cache2").rglob("*.npy"))

    # a 0.3 run kept such a class with w = 0, b = 0: it must never be emitted
    from sppdet.detector import Detector

    W, b = det.svm_W.numpy().copy(), det.svm_b.numpy().copy()
    W[:, 0], b[0] = 0, 0
    old = Detector(det.cfg, det.classes, det.extractor, None, W, b, det.feat_scale, det.bbox, det.pool5_scale)
    d = old.detect_maps(data.maps(recs[0]), data.boxes(recs[0]), recs[0].width, recs[0].height)
    assert 0 not in set(d.labels.tolist()) and len(d) > 0
