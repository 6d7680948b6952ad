"""sppdet.features with a stub trunk (a 16-px average pool whose channels are constant): the
pyramid's factors and sizes worked by hand, one fp16 map per scale, each window pooled at the
scale where its area is closest to 224², and the cache's checks of what it loads."""
import logging

import numpy as np
import pytest
import torch
from torch import nn

from sppdet.features import FeatureCache, FeatureExtractor, ScaleMap, pyramid_sizes, resolve_device, scale_factors
from sppdet.fileio import save_checked_arrays


def test_scale_factors_and_pyramid_sizes_by_hand():
    # a 300 x 400 (h x w) image: shorter side 300
    assert scale_factors(300, 400, [480, 688], 2000) == [1.6, 688 / 300]
    # capped so that the longer side stays within 800: 400 * 2 = 800
    assert scale_factors(300, 400, [480, 688], 800) == [1.6, 2.0]
    assert pyramid_sizes(300, 400, [480, 688], 800) == [(1.6, 480, 640), (2.0, 600, 800)]
    assert pyramid_sizes(3, 1000, [1], 2000) == [(1 / 3, 1, 333)]  # never below one pixel


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        from sppdet.errors import UserError

        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")


class StubTrunk(nn.Module):
    """Stride 16, no offset, 2 channels: channel c of the map is c + 1 times the scaled image's
    width in pixels / 100 everywhere, so a pooled vector tells which scale it came from."""
    name, stride, offset, channels, weights_id = "stub", 16, 0.0, 2, "none"

    def forward(self, x):
        n, _, h, w = x.shape
        return torch.stack([torch.full((h // 16, w // 16), (c + 1) * w / 100) for c in range(2)])[None]


def test_one_fp16_map_per_scale():
    ext = FeatureExtractor(StubTrunk(), scales=[160, 320], levels=[2, 1])
    assert ext.dim == 2 * (4 + 1)
    maps = ext.compute(np.zeros((160, 240, 3), np.uint8))
    assert [m.factor for m in maps] == [1.0, 2.0]
    assert [tuple(m.fmap.shape) for m in maps] == [(2, 10, 15), (2, 20, 30)]
    assert all(m.fmap.dtype == torch.float16 for m in maps)


def test_each_window_is_pooled_at_its_best_scale():
    ext = FeatureExtractor(StubTrunk(), scales=[160, 320], levels=[2, 1])
    maps = ext.compute(np.zeros((160, 240, 3), np.uint8))  # scaled widths 240 and 480
    # a 200 x 150 window: area 30,000 at factor 1, 120,000 at factor 2; 224² = 50,176 is nearer
    # the first. A 100 x 100 window: 10,000 or 40,000: the second.
    out = ext.pool(maps, np.array([[0, 0, 199, 149], [10, 10, 109, 109]]))
    assert out.shape == (2, 10) and out.dtype == torch.float32
    # channels last, per level: [n, n, C] -> channel values alternate (1x, 2x the width / 100)
    np.testing.assert_allclose(out[0].numpy(), [2.4, 4.8] * 5, rtol=1e-3)
    np.testing.assert_allclose(out[1].numpy(), [4.8, 9.6] * 5, rtol=1e-3)
    again = ext.pool(maps, np.array([[10, 10, 109, 109]]), reuse_buffer=True)
    np.testing.assert_array_equal(again.numpy(), out[1:].numpy())
    assert ext.pool(maps, np.zeros((0, 4))).shape == (0, 10)


def test_the_cache_keeps_maps_and_refuses_ones_that_do_not_fit(tmp_path, caplog):
    ext = FeatureExtractor(StubTrunk(), scales=[160, 320], levels=[1])
    cache = FeatureCache(tmp_path / "f", ext)
    calls = []

    def image():
        calls.append(1)
        return np.zeros((160, 240, 3), np.uint8)

    first = cache.get("a", image)
    again = FeatureCache(tmp_path / "f", ext).get("a", image)
    assert len(calls) == 1 and cache.has("a") and not cache.has("b")
    assert all(torch.equal(x.fmap, y.fmap) and x.factor == y.factor for x, y in zip(first, again))
    bad = {"factors": np.array([1.0, 0.0]), "map0": first[0].fmap.numpy(), "map1": first[1].fmap.numpy()}
    wide = {"factors": np.array([1.0, 2.0]), "map0": np.zeros((3, 4, 4), np.float16), "map1": first[1].fmap.numpy()}
    wrong_type = {"factors": np.array([1.0, 2.0]), "map0": first[0].fmap.numpy().astype(np.float32),
                  "map1": first[1].fmap.numpy()}
    with caplog.at_level(logging.WARNING):
        for arrays in (bad, wide, wrong_type):
            save_checked_arrays(cache.path("a"), arrays)
            assert cache.load("a") is None
    assert caplog.text.count("damaged feature cache file") == 3
    assert isinstance(cache.get("a", image)[0], ScaleMap) and len(calls) == 2
