"""R-CNN warping: the box fills the inner (224 - 2*16)² of the crop, context the 16-pixel margin."""
import numpy as np
import torch

from sppdet.backbones import build_trunk
from sppdet.rcnn import RCNNExtractor


def test_warp_puts_16_pixels_of_context_around_the_box():
    img = np.zeros((300, 400, 3), dtype=np.uint8)
    x1, y1, x2, y2 = 100, 80, 195, 239  # a 96 x 160 white box
    img[y1:y2 + 1, x1:x2 + 1] = 255
    ext = RCNNExtractor(build_trunk("mobilenet_v2", pretrained=False))
    crop = ext.warp(ext.compute(img)[0].fmap, np.array([[x1, y1, x2, y2]]))[0].mean(0).numpy()
    assert crop.shape == (224, 224)
    inner = crop[18:206, 18:206]
    assert inner.min() > 0.95  # the box, stretched to the inner 192 x 192
    margin = np.concatenate([crop[:14].ravel(), crop[-14:].ravel(), crop[:, :14].ravel(), crop[:, -14:].ravel()])
    assert margin.max() < 0.05  # 16 px of (black) context around it


def test_rcnn_features_have_the_spp_length():
    ext = RCNNExtractor(build_trunk("mobilenet_v2", pretrained=False), levels=[2, 1], batch_size=3)
    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    f = ext.pool(ext.compute(img), np.array([[0, 0, 50, 50], [10, 10, 119, 99], [5, 5, 6, 6], [0, 0, 119, 99]]))
    assert f.shape == (4, 96 * 5) and torch.isfinite(f).all()
