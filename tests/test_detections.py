"""sppdet.detections, the value detector(image) returns, built by hand: torchvision's continuous
boxes (x2 + 1), detections.json's rows, class names, and plot's min_score."""
import numpy as np
import pytest
import torch

from sppdet.detections import Detections
from sppdet.errors import UserError
from sppdet.viz import PALETTE

NAMES = ["cat", "dog"]


def dets(**kw):
    base = dict(boxes=np.array([[0, 0, 9, 19], [5.5, 6, 30, 40]]), scores=np.array([0.9, 0.3]),
                labels=np.array([1, 0]), names=NAMES)
    return Detections(**{**base, **kw})


def test_to_dict_is_torchvision_s_convention():
    out = dets().to_dict()
    assert out["boxes"].dtype == torch.float32 and out["scores"].dtype == torch.float32
    assert out["labels"].dtype == torch.int64
    # inclusive [0, 0, 9, 19] covers 10 x 20 pixels: continuous [0, 0, 10, 20]
    assert out["boxes"].tolist() == [[0, 0, 10, 20], [5.5, 6, 31, 41]]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.3]) and out["labels"].tolist() == [1, 0]
    empty = dets(boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, int)).to_dict()
    assert empty["boxes"].shape == (0, 4) and len(empty["scores"]) == 0


def test_rows_name_the_class_and_carry_the_margin():
    d = dets(path="/data/a.jpg", margins=np.array([1.5, -0.5]))
    assert len(d) == 2 and d.class_names == ["dog", "cat"]
    assert d.to_list() == [
        {"image": "/data/a.jpg", "label": "dog", "score": 0.9, "bbox": [0.0, 0.0, 9.0, 19.0], "margin": 1.5},
        {"image": "/data/a.jpg", "label": "cat", "score": 0.3, "bbox": [5.5, 6.0, 30.0, 40.0], "margin": -0.5}]
    assert [r["image"] for r in d.to_list("b.jpg")] == ["b.jpg", "b.jpg"]
    # a run before calibration: its scores are the margins
    assert [r["margin"] for r in dets(calibrated=False).to_list()] == [0.9, 0.3]


def rgb(hex_code):
    return [int(hex_code[k:k + 2], 16) for k in (1, 3, 5)]


def test_plot_paints_only_what_scores_at_least_min_score():
    image = np.full((50, 50, 3), 40, np.uint8)
    d = dets(image=image, boxes=np.array([[0, 0, 9, 19], [10, 25, 30, 40]]))
    both, high = d.plot(), d.plot(min_score=0.5)
    assert both[19, 0].tolist() == rgb(PALETTE[1]) == high[19, 0].tolist()  # the dog (0.9) in both
    assert both[32, 10].tolist() == rgb(PALETTE[0])  # the cat's left edge (0.3)...
    assert high[32, 10].tolist() == [40, 40, 40] and (high[21:, 10:] == 40).all()  # ...not above 0.5
    assert (image == 40).all()
    with pytest.raises(UserError, match="min_score"):
        d.plot(min_score="high")
    with pytest.raises(UserError, match="carry no image"):
        dets().plot()
