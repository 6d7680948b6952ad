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


def test_painted_labels_scale_with_the_image():
    """A small box on a 600-px and on a 3,000-px image (everything 5x): the painted pixels
    (outline and label) should grow about 25x, not stay the label's fixed bitmap size."""
    import numpy as np

    from sppdet.viz import draw

    counts = []
    for f in (1, 5):
        img = np.full((400 * f, 600 * f, 3), 128, np.uint8)
        box = np.array([[200 * f, 200 * f, 220 * f - 1, 220 * f - 1]], float)
        out = draw(img, box, ["cat"], np.array([0.87]), ["cat"])
        counts.append(int((out != img).any(2).sum()))
    assert counts[1] / counts[0] > 15
