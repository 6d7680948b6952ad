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


# A box and its ground truth worked out on paper (inclusive pixels):
#   proposal [10, 20, 29, 59]: 20 wide, 40 high, centre (10 + 20/2, 20 + 40/2) = (20, 40)
#   truth    [15, 10, 54, 49]: 40 wide, 40 high, centre (15 + 20, 10 + 20)     = (35, 30)
#   dx = (35 - 20) / 20 = 0.75, dy = (30 - 40) / 40 = -0.25, dw = log(40/20), dh = log(40/40) = 0
PROPOSAL = [[10, 20, 29, 59]]
TRUTH = [[15, 10, 54, 49]]
HAND_CODES = [[0.75, -0.25, np.log(2), 0.0]]


def test_box_coder_hand_worked_codes_and_back():
    coder = boxes.BoxCoder()
    codes = coder.encode_pixels(np.array(PROPOSAL, dtype=np.float64), np.array(TRUTH, dtype=np.float64))
    assert isinstance(codes, np.ndarray) and codes.dtype == np.float64
    np.testing.assert_allclose(codes, HAND_CODES, atol=1e-12)
    back = coder.decode_pixels(np.array(PROPOSAL, dtype=np.float64), codes)
    np.testing.assert_allclose(back, TRUTH, atol=1e-9)
    # Fast R-CNN's weights (10, 10, 5, 5) multiply the codes; decoding divides them back out
    weighted = boxes.BoxCoder((10.0, 10.0, 5.0, 5.0))
    t = weighted.encode_pixels(torch.tensor(PROPOSAL, dtype=torch.float64), torch.tensor(TRUTH, dtype=torch.float64))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [[7.5, -2.5, 5 * np.log(2), 0.0]], atol=1e-12)
    np.testing.assert_allclose(weighted.decode_pixels(torch.tensor(PROPOSAL, dtype=torch.float64), t).numpy(),
                               TRUTH, atol=1e-9)


def test_box_coder_clips_log_size_ratios_as_configured():
    p = np.array(PROPOSAL, dtype=np.float64)  # 20 × 40, centre (20, 40)
    big = np.array([[0.0, 0.0, 10.0, -10.0]])
    # R-CNN's (-4, 4): width 20 e^4 and height 40 e^-4 around the same centre; the far corner
    # is one pixel in from the continuous edge
    rc = boxes.BoxCoder(clip=(-4.0, 4.0)).decode_pixels(p, big)
    w, h = 20 * np.exp(4), 40 * np.exp(-4)
    np.testing.assert_allclose(rc, [[20 - w / 2, 40 - h / 2, 20 + w / 2 - 1, 40 + h / 2 - 1]], rtol=1e-12)
    # torchvision's default bounds only from above, at log(1000/16): width 20 · 62.5 = 1250
    tv = boxes.BoxCoder().decode_pixels(p, big)
    h = 40 * np.exp(-10)
    np.testing.assert_allclose(tv, [[20 - 625, 40 - h / 2, 20 + 625 - 1, 40 + h / 2 - 1]], rtol=1e-12)


def test_box_coder_decodes_one_code_set_per_class():
    # [K, 4 n] codes (class-specific regression) give [K, 4 n] boxes, set j moved by its codes
    p = np.array(PROPOSAL * 2, dtype=np.float64)
    codes = np.concatenate([np.zeros((2, 4)), np.array(HAND_CODES * 2)], 1)
    out = boxes.BoxCoder().decode_pixels(p, codes)
    assert out.shape == (2, 8)
    np.testing.assert_allclose(out[:, :4], p, atol=1e-9)
    np.testing.assert_allclose(out[:, 4:], TRUTH * 2, atol=1e-9)
    assert boxes.BoxCoder().decode_pixels(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


def test_extent_counts_both_ends():
    assert boxes.extent(3, 7) == 5 and boxes.extent(4, 4) == 1
