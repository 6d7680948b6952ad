"""sppdet.viz on small generated images: each class's colour (from the palette's hex codes), the
outline inside the box's continuous extent and nothing painted elsewhere, the input untouched,
label sizes that grow with the image, and paint's file (format from its suffix, atomic)."""
import os

import numpy as np
import pytest
from PIL import Image

from sppdet.viz import PALETTE, draw, label_style, paint

GREY = 50


def rgb(hex_code: str) -> list[int]:
    return [int(hex_code[i:i + 2], 16) for i in (1, 3, 5)]


def image(h=100, w=120):
    return np.full((h, w, 3), GREY, np.uint8)


def painted(before, after):
    return (after != before).any(2)


def test_a_box_is_outlined_in_its_class_colour_and_nothing_outside_it():
    img = image()
    out = draw(img, np.array([[10, 20, 89, 79]]), ["dog"], np.array([0.5]), ["cat", "dog"])
    assert out is not img and out.shape == img.shape and out.dtype == np.uint8
    assert (img == GREY).all()  # a new array: the input is not drawn on
    ys, xs = np.nonzero(painted(img, out))
    # inclusive box x 10..89, y 20..79: its continuous extent is [10, 90] x [20, 80]
    assert xs.min() == 10 and ys.min() == 20 and xs.max() <= 90 and ys.max() <= 80
    assert out[20, 10].tolist() == rgb(PALETTE[1]) == [0x3c, 0xb4, 0x4b]  # dog: the palette's 2nd colour
    assert out[50, 50].tolist() == [GREY] * 3  # an outline, not a filled box


def test_colours_by_class_wrap_around_the_palette_and_unknown_labels_are_white():
    names = [f"c{i}" for i in range(len(PALETTE) + 2)]
    img = image(60, 200)
    boxes = np.array([[5, 30, 40, 55], [60, 30, 95, 55], [110, 30, 145, 55]])
    out = draw(img, boxes, ["c0", f"c{len(PALETTE) + 1}", "zebra"], np.array([0.9, 0.8, 0.7]), names)
    assert out[55, 5].tolist() == rgb(PALETTE[0])
    assert out[55, 60].tolist() == rgb(PALETTE[1])  # index 17 wraps to the 2nd colour
    assert out[55, 110].tolist() == [255, 255, 255]


def test_no_boxes_gives_an_equal_copy():
    img = image()
    out = draw(img, np.zeros((0, 4)), [], np.zeros(0), ["cat"])
    assert out is not img and np.array_equal(out, img)


@pytest.mark.parametrize("h, w, width, font_size", [(100, 120, 1, 10), (600, 900, 3, 20), (2000, 3000, 10, 67)])
def test_label_style_grows_with_the_longer_side(h, w, width, font_size):
    # width: the longer side / 300, rounded, at least 1; font: / 45, at least 10 (3000 / 45 = 66.7)
    style = label_style(h, w)
    assert style["width"] == width
    if "font_size" in style:  # where matplotlib's DejaVu Sans is found
        assert style["font_size"] == font_size and os.path.isfile(style["font"])


def test_paint_saves_what_draw_draws_in_the_suffix_s_format(tmp_path):
    img = image()
    args = (np.array([[10, 20, 89, 79]]), ["cat"], np.array([0.25]), ["cat"])
    p = paint(img, *args, tmp_path / "sub" / "a.png")
    assert p == tmp_path / "sub" / "a.png" and os.listdir(p.parent) == ["a.png"]  # no temporary left
    with Image.open(p) as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), draw(img, *args))
    for name in ("b.jpg", "c.unknown"):  # JPEG by its suffix, and where the suffix names no format
        with Image.open(paint(img, *args, tmp_path / name)) as im:
            assert im.format == "JPEG" and im.size == (120, 100)
