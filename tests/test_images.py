import numpy as np
import pytest

from corpus import make_corpus
from sppdet.images import ImageReadError, read_image


def test_every_odd_image_becomes_rgb_uint8(tmp_path):
    files = make_corpus(tmp_path, large=False)
    for name in ("good", "grey", "cmyk", "rgba", "16bit", "1x1"):
        arr = read_image(files[name])
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
    assert read_image(files["1x1"]).shape == (1, 1, 3)
    # 16-bit: the real range is stretched to 0..255, not clipped to white
    a16 = read_image(files["16bit"])
    assert a16.min() == 0 and a16.max() == 255
    # RGBA at alpha 128 over white: brighter than the RGB original on average
    assert read_image(files["rgba"]).mean() > read_image(files["good"]).mean()
    with pytest.warns(UserWarning, match="truncated"):
        t = read_image(files["truncated"])
    assert t.shape == (120, 160, 3)
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(files["not_image"])
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.jpg")


def test_read_image_is_writable(tmp_path):
    files = make_corpus(tmp_path, large=False)
    assert read_image(files["good"]).flags.writeable
