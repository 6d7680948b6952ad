"""Both ways of detecting new images (Detector.detect and sppdet detect / api.detect) take the
same steps, so a run trained on external proposals warns on either."""
import warnings

import numpy as np
import pytest
from PIL import Image

from sppdet.backbones import build_trunk
from sppdet.config import BackboneConfig, BBoxRegConfig, Config, FeatureConfig, ProposalConfig
from sppdet.detector import Detector
from sppdet.features import FeatureExtractor


@pytest.fixture
def external_run(random_weights, tmp_path):
    cfg = Config(backbone=BackboneConfig(weights=str(random_weights)), device="cpu",
                 features=FeatureConfig(levels=[1], scales=[64]),
                 proposals=ProposalConfig(method="external", external_dir=str(tmp_path), mode="fast"),
                 bbox_reg=BBoxRegConfig(enabled=False))
    ext = FeatureExtractor(build_trunk("mobilenet_v2", str(random_weights)), [64], levels=[1])
    return Detector(cfg, ["a"], ext, None, np.zeros((ext.dim, 1)), np.zeros(1), 1.0, None, 1.0)


def _image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_detector_detect_warns_once(external_run, tmp_path):
    img = np.asarray(Image.open(_image(tmp_path)))
    with pytest.warns(UserWarning, match="trained on external proposals"):
        external_run.detect(img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        external_run.detect(img)  # once per detector


def test_sppdet_detect_warns_too(external_run, tmp_path):
    from sppdet.api import detect

    with pytest.warns(UserWarning, match="trained on external proposals"):
        res = detect(external_run, _image(tmp_path), tmp_path / "out", workers=1, paint=False)
    assert res["images"] == 1
