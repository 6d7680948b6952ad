"""Selective search's levers: custom strategies, colour spaces, k values and several working sizes."""
import numpy as np
import pytest

from sppdet.config import ProposalConfig, load_config
from sppdet.errors import UserError
from sppdet.proposals import selective_search, selective_search_cfg


def _image(seed=0, h=90, w=120):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, np.uint8)
    for _ in range(8):
        x, y = rng.integers(0, w - 20), rng.integers(0, h - 20)
        img[y:y + rng.integers(8, 30), x:x + rng.integers(8, 40)] = rng.integers(0, 255, 3)
    return img


def test_custom_defaults_are_opencvs_fast():
    img = _image()
    fast = selective_search(img, "fast", work_size=0)
    custom = selective_search(img, "custom", work_size=0)
    assert len(fast) > 10 and np.array_equal(fast, custom)
    assert np.array_equal(selective_search_cfg(img, ProposalConfig(mode="custom", ks=[150, 300, 450], work_size=0)),
                          fast)


def test_smaller_k_and_more_colour_spaces_give_more_windows():
    img = _image(1)
    base = selective_search(img, "custom", work_size=0, max_boxes=10**6)
    more = selective_search(img, "custom", work_size=0, max_boxes=10**6, ks=[50, 100, 150, 300, 450],
                            color_spaces=["hsv", "lab", "rgi", "gray"])
    assert len(more) > len(base)
    one = selective_search(img, "custom", work_size=0, max_boxes=10**6, color_spaces=["hue"], ks=[200],
                           strategies=["size"])
    assert 0 < len(one) < len(base)
    assert (one[:, 2] >= one[:, 0]).all() and (one[:, 2] <= img.shape[1] - 1).all()


def test_work_sizes_interleave_rankings():
    img = _image(2, 200, 260)
    a = selective_search(img, "fast", work_size=100, max_boxes=10**6)
    b = selective_search(img, "fast", work_size=200, max_boxes=10**6)
    u = selective_search(img, "fast", work_sizes=[100, 200], max_boxes=10**6)
    # rank 0 of each run first, then rank 1 of each, ... (duplicates dropped)
    assert np.array_equal(u[0], a[0]) and np.array_equal(u[1], b[0]) and np.array_equal(u[2], a[1])
    as_set = lambda x: set(map(tuple, x.tolist()))  # noqa: E731
    assert as_set(u) == as_set(a) | as_set(b)
    assert len(selective_search(img, "fast", work_sizes=[100, 200], max_boxes=7)) == 7


@pytest.mark.parametrize("override, fragment", [
    ("proposals.mode=best", "proposals.mode"),
    ("proposals.color_spaces=[hsv,cmyk]", "color_spaces"),
    ("proposals.ks=[0]", "proposals.ks"),
    ("proposals.strategies=[color+shape]", "strategies"),
    ("proposals.work_sizes=[500,-1]", "work_sizes"),
])
def test_bad_levers_are_user_errors(override, fragment):
    with pytest.raises(UserError, match=fragment):
        load_config(None, [override])


def test_new_keys_load():
    cfg = load_config(None, ["proposals.mode=custom", "proposals.ks=[50,100]", "proposals.color_spaces=[hsv]",
                             "proposals.strategies=[fill+size]", "proposals.work_sizes=[500,700]"])
    assert cfg.proposals.ks == [50, 100] and cfg.proposals.work_sizes == [500, 700]
