"""SPP pooling against a naive loop over the paper's bin formula; window mapping by hand."""
import math

import numpy as np
import pytest
import torch

from sppdet.ops import best_scale, map_windows, spp_dim, spp_pool


def naive_spp(fmap: np.ndarray, box, levels):
    """Max over cells x1+floor(i*w/n) .. x1+ceil((i+1)*w/n)-1, written as plainly as possible."""
    c = fmap.shape[0]
    x1, y1, x2, y2 = box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    out = []
    for n in levels:
        level = np.zeros((c, n, n), dtype=fmap.dtype)
        for i in range(n):  # bin row
            ys = y1 + math.floor(i * h / n)
            ye = y1 + math.ceil((i + 1) * h / n) - 1
            for j in range(n):  # bin column
                xs = x1 + math.floor(j * w / n)
                xe = x1 + math.ceil((j + 1) * w / n) - 1
                assert ye >= ys and xe >= xs, "a bin is empty"
                for ch in range(c):
                    level[ch, i, j] = fmap[ch, ys:ye + 1, xs:xe + 1].max()
        out.append(level.reshape(-1))
    return np.concatenate(out)


def random_boxes(rng, k, h, w):
    x = np.sort(rng.integers(0, w, size=(k, 2)), axis=1)
    y = np.sort(rng.integers(0, h, size=(k, 2)), axis=1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)


@pytest.mark.parametrize("impl", ["roi_pool", "table"])
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 3, 2, 1), (1,), (5, 2)])
def test_spp_pool_matches_naive(levels, impl):
    rng = np.random.default_rng(0)
    h, w, c = 13, 17, 3
    fmap = rng.normal(size=(c, h, w)).astype(np.float32)
    boxes = random_boxes(rng, 40, h, w)
    extra = np.array([
        [0, 0, 0, 0],            # 1x1 window at the corner
        [w - 1, h - 1, w - 1, h - 1],  # 1x1 at the far corner
        [3, 4, 3, 4],            # 1x1 inside
        [0, 0, w - 1, h - 1],    # whole map
        [w - 2, 0, w - 1, h - 1],  # 2 cells wide at the right border
        [2, 5, 8, 5],            # one row
    ])
    boxes = np.concatenate([boxes, extra])
    got = spp_pool(torch.from_numpy(fmap), torch.from_numpy(boxes), levels, impl=impl).numpy()
    assert got.shape == (len(boxes), spp_dim(c, levels))
    for k, box in enumerate(boxes):
        np.testing.assert_array_equal(got[k], naive_spp(fmap, box, levels))


@pytest.mark.parametrize("impl", ["roi_pool", "table"])
def test_spp_pool_channels_last_is_the_naive_levels_reordered(impl):
    """channels_last=True: each level is the naive [C, n, n] block transposed to [n, n, C]."""
    rng = np.random.default_rng(1)
    levels, c = (6, 3, 2, 1), 5
    fmap = rng.normal(size=(c, 11, 14)).astype(np.float32)
    boxes = np.concatenate([random_boxes(rng, 70, 11, 14), [[0, 0, 0, 0], [0, 0, 13, 10]]])
    got = spp_pool(torch.from_numpy(fmap), torch.from_numpy(boxes), levels, impl=impl,
                   channels_last=True).numpy()
    for k, box in enumerate(boxes):
        ref, pos = naive_spp(fmap, box, levels), 0
        for n in levels:
            block = ref[pos:pos + c * n * n].reshape(c, n, n).transpose(1, 2, 0).reshape(-1)
            np.testing.assert_array_equal(got[k, pos:pos + c * n * n], block)
            pos += c * n * n
    whole = spp_pool(torch.from_numpy(fmap[None]), None, (2, 1), channels_last=True).numpy()[0]
    full = naive_spp(fmap, (0, 0, 13, 10), (2, 1))
    np.testing.assert_array_equal(whole[:c * 4], full[:c * 4].reshape(c, 2, 2).transpose(1, 2, 0).ravel())


def test_spp_pool_layout_hand_worked():
    # A 1-channel 2x2 map, whole-map window, levels (2, 1): the 2x2 level is the map itself
    # in row-major order, the 1x1 level its max.
    fmap = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    got = spp_pool(fmap, torch.tensor([[0, 0, 1, 1]]), (2, 1))
    assert got.tolist() == [[1.0, 2.0, 3.0, 4.0, 4.0]]
    # A 1-cell window pooled 6x6 repeats that cell in every bin (no empty bins).
    got = spp_pool(fmap, torch.tensor([[1, 0, 1, 0]]), (6,))
    assert got.tolist() == [[2.0] * 36]
    # Channel-major within a level: 2 channels, level 1 → [max ch0, max ch1].
    two = torch.stack([fmap[0], -fmap[0]])
    assert spp_pool(two, torch.tensor([[0, 0, 1, 1]]), (1,)).tolist() == [[4.0, -1.0]]


def test_spp_pool_whole_map_any_size():
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (5, 9), (11, 4)]:
        fmap = rng.normal(size=(2, 3, h, w)).astype(np.float32)
        got = spp_pool(torch.from_numpy(fmap), None, (4, 3, 2, 1)).numpy()
        assert got.shape == (2, 3 * 30)
        for n in range(2):
            np.testing.assert_array_equal(got[n], naive_spp(fmap[n], (0, 0, w - 1, h - 1), (4, 3, 2, 1)))


def test_spp_pool_gradient_flows():
    fmap = torch.randn(1, 2, 7, 7, requires_grad=True)
    spp_pool(fmap, None, (2, 1)).sum().backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0


def test_spp_pool_rejects_bad_boxes():
    fmap = torch.zeros(1, 4, 4)
    with pytest.raises(ValueError):
        spp_pool(fmap, torch.tensor([[0, 0, 4, 1]]))  # outside
    with pytest.raises(ValueError):
        spp_pool(fmap, torch.tensor([[2, 0, 1, 1]]))  # inverted
    assert spp_pool(fmap, torch.zeros((0, 4), dtype=torch.long)).shape == (0, 1 * 50)


def test_map_windows_hand_worked():
    # S=16, o=0: cell i is centred on pixel 16 i. Window [40, 100] in x contains the
    # centres 48, 64, 80, 96 → cells 3..6: floor(40/16)+1 = 3, ceil(100/16)-1 = 6.
    got = map_windows(np.array([[40, 0, 100, 31]]), 16, 0.0, 50, 50)
    assert got.tolist() == [[3, 1, 6, 1]]
    # Boundary exactly on a centre: x1=32 → floor(2)+1 = 3; x2=64 → ceil(4)-1 = 3.
    assert map_windows(np.array([[32, 32, 64, 64]]), 16, 0.0, 50, 50).tolist() == [[3, 3, 3, 3]]
    # Offset 15 (AlexNet-like): centres at 16 i + 15; window [15, 47] → cells 1..1,
    # floor(0/16)+1 = 1 and ceil(32/16)-1 = 1.
    assert map_windows(np.array([[15, 15, 47, 47]]), 16, 15.0, 10, 10).tolist() == [[1, 1, 1, 1]]


def test_map_windows_never_empty_and_clamped():
    # A 5-pixel window between centres 16 and 32 → the nearest cell to its centre (22 → 1).
    assert map_windows(np.array([[20, 20, 24, 24]]), 16, 0.0, 10, 10).tolist() == [[1, 1, 1, 1]]
    # Outside the map: clamped.
    got = map_windows(np.array([[-50, -50, 1000, 1000]]), 16, 0.0, 4, 6)
    assert got.tolist() == [[0, 0, 5, 3]]
    rng = np.random.default_rng(2)
    b = rng.uniform(-20, 300, size=(500, 4))
    b[:, 2:] = b[:, :2] + rng.uniform(0, 100, size=(500, 2))
    cells = map_windows(b, 16, 7.5, 12, 9)
    assert (cells[:, 2] >= cells[:, 0]).all() and (cells[:, 3] >= cells[:, 1]).all()
    assert (cells[:, [0, 2]] < 9).all() and (cells[:, [1, 3]] < 12).all() and (cells >= 0).all()


def test_best_scale_picks_closest_area():
    factors = [480 / 480, 688 / 480, 1200 / 480]
    boxes = np.array([
        [0, 0, 223, 223],   # 224x224 at factor 1 → scale 0
        [0, 0, 99, 99],     # 100 px: 100, 143, 250 → |250²-224²| < |143²-224²| → scale 2
        [0, 0, 399, 399],   # 400 px: 400, 573, 1000 → scale 0
        [0, 0, 159, 159],   # 160 px: 160, 229, 400 → scale 1
    ])
    assert best_scale(boxes, factors).tolist() == [0, 2, 0, 1]


def test_spp_pool_table_equals_roi_pool_on_large_maps():
    # Large maps exercise many sparse-table orders; ties (ReLU zeros) are common in real maps.
    rng = np.random.default_rng(3)
    fmap = torch.relu(torch.from_numpy(rng.normal(size=(8, 61, 87)).astype(np.float32)))
    boxes = torch.from_numpy(random_boxes(rng, 300, 61, 87))
    a = spp_pool(fmap, boxes, (6, 3, 2, 1), impl="table")
    b = spp_pool(fmap, boxes, (6, 3, 2, 1), impl="roi_pool")
    assert torch.equal(a, b)


def test_spp_pool_into_buffer_and_extractor_reuse():
    from sppdet.backbones import build_trunk
    from sppdet.features import FeatureExtractor

    rng = np.random.default_rng(4)
    fmap = torch.from_numpy(rng.normal(size=(3, 9, 11)).astype(np.float32))
    boxes = torch.from_numpy(random_boxes(rng, 100, 9, 11))
    buf = torch.full((100, 3 * 50), float("nan"))
    spp_pool(fmap, boxes, out=buf)
    assert torch.equal(buf, spp_pool(fmap, boxes))
    with pytest.raises(ValueError):
        spp_pool(fmap, boxes, out=torch.empty(99, 150))
    ext = FeatureExtractor(build_trunk("mobilenet_v2", pretrained=False), scales=[96, 160], levels=[2, 1])
    img = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    maps = ext.compute(img)
    b = rng.uniform(0, 80, (300, 2))
    b = np.concatenate([b, b + rng.uniform(1, 60, (300, 2))], 1)
    fresh = ext.pool(maps, b)
    assert torch.equal(ext.pool(maps, b, reuse_buffer=True), fresh)
    assert torch.equal(ext.pool(maps, b[:10], reuse_buffer=True), fresh[:10])


def test_half_maps_pool_exactly_and_return_float32():
    """fp16 maps (as cached) take the table path in fp16; maxima are exact, so the result must
    equal pooling the same values in float32, in both implementations."""
    rng = np.random.default_rng(5)
    half = torch.from_numpy(rng.normal(size=(7, 23, 31)).astype(np.float16))
    boxes = torch.from_numpy(random_boxes(rng, 200, 23, 31))
    ref = spp_pool(half.float(), boxes, impl="roi_pool")
    for impl in ("table", "roi_pool", "auto"):
        got = spp_pool(half, boxes, impl=impl)
        assert got.dtype == torch.float32 and torch.equal(got, ref), impl


def test_first_twins_hand_worked():
    """Windows pooled at the same scale from the same cells are twins: each points at the first."""
    from sppdet.ops import first_twins

    which = np.array([0, 0, 1, 0, 1, 0])
    cells = np.array([[1, 1, 2, 2], [0, 0, 1, 1], [1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 1, 2]])
    np.testing.assert_array_equal(first_twins(which, cells), [0, 1, 2, 0, 2, 5])
    assert first_twins(np.zeros(0), np.zeros((0, 4))).shape == (0,)
