"""Training items for the proposal network with random conv maps, shared by the fault corpus's
tests (test_faults_rpn.py, test_faults_anchors.py)."""
import numpy as np
import torch

from sppdet.features import ScaleMap
from sppdet.proposals.rpn import RPNTrainItem


def maps_with_boxes(boxes: np.ndarray, n: int = 6, size: int = 320, seed: int = 0, channels: int = 8):
    """``n`` items whose random maps hold the same boxes (what derivation and training see)."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        m = [ScaleMap(1.0, torch.from_numpy(rng.standard_normal((channels, size // 16, size // 16)).astype(np.float16)))]
        items.append(RPNTrainItem(lambda m=m: m, boxes.astype(np.float64), size, size))
    return items
