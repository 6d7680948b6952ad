"""The run folder: a run written by sppdet 0.3 (built here by hand, file by file, as 0.3's
Detector.save wrote it) still loads; extra files ride along; no other module spells a file name."""
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sppdet import run_dir
from sppdet.backbones import build_trunk
from sppdet.bbox_regression import BoxRegressor
from sppdet.config import BackboneConfig, Config, FeatureConfig
from sppdet.detector import Detector
from sppdet.errors import UserError
from sppdet.features import FeatureExtractor
from sppdet.heads import FCHead


def _config(weights) -> Config:
    return Config(backbone=BackboneConfig(weights=str(weights)), device="cpu",
                  features=FeatureConfig(levels=[2, 1], scales=[128]))


def test_a_run_written_by_0_3_loads(tmp_path, random_weights):
    cfg = _config(random_weights)
    trunk = build_trunk("mobilenet_v2", str(random_weights))
    dim = FeatureExtractor(trunk, [128], levels=[2, 1]).dim
    torch.manual_seed(1)
    head = FCHead(dim, 16, 2)
    rng = np.random.default_rng(0)
    svm_W, svm_b = rng.normal(size=(16, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    bbox = BoxRegressor(2, dim)
    bbox.W = rng.normal(size=(2, dim, 4)) * 1e-3
    bbox.b = rng.normal(size=(2, 4)) * 1e-2
    bbox.trained = np.array([True, False])
    # 0.3's Detector.save, spelled out: config.yaml, meta.json, train_log.json, model.pt
    run = tmp_path / "run03"
    run.mkdir()
    run_id = uuid.uuid4().hex
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run / "meta.json").write_text(json.dumps({
        "sppdet_version": "0.3.0", "run_id": run_id, "classes": ["cat", "dog"], "backbone": "mobilenet_v2",
        "weights_sha256": trunk.weights_id, "feature_dim": 16, "fine_tuned": True, "method": "spp"}))
    (run / "train_log.json").write_text(json.dumps({"note": "0.3"}))
    torch.save({"format": 1, "run_id": run_id, "classes": ["cat", "dog"], "backbone": "mobilenet_v2",
                "weights_sha256": trunk.weights_id,
                "head": {k: v.clone() for k, v in head.state_dict().items()},
                "svm_W": torch.from_numpy(svm_W), "svm_b": torch.from_numpy(svm_b),
                "feat_scale": 2.0, "pool5_scale": 3.0,
                "bbox_W": torch.from_numpy(bbox.W), "bbox_b": torch.from_numpy(bbox.b),
                "bbox_trained": torch.from_numpy(bbox.trained), "channels_last": True}, run / "model.pt")

    det = Detector.load(run, device="cpu")
    assert det.classes == ["cat", "dog"] and det.feat_scale == 2.0 and det.pool5_scale == 3.0
    assert det.run_dir == run and det.extractor.channels_last is True
    np.testing.assert_array_equal(det.svm_W, svm_W)
    np.testing.assert_array_equal(det.svm_b, svm_b)
    np.testing.assert_array_equal(det.bbox.W, bbox.W)
    np.testing.assert_array_equal(det.bbox.trained, bbox.trained)
    for k, v in head.state_dict().items():
        torch.testing.assert_close(det.head.state_dict()[k], v, rtol=0, atol=0)
    assert det.cfg.features.scales == [128] and det.cfg.features.levels == [2, 1]


def test_save_then_read_and_extra_files(tmp_path, random_weights):
    cfg = _config(random_weights)
    trunk = build_trunk("mobilenet_v2", str(random_weights))
    ext = FeatureExtractor(trunk, [128], levels=[2, 1])
    det = Detector(cfg, ["a"], ext, None, np.ones((ext.dim, 1)), np.zeros(1), 1.0, None, 1.0)
    det.save(tmp_path / "run")
    files = run_dir.read_run(tmp_path / "run")
    assert files.blob["run_id"] == files.meta["run_id"] and files.blob["format"] == 1
    assert not (tmp_path / "run" / run_dir.TRAIN_LOG_FILE).exists()  # train_log only when given
    # a further file: written atomically with the run, optional when read
    out = tmp_path / "run2"
    run_dir.write_run(out, cfg, {"classes": ["a"]}, dict(files.blob), extra={"rpn.pt": lambda p: p.write_bytes(b"x")})
    assert run_dir.optional_file(out, "rpn.pt").read_bytes() == b"x"
    assert run_dir.optional_file(tmp_path / "run", "rpn.pt") is None
    assert run_dir.eval_dir(out, "lists/test.txt") == out / "eval_test"
    (out / "eval_test").mkdir()
    run_dir.remove_evals(out)
    assert not (out / "eval_test").exists() and run_dir.is_trained_run(out)
    with pytest.raises(UserError, match="not found"):
        run_dir.read_run(tmp_path / "nope")


def test_no_other_module_spells_a_run_file_name():
    pkg = Path(run_dir.__file__).parent
    names = [run_dir.MODEL_FILE, run_dir.CONFIG_FILE, run_dir.META_FILE, run_dir.TRAIN_LOG_FILE,
             run_dir.CLASSIFIER_FILE]
    pattern = re.compile("|".join(re.escape(f'"{n}"') for n in names))
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                 if p.name != "run_dir.py" and pattern.search(p.read_text())]
    assert offenders == []
