"""tools/peer_fasterrcnn.py: the peer's targets and detections keep sppdet's box convention
(0-based inclusive pixels) on both sides of torchvision's continuous corners, so that its mAP
is comparable with sppdet's."""
from pathlib import Path

import numpy as np
import pytest
import torch


class _Rec:
    image_id = "a"
    path = Path("a.jpg")
    labels = ["cat", "dog"]
    boxes = np.array([[0, 0, 9, 4], [5, 2, 7, 3]], float)  # inclusive: 10x5 and 3x2 pixels

    def read(self):
        img = np.zeros((6, 12, 3), np.uint8)
        img[:, 0] = 255  # the left column, to see the flip
        return img


def test_targets_are_continuous_corners_and_flip_mirrors_them(load_tool):
    tool = load_tool("peer_fasterrcnn")
    img, t = tool._target(_Rec(), ["cat", "dog"], flip=False)
    assert img.shape == (3, 6, 12) and float(img.max()) == 1.0
    np.testing.assert_array_equal(t["boxes"].numpy(), [[0, 0, 10, 5], [5, 2, 8, 4]])
    assert t["labels"].tolist() == [1, 2]  # 0 is torchvision's background
    img, t = tool._target(_Rec(), ["cat", "dog"], flip=True)
    assert float(img[0, 0, -1]) == 1.0 and float(img[0, 0, 0]) == 0.0
    # a 12-px-wide image: [5, 8) mirrors to [4, 7), [0, 10) to [2, 12)
    np.testing.assert_array_equal(t["boxes"].numpy(), [[2, 0, 12, 5], [4, 2, 7, 4]])


def test_detections_come_back_inclusive(load_tool):
    tool = load_tool("peer_fasterrcnn")

    class Model:
        def eval(self):
            return self

        def __call__(self, images):
            assert images[0].shape == (3, 6, 12)
            return [{"boxes": torch.tensor([[1.0, 2.0, 11.0, 6.0]]), "scores": torch.tensor([0.9]),
                     "labels": torch.tensor([2])}]

    rows, _ = tool.detect_split(Model(), [_Rec()], ["cat", "dog"], torch.device("cpu"))
    assert rows == [{"image": "a", "label": "dog", "score": pytest.approx(0.9), "bbox": [1.0, 2.0, 10.0, 5.0]}]
