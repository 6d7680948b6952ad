"""The upper-trunk head (head.type=upper): RoI grids land on the right cells, sampling keeps its
fractions, box deltas round-trip, and a tiny run trains, saves, loads and detects the same."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import sppdet
from sppdet.config import HeadConfig
from sppdet.errors import UserError
from sppdet.features import ScaleMap
from sppdet.upper_head import UpperHead, sample_rois


def _head(grid=1, stride=16, offset=0.0, classes=2):
    body = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return UpperHead(body, 1, classes, grid, stride, offset)


def test_grid_reads_the_cells_whose_centres_the_window_covers():
    """A map whose value is the cell's column index: a 1x1 grid of a window centred on cell
    i's centre (pixel 16 i + offset, inclusive pixels) reads i, at either pyramid level."""
    fmap = torch.arange(20, dtype=torch.float32).repeat(20, 1)[None].half()  # value = column
    for offset in (0.0, 7.5):
        head = _head(offset=offset)
        # a 33-pixel-wide box centred on cell 5's centre: pixels 16*5+o-16 .. 16*5+o+16
        c = 16 * 5 + offset
        box = np.array([[c - 16, 50, c + 16, 90]])
        g = head.grids([ScaleMap(1.0, fmap)], box)
        assert g.shape == (1, 1, 1, 1)
        assert float(g) == pytest.approx(5.0, abs=1e-3)


def test_sample_rois_fractions():
    cfg = HeadConfig(rois_per_image=16, fg_fraction=0.25, fg_iou=0.5, bg_iou=0.5)
    iou = np.array([0.9] * 10 + [0.2] * 30 + [0.5] * 2)
    idx, fg = sample_rois(iou, 16, cfg, np.random.default_rng(0))
    assert len(idx) == 16 and fg.sum() == 4  # 25% of 16
    assert (iou[idx[fg]] >= 0.5).all() and (iou[idx[~fg]] < 0.5).all()
    assert len(set(idx.tolist())) == 16
    # few foreground windows: all of them, the rest background
    idx, fg = sample_rois(np.array([0.7, 0.1, 0.0]), 16, cfg, np.random.default_rng(0))
    assert fg.sum() == 1 and len(idx) == 3


def test_deltas_decode_onto_the_target_box():
    """Encoding a target against a window and decoding gives the target back (the coder the
    training targets and the detector's boxes share), in inclusive pixels after the round trip."""
    from sppdet.boxes import from_continuous, to_continuous

    head = _head(classes=1)
    windows = np.array([[10.0, 20.0, 60.0, 80.0], [0.0, 0.0, 15.0, 15.0]])
    targets = np.array([[12.0, 18.0, 70.0, 75.0], [2.0, 3.0, 20.0, 11.0]])
    codes = head.coder.encode_single(torch.tensor(to_continuous(targets)), torch.tensor(to_continuous(windows)))
    back = head.coder.decode_single(codes, torch.tensor(to_continuous(windows)))
    np.testing.assert_allclose(from_continuous(back.numpy()), targets, atol=1e-4)


FAST = {"features": {"scales": [320]}, "head": {"type": "upper", "epochs": 1, "rois_per_image": 16,
                                                "test_windows": 50},
        "proposals": {"method": "selective_search", "mode": "fast", "max_boxes": 100}}


@pytest.fixture(scope="module")
def upper_run(tmp_path_factory, tiny_data):
    d = tmp_path_factory.mktemp("upper")
    tiny_data(d, 12)
    det = sppdet.train(d / "data", d / "run", cache=d / "cache", eval_split="test",
                       backbone={"weights": str(d / "w.pth")}, **FAST)
    return d, det


def test_upper_run_trains_saves_loads_and_detects_the_same(upper_run):
    d, det = upper_run
    assert det.upper is not None and det.calibrated
    assert 0.0 <= det.metrics["mAP"] <= 1.0
    again = sppdet.load(d / "run")
    assert again.upper is not None
    img = next((d / "data" / "JPEGImages").glob("*.jpg"))
    a, b = det(img, threshold=0.0), again(img, threshold=0.0)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert ((a.scores >= 0) & (a.scores <= 1)).all()


def test_a_damaged_head_is_refused(upper_run, tmp_path):
    import shutil

    d, _ = upper_run
    run = tmp_path / "run"
    shutil.copytree(d / "run", run)
    blob = torch.load(run / "model.pt", weights_only=True)
    k = next(iter(blob["upper_head"]["state"]))
    blob["upper_head"]["state"][k] = blob["upper_head"]["state"][k].float() * float("nan")
    torch.save(blob, run / "model.pt")
    with pytest.raises(UserError, match="NaN"):
        sppdet.load(run)


def test_head_upper_needs_spp():
    with pytest.raises(UserError, match="head.type=upper"):
        sppdet.make_config(overrides=["head.type=upper", "method=rcnn", "proposals.method=selective_search"])
