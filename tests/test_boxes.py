"""sppdet.boxes against numbers worked out by hand (inclusive pixels: a box covers x1..x2)."""
import numpy as np
import pytest
import torch

from sppdet import boxes


def test_width_height_and_area_count_both_end_pixels():
    b = np.array([[0, 0, 0, 0], [2, 3, 11, 7], [10, 10, 19, 29]], dtype=np.float64)
    w, h = boxes.widths_heights(b)
    # one pixel; columns 2..11 = 10 wide, rows 3..7 = 5 high; 10 × 20
    assert w.tolist() == [1, 10, 10] and h.tolist() == [1, 5, 20]
    assert boxes.area(b).tolist() == [1, 50, 200]


def test_iou_hand_worked():
    a = np.array([[0, 0, 9, 9]])          # 10 × 10 = 100 pixels
    b = np.array([[5, 5, 14, 14],         # overlap columns/rows 5..9: 5 × 5 = 25 → 25 / 175
                  [0, 0, 9, 9],           # itself → 1
                  [10, 0, 19, 9],         # touches at the edge, shares no pixel → 0
                  [9, 9, 9, 9],           # the corner pixel: 1 / 100
                  [0, 0, 4, 9]])          # the left half: 50 / 100
    expected = [25 / 175, 1.0, 0.0, 1 / 100, 0.5]
    np.testing.assert_allclose(boxes.iou(a, b)[0], expected, rtol=1e-12)
    assert boxes.iou(a, b).shape == (1, 5) and boxes.iou(b, a).shape == (5, 1)
    assert boxes.iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_continuous_round_trip_keeps_type_and_dtype():
    b = np.array([[2, 3, 11, 7]], dtype=np.float32)
    c = boxes.to_continuous(b)
    assert c.dtype == np.float32 and c.tolist() == [[2, 3, 12, 8]]
    assert boxes.from_continuous(c).tolist() == b.tolist()
    t = boxes.to_continuous(torch.tensor([[2.0, 3.0, 11.0, 7.0]], dtype=torch.float64))
    assert t.dtype == torch.float64 and t.tolist() == [[2, 3, 12, 8]]
    # torchvision's own area of the converted box is the inclusive area
    from torchvision.ops import box_area
    assert float(box_area(t)[0]) == 50


def test_clip_to_last_pixel_and_min_size():
    b = np.array([[-5, -1, 30, 8], [3, 4, 5, 6]], dtype=np.float64)
    # a 20 × 10 image: last column 19, last row 9
    assert boxes.clip(b, 20, 10).tolist() == [[0, 0, 19, 8], [3, 4, 5, 6]]
    # widths 36 and 3, heights 10 and 3
    assert boxes.min_size_mask(b, 3).tolist() == [True, True]
    assert boxes.min_size_mask(b, 4).tolist() == [True, False]


@pytest.mark.parametrize("box, xywh", [([2, 3, 11, 7], [2, 3, 10, 5]), ([0, 0, 0, 0], [0, 0, 1, 1])])
def test_to_xywh(box, xywh):
    assert boxes.to_xywh(box) == xywh


def test_min_size_mask_agrees_with_torchvision_remove_small_boxes():
    from torchvision.ops import remove_small_boxes

    rng = np.random.default_rng(0)
    xy = rng.integers(0, 50, (200, 2))
    b = np.concatenate([xy, xy + rng.integers(0, 12, (200, 2))], 1).astype(np.float64)
    for min_size in (1, 3, 8):
        kept = remove_small_boxes(boxes.to_continuous(torch.from_numpy(b)), min_size).numpy()
        assert np.nonzero(boxes.min_size_mask(b, min_size))[0].tolist() == sorted(kept.tolist())
