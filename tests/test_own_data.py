"""A new user's own data: classes without training objects, exports as a labelling service
writes them (COCO one file per split with an empty category 0, YOLO with a foreign data.yaml),
splits used as given. Tiny synthetic images, a random-weights trunk."""
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

import exports
from sppdet.config import BackboneConfig, Config, FeatureConfig, ProposalConfig, SVMConfig
from sppdet.datasets import load_dataset
from sppdet.errors import UserError

CLASSES = ["disc", "triangle", "star", "cross", "ring"]


def fast_cfg(weights) -> Config:
    return Config(backbone=BackboneConfig(weights=str(weights)), device="cpu",
                  proposals=ProposalConfig(max_boxes=120, work_size=300), features=FeatureConfig(scales=[256]),
                  svm=SVMConfig(retrain_limit=300))


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

    data = CachedData.from_config(cfg, det.extractor, tmp_path / "cache")
    recs = data.prepare(test.records, test.report)
    scores = det.score(det.window_features(det.extractor.pool(data.maps(recs[0]), data.boxes(recs[0]))))
    assert all(np.ptp(scores[:, c]) > 0 for c in range(len(det.classes)))

    # a class named in data.classes without objects stays in the model, untrained (never detected),
    # with one warning; the others train as before
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, classes=["disc", "ring"]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        named, named_log = train_detector(cfg, load_dataset(coco_export / "train" / "_annotations.coco.json", "all",
                                                            classes=cfg.data.classes), tmp_path / "cache")
    assert named.classes == ["disc", "ring"] and named.untrained.tolist() == [False, True]
    assert not named.svm_W[:, 1].any() and named.svm_b[1] == 0 and named.svm_W[:, 0].any()
    assert named_log["untrained_classes"] == ["ring"] and named_log["positives"] == {"disc": log["positives"]["disc"],
                                                                                       "ring": 0}
    warned = [r.getMessage() for r in caplog.records if "never be detected" in r.getMessage()]
    assert len(warned) == 1 and "'ring'" in warned[0]
    d = named.detect_maps(data.maps(recs[0]), data.boxes(recs[0]), recs[0].width, recs[0].height, threshold=0.0)
    assert 1 not in set(d.labels.tolist())

    # a 0.3 run kept such a class with w = 0, b = 0: it must never be emitted
    from sppdet.detector import Detector

    W, b = det.svm_W.numpy().copy(), det.svm_b.numpy().copy()
    W[:, 0], b[0] = 0, 0
    old = Detector(det.cfg, det.classes, det.extractor, None, W, b, det.feat_scale, det.bbox, det.pool5_scale)
    d = old.detect_maps(data.maps(recs[0]), data.boxes(recs[0]), recs[0].width, recs[0].height, threshold=-1.0)
    assert 0 not in set(d.labels.tolist()) and len(d) > 0


@pytest.fixture(scope="module")
def plain_exports(voc, tmp_path_factory):
    d = tmp_path_factory.mktemp("exports")
    splits = exports.assign(voc)
    return (exports.write_coco_export(voc, d / "coco", CLASSES, splits),
            exports.write_yolo_export(voc, d / "yolo", CLASSES, splits), splits)


def _boxes_by_id(ds):
    return {r.image_id: (sorted(r.labels), np.round(r.boxes[np.lexsort(r.boxes.T[::-1])], 2)) for r in ds.records}


def test_coco_export_root_splits_are_used_as_given(plain_exports, voc):
    root, _, splits = plain_exports
    n = {s: len(ids) for s, ids in splits.items()}
    for split, want in (("train", n["train"]), ("valid", n["valid"]), ("val", n["valid"]), ("test", n["test"]),
                        ("trainval", n["train"] + n["valid"]), ("all", sum(n.values()))):
        ds = load_dataset(root, split)
        assert len(ds) == want, split
    ds = load_dataset(root, "test")
    assert sorted(r.image_id for r in ds.records) == sorted(splits["test"])
    assert "test/_annotations.coco.json" in ds.source and "every image" in ds.source
    # the same objects as the original (boxes converted by hand in tests/exports.py)
    ref = load_dataset(voc, "all")
    ref_boxes = _boxes_by_id(ref)
    for k, (labels, boxes) in _boxes_by_id(ds).items():
        assert labels == ref_boxes[k][0]
        np.testing.assert_allclose(boxes, ref_boxes[k][1], atol=1e-6)
    with pytest.raises(UserError, match="train, valid, test"):
        load_dataset(root, "holdout")
    # a split's folder, as --data or --eval-split
    assert sorted(r.image_id for r in load_dataset(root / "test", "all").records) == sorted(splits["test"])
    # one split's file is used whole, whatever --split says; the log says so
    f = root / "test" / "_annotations.coco.json"
    for split in ("test", "train", "trainval"):
        assert len(load_dataset(f, split)) == n["test"]
    assert "does not re-split" in load_dataset(f, "train").source


def test_coco_file_that_is_no_split_is_resplit_and_says_so(plain_exports, tmp_path):
    root, _, splits = plain_exports
    whole = tmp_path / "shapes"
    whole.mkdir()
    merged = {"images": [], "annotations": [], "categories": None}
    for s in splits:
        d = json.loads((root / s / "_annotations.coco.json").read_text())
        off = len(merged["images"])
        merged["categories"] = d["categories"]
        merged["images"] += [dict(im, id=im["id"] + off) for im in d["images"]]
        merged["annotations"] += [dict(a, image_id=a["image_id"] + off, id=len(merged["annotations"]) + i)
                                  for i, a in enumerate(d["annotations"])]
        for im in d["images"]:
            (whole / im["file_name"]).write_bytes((root / s / im["file_name"]).read_bytes())
    (whole / "annotations.json").write_text(json.dumps(merged))
    total = len(merged["images"])
    test, train = load_dataset(whole / "annotations.json", "test"), load_dataset(whole / "annotations.json", "train")
    assert len(test) + len(train) == total and 0 < len(test) < total
    assert "re-split" in test.source and "--split all" in test.source
    assert len(load_dataset(whole / "annotations.json", "all")) == total


def test_yolo_export_with_foreign_yaml_paths_valid_split_and_name_lists(plain_exports, voc):
    _, root, splits = plain_exports
    assert "/home/someone-else" in (root / "data.yaml").read_text()
    for split in ("valid", "val"):
        ds = load_dataset(root, split)
        assert sorted(r.image_id for r in ds.records) == sorted(splits["valid"])
        assert "re-rooted" in ds.report.summary()
    assert len(load_dataset(root, "trainval")) == len(splits["train"]) + len(splits["valid"])
    ds = load_dataset(root, "test")
    ref = _boxes_by_id(load_dataset(voc, "all"))
    for k, (labels, boxes) in _boxes_by_id(ds).items():
        assert labels == ref[k][0]
        np.testing.assert_allclose(boxes, ref[k][1], atol=1e-2)
    # a list file of bare names (with or without the extension) and relative paths
    ids = splits["test"]
    lst = root / "mine.txt"
    lst.write_text(f"{ids[0]}.jpg\n{ids[1]}\ntest/images/{ids[2]}.jpg\n")
    assert sorted(r.image_id for r in load_dataset(root, str(lst)).records) == sorted(ids)


FAST = {"proposals": {"max_boxes": 120, "work_size": 300}, "features": {"scales": [256]},
        "svm": {"retrain_limit": 300}, "device": "cpu"}


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _train(root, weights, out, eval_split, **kw):
    import sppdet

    h = Messages()
    logging.getLogger("sppdet").addHandler(h)
    level = logging.getLogger("sppdet").level
    logging.getLogger("sppdet").setLevel(logging.INFO)
    try:
        det = sppdet.train(root, out / "run", cache=out / "cache", eval_split=eval_split, workers=1,
                           backbone={"weights": str(weights)}, **FAST, **kw)
    finally:
        logging.getLogger("sppdet").removeHandler(h)
        logging.getLogger("sppdet").setLevel(level)
    return det, [m for m in h.lines if "images from" in m]


@pytest.fixture(scope="module")
def coco_run(plain_exports, weights, tmp_path_factory):
    """A run trained on the COCO export root with the defaults (train + valid), evaluated on test."""
    root = plain_exports[0]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    d = tmp_path_factory.mktemp("coco_run")
    det, used = _train(root, weights, d, "test")
    assert before == sorted(p.relative_to(root) for p in root.rglob("*")), "nothing written into the data"
    return det, used, d


@pytest.mark.slow
def test_coco_export_trains_and_evaluates_end_to_end(plain_exports, coco_run):
    _, _, splits = plain_exports
    det, used, _ = coco_run
    assert "shapes" not in det.classes and set(det.classes) <= set(CLASSES)
    assert det.metrics["images"] == len(splits["test"]) and det.metrics["mAP"] is not None
    assert any(f"{len(splits['train']) + len(splits['valid'])} images from" in u for u in used)
    assert any(f"{len(splits['test'])} images from" in u and "test/_annotations.coco.json" in u for u in used)
    assert (det.run_dir / "eval_test" / "metrics.json").is_file()


@pytest.mark.slow
def test_yolo_export_trains_and_evaluates_end_to_end(plain_exports, weights, tmp_path):
    _, root, splits = plain_exports
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    det, used = _train(root, weights, tmp_path, "valid")
    assert det.metrics["images"] == len(splits["valid"]) and det.metrics["mAP"] is not None
    assert any(f"{len(splits['valid'])} images from" in u for u in used)
    assert files == sorted(p.relative_to(root) for p in root.rglob("*")), "nothing written into the data"


@pytest.mark.slow
def test_evaluations_on_other_data_never_mix(plain_exports, coco_run, tmp_path, monkeypatch):
    import sppdet

    coco_root, yolo_root, splits = plain_exports
    det, _, d = coco_run
    run = det.run_dir
    # without cache=, evaluations reuse the cache the run was trained with, not the default one
    monkeypatch.setenv("SPPDET_CACHE", str(tmp_path / "default_cache"))
    assert json.loads((run / "train_log.json").read_text())["cache_dir"] == str((d / "cache").resolve())
    # another data set by default gets its own folder; the run's own test split keeps eval_test
    own = json.loads((run / "eval_test" / "metrics.json").read_text())
    m = sppdet.evaluate(run, data=yolo_root, split="valid", analyze=True, gallery=1)
    assert not (tmp_path / "default_cache").exists()
    assert m["out"] == str(run / "eval_yolo_valid") and m["images"] == len(splits["valid"])
    assert json.loads((run / "eval_test" / "metrics.json").read_text()) == own
    # one folder, two evaluations: nothing of the first is left beside the second
    out = tmp_path / "ev"
    sppdet.evaluate(run, data=yolo_root, split="valid", out=out, cache=d / "cache", analyze=True, gallery=1)
    assert (out / "analysis" / "report.html").is_file()
    cal = json.loads((out / "analysis" / "analysis.json").read_text())["calibration"]
    assert cal["available"] and 0 <= cal["ece"] <= 1 and (out / "analysis" / "calibration.png").is_file()
    m2 = sppdet.evaluate(run, data=coco_root / "test" / "_annotations.coco.json", split="all", out=out,
                         cache=d / "cache")
    assert not (out / "analysis").exists()
    assert "test/_annotations.coco.json" in m2["data"] and m2["images"] == len(splits["test"])
    assert len(json.loads((out / "detections.json").read_text())) == m2["detections"]
    # --eval-split naming another data set: all its images
    h = sppdet.train(coco_root, tmp_path / "run2", cache=d / "cache", eval_split=str(yolo_root / "data.yaml"),
                     workers=1, backbone={"weights": det.cfg.backbone.weights}, **FAST)
    assert h.metrics["images"] == sum(len(v) for v in splits.values())
    assert (tmp_path / "run2" / "eval_yolo-data_all" / "metrics.json").is_file()


@pytest.mark.slow
def test_scores_are_calibrated_probabilities_and_old_runs_still_load(coco_run, plain_exports, tmp_path):
    import warnings

    import sppdet
    from sppdet.detector import Detector

    det, _, d = coco_run
    log = json.loads((det.run_dir / "train_log.json").read_text())
    assert set(log["calibration"]) == set(det.classes)
    assert all(v["folds_refitted"] >= 1 for v in log["calibration"].values())
    rows = json.loads((det.run_dir / "eval_test" / "detections.json").read_text())
    assert rows and all(0 <= r["score"] <= 1 and "margin" in r for r in rows)
    # within a class, scores rise with margins
    for c in det.classes:
        pairs = sorted((r["margin"], r["score"]) for r in rows if r["label"] == c)
        assert all(s1 <= s2 for (_, s1), (_, s2) in zip(pairs, pairs[1:]))
    loaded = sppdet.load(det.run_dir)
    img = plain_exports[0] / "test" / json.loads(
        (plain_exports[0] / "test" / "_annotations.coco.json").read_text())["images"][0]["file_name"]
    loose, strict = loaded(img, threshold=0.0), loaded(img)
    assert len(strict) == (loose.scores > 0.25).sum() and (strict.scores > 0.25).all()
    # a 0.3 run (no calibration in model.pt, test.score_thresh -1 in its config) still loads,
    # says so, and scores with its margins as it did
    import shutil

    import torch
    import yaml

    old = tmp_path / "old_run"
    shutil.copytree(det.run_dir, old, ignore=shutil.ignore_patterns("eval_*"))
    blob = torch.load(old / "model.pt", weights_only=True)
    del blob["platt"]
    torch.save(blob, old / "model.pt")
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    cfg["test"]["score_thresh"] = -1.0
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        o = Detector.load(old)
    assert any("no score calibration" in str(w.message) for w in caught)
    r = o(img)
    assert not r.calibrated and (r.scores > -1).all()
    np.testing.assert_array_equal(r.scores, r.margins)
    m = sppdet.evaluate(o, data=plain_exports[0] / "test" / "_annotations.coco.json", split="all",
                        out=tmp_path / "ev_old", cache=d / "cache")
    assert m["AP"] == det.metrics["AP"]  # margins rank as the calibrated scores do


def test_config_as_dict_name_path_or_object(tmp_path):
    import sppdet
    from sppdet.api import make_config

    c = make_config({"svm": {"C": 0.01}, "seed": 3}, svm={"pos_weight": 3.0})
    assert (c.svm.C, c.svm.pos_weight, c.seed) == (0.01, 3.0, 3)
    shipped = make_config("custom_small")
    import yaml

    from pathlib import Path

    text = yaml.safe_load((Path(sppdet.__file__).parents[1] / "configs" / "custom_small.yaml").read_text())
    assert shipped.to_dict() == make_config(text).to_dict()
    assert make_config(Config(seed=5)).seed == 5
    with pytest.raises(UserError, match="shipped configs: .*custom_small"):
        make_config("no_such_config")
    with pytest.raises(UserError, match="a dict or a Config"):
        make_config(42)


def test_a_failing_command_leaves_no_empty_out_folder(tmp_path):
    import sppdet

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        sppdet.train(tmp_path / "empty", tmp_path / "new" / "run", cache=tmp_path / "cache")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before stays
    with pytest.raises(UserError):
        sppdet.proposal_recall(tmp_path / "empty", "all", out=tmp_path / "kept", cache=tmp_path / "cache")
    assert (tmp_path / "kept").is_dir()
