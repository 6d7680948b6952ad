"""sppdet.heads on tiny inputs: the fc6/fc7/fc8 head against the same layers applied by hand,
and the fine-tuning mini-batch (SPP-net's rule: foreground IoU >= 0.5 labelled class + 1,
background IoU in [0.1, 0.5) labelled 0, a quarter foreground). The pretrained fc layers are in
test_pretrained_fc.py."""
import types

import numpy as np
import torch

from sppdet.config import FinetuneConfig
from sppdet.heads import FCHead, sample_minibatch


def test_the_head_is_fc6_relu_fc7_relu_fc8():
    torch.manual_seed(0)
    head = FCHead(in_dim=6, hidden=4, num_classes=3).eval()  # eval: dropout off
    x = torch.randn(5, 6)
    by_hand = torch.relu(torch.relu(x @ head.fc6.weight.T + head.fc6.bias) @ head.fc7.weight.T + head.fc7.bias)
    torch.testing.assert_close(head.features(x), by_hand)
    torch.testing.assert_close(head(x), by_hand @ head.fc8.weight.T + head.fc8.bias)
    assert head(x).shape == (5, 4)  # 3 classes + background (index 0)
    assert (head.fc8.bias == 0).all() and head.fc8.weight.std() < 0.05  # starts near zero, as SPP-net's fc8


def windows(max_iou, max_class):
    return types.SimpleNamespace(max_iou=np.array(max_iou), max_class=np.array(max_class))


def test_the_minibatch_takes_a_quarter_foreground_and_near_misses():
    #           0    1    2     3    4     5     6    7    8     9
    iou = [0.9, 0.5, 0.49, 0.1, 0.05, 0.3, 0.7, 0.2, 0.0, 0.45]
    cls = [2, 0, 1, 1, 0, 0, 1, 2, -1, 0]
    cfg = FinetuneConfig()
    assert (cfg.fg_iou, cfg.bg_iou_low, cfg.bg_iou_high, cfg.fg_fraction) == (0.5, 0.1, 0.5, 0.25)
    for seed in range(5):
        idx, labels = sample_minibatch(windows(iou, cls), np.random.default_rng(seed), 8, cfg)
        fg, bg = idx[:2], idx[2:]
        assert set(fg) <= {0, 1, 6} and len(fg) == 2  # round(8 * 0.25) of the 3 with IoU >= 0.5
        assert sorted(bg) == [2, 3, 5, 7, 9]  # every window with IoU in [0.1, 0.5): 5 < 6 places left
        assert len(set(idx)) == len(idx) and idx.dtype == np.int64
        assert labels.tolist() == [cls[i] + 1 for i in fg] + [0] * 5


def test_without_near_misses_any_background_window_is_taken():
    idx, labels = sample_minibatch(windows([0.8, 0.0, 0.05], [0, -1, -1]), np.random.default_rng(0), 4,
                                   FinetuneConfig())
    assert idx.tolist()[:1] == [0] and sorted(idx.tolist()[1:]) == [1, 2] and labels.tolist() == [1, 0, 0]
    idx, labels = sample_minibatch(windows([0.9, 0.95], [1, 1]), np.random.default_rng(0), 4, FinetuneConfig())
    # no background at all: still round(4 * 0.25) = 1 foreground window, the batch is not filled up with more
    assert len(idx) == 1 and idx[0] in (0, 1) and labels.tolist() == [2]
