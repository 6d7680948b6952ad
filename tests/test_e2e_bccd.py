"""Real data, real ImageNet weights: a small BCCD slice must actually learn (skips cleanly
where ../shared/data or the offline weights are unavailable)."""
import json
from pathlib import Path

import pytest

from sppdet.cli import main


@pytest.fixture(scope="module")
def imagenet_weights():
    from sppdet.backbones import fetch_weights
    from sppdet.errors import UserError

    try:
        return fetch_weights("mobilenet_v2", quiet=True)
    except UserError as exc:
        pytest.skip(f"ImageNet weights unavailable: {exc}")


@pytest.mark.slow
def test_bccd_slice_learns(shared_data, imagenet_weights, tmp_path):
    root = shared_data / "bccd" / "BCCD"
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()[:24]
    test_ids = (root / "ImageSets/Main/test.txt").read_text().split()[:10]
    (tmp_path / "tr.txt").write_text("\n".join(ids))
    (tmp_path / "te.txt").write_text("\n".join(test_ids))
    rc = main(["train", "--data", str(root), "--split", str(tmp_path / "tr.txt"), "--out", str(tmp_path / "run"),
               "--cache", str(tmp_path / "cache"), "--eval-split", str(tmp_path / "te.txt"),
               "--set", "finetune.iterations=150", "--set", "proposals.max_boxes=1000"])
    assert rc == 0
    m = json.loads((tmp_path / "run" / "eval_te" / "metrics.json").read_text())
    # Chance level is ~0; the pipeline trained on 24 images reaches well above 0.3 here.
    assert m["mAP"] > 0.3, m
    assert m["AP"]["WBC"] > 0.5  # one large, distinctive cell per image


@pytest.mark.slow
def test_demo_small(imagenet_weights, tmp_path):
    """The README's first command, shrunk: every output the summary promises exists."""
    assert main(["demo", "--out", str(tmp_path / "demo"), "--images", "16", "--cache", str(tmp_path / "c")]) == 0
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert 0.0 <= s["mAP_voc07"] <= 1.0 and s["speedup_vs_rcnn"]["spp-1scale"] > 1.0
    for path in s["outputs"].values():
        assert Path(path).exists(), path
    assert list((tmp_path / "demo" / "detections").glob("*_det.jpg"))
