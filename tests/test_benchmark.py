"""sppdet bench: the pixel accounting by hand, and the output files' schema on tiny images."""
import inspect
import json

import cv2
import numpy as np
import torch

from sppdet.backbones import build_trunk
from sppdet.benchmark import FIVE_SCALES, STAGES, conv_pixels, run_bench
from sppdet.config import BackboneConfig, Config, ProposalConfig
from sppdet.features import FeatureExtractor
from sppdet.rcnn import RCNNExtractor


def test_conv_pixels_hand_worked():
    trunk = build_trunk("mobilenet_v2", pretrained=False)
    # 640x480 at shorter sides 480/576/688/864/1200 (longer side 917.33 rounds to 917):
    # 480*640 + 576*768 + 688*917 + 864*1152 + 1200*1600
    expected = 307200 + 442368 + 630896 + 995328 + 1920000
    assert conv_pixels(FeatureExtractor(trunk, FIVE_SCALES, 2000), 480, 640, 2000) == expected
    assert conv_pixels(FeatureExtractor(trunk, [688], 2000), 480, 640, 5) == 630896
    # the 2000-px cap on the longer side: 1200 on a 1:3 image would give 3600
    assert conv_pixels(FeatureExtractor(trunk, [1200], 2000), 300, 900, 1) == 667 * 2000
    assert conv_pixels(RCNNExtractor(trunk), 480, 640, 923) == 923 * 224 * 224


def test_bench_writes_three_methods_stage_by_stage(tmp_path, random_weights):
    cfg = Config(backbone=BackboneConfig(weights=str(random_weights)), proposals=ProposalConfig(max_boxes=40))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        img = np.full((60, 80, 3), 200, np.uint8)
        cv2.rectangle(img, (10 + 5 * i, 10), (40, 45), (30, 60, 200), -1)
        img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    res = run_bench(cfg, paths, torch.device("cpu"), tmp_path / "out", rcnn_images=1)
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(saved["methods"]) == {"rcnn", "spp-1scale", "spp-5scale"}
    for name, m in saved["methods"].items():
        s = m["seconds_per_image"]
        assert set(STAGES) <= set(s) and s["total"] > 0
        assert abs(s["total"] - sum(s[k] for k in STAGES if k != "proposals")) < 1e-6 or m["images_timed"] > 1
        lo, med, hi = m["total_min_median_max"]
        assert lo <= med <= hi
    assert saved["methods"]["rcnn"]["images_timed"] == 1 and saved["methods"]["spp-1scale"]["images_timed"] == 2
    r = saved["methods"]["rcnn"]["seconds_per_image"]["total"]
    for m in ("spp-1scale", "spp-5scale"):
        assert saved["speedup_vs_rcnn"][m] == r / saved["methods"][m]["seconds_per_image"]["total"]
        assert saved["conv_pixel_ratio"][m] == (saved["methods"]["rcnn"]["conv_pixels_per_image"]
                                                / saved["methods"][m]["conv_pixels_per_image"])
    # 60x80 images: 688 → 688x917; 5 scales as in the hand-worked test
    assert saved["methods"]["spp-1scale"]["conv_pixels_per_image"] == 688 * 917
    md = (tmp_path / "out" / "bench.md").read_text()
    assert all(name in md for name in saved["methods"]) and "min/median/max" in md
    assert (tmp_path / "out" / "bench.png").stat().st_size > 1000
    assert res["speedup_vs_rcnn"] == saved["speedup_vs_rcnn"]


def test_random_detector_passes_no_window_to_box_regression():
    """Without a run, box regression and NMS would otherwise see every window × class (a trained
    detector passes a handful): the random SVMs must put every score below the threshold."""
    from sppdet.benchmark import _random_detector

    cfg = Config()
    ext = FeatureExtractor(build_trunk("mobilenet_v2", pretrained=False), [128], 2000, [2, 1])
    det = _random_detector(cfg, [f"c{i}" for i in range(20)], ext, seed=0)
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 50, 40], [10, 10, 127, 95], [20, 5, 60, 90]], dtype=np.float64)
    pool5 = ext.pool(ext.compute(img), boxes)
    scores = det.score(det.window_features(pool5 * 1e3))  # even for large features
    assert scores.shape == (3, 20) and (scores < cfg.test.score_thresh).all()
    assert len(det.detect_maps(ext.compute(img), boxes, 128, 96).boxes) == 0


def test_the_api_function_is_not_shadowed_by_its_module():
    """``import sppdet.X`` sets the package's attribute X to the module: a module named like an
    API function (0.3's sppdet/bench.py) replaced ``sppdet.bench`` once it was imported."""
    import sppdet
    import sppdet.benchmark  # noqa: F401

    for name in sppdet.__all__:
        assert not inspect.ismodule(getattr(sppdet, name)), name
