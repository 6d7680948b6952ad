"""Bad images: decompression bombs refused from the header, large images under the limit read,
EXIF orientation opt-in."""
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.config import Config, load_config
from sppdet.datasets import load_dataset
from sppdet.images import header_size as image_size
from sppdet.errors import UserError

from .makers import _xml, _img


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes declaring a huge 1-bit image (what a decompression bomb looks like)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 4)  # far too little data: it must never be decoded
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_pixel_limit_refuses_from_the_header(tmp_path, monkeypatch):
    from sppdet.images import MAX_PIXELS, ImageReadError, ImageTooLargeError, read_image

    assert MAX_PIXELS == 100_000_000
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 15000)  # 300 Mpx in < 1 KB
    assert bomb.stat().st_size < 2000
    with pytest.raises(ImageTooLargeError, match=r"20000×15000 = 300\.0 Mpx is above the limit of 100 Mpx.*"
                                                r"SPPDET_MAX_PIXELS=300000000"):
        read_image(bomb)
    small = _img(tmp_path / "small.png", size=(40, 30))
    assert read_image(small).shape == (30, 40, 3)
    with pytest.raises(ImageTooLargeError, match="above the limit"):
        read_image(small, max_pixels=1000)
    monkeypatch.setenv("SPPDET_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError):
        read_image(small)
    monkeypatch.setenv("SPPDET_MAX_PIXELS", "nan")
    with pytest.raises(UserError, match="SPPDET_MAX_PIXELS must be a positive number"):
        read_image(small)
    monkeypatch.delenv("SPPDET_MAX_PIXELS")
    # in a data set the image is skipped and counted at load time, before any long work
    flat = tmp_path / "flat"
    flat.mkdir()
    os.replace(bomb, flat / "bomb.png")
    (flat / "bomb.xml").write_text(_xml("bomb.png", size=None))
    _img(flat / "ok.png")
    (flat / "ok.xml").write_text(_xml("ok.png"))
    ds = load_dataset(flat, "all")
    assert [r.image_id for r in ds.records] == ["ok"]
    assert ds.report.counts["image above the pixel limit (skipped)"] == 1
    assert issubclass(ImageTooLargeError, ImageReadError)


def test_large_image_under_the_limit_is_read(tmp_path):
    from sppdet.images import read_image

    p = tmp_path / "large.png"
    Image.new("1", (10000, 8000), 1).save(p)  # 80 Mpx, under the limit
    assert image_size(p) == (10000, 8000)
    arr = read_image(p)
    assert arr.shape == (8000, 10000, 3) and arr[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_opt_in(tmp_path):
    from sppdet.images import read_image

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    flat = tmp_path / "flat"
    flat.mkdir()
    p = flat / "photo.jpg"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    raw = read_image(p)
    assert raw.shape == (20, 40, 3) and image_size(p) == (40, 20)
    turned = read_image(p, exif_transpose=True)
    assert turned.shape == (40, 20, 3) and image_size(p, exif_transpose=True) == (20, 40)
    # turned clockwise: the left (red) half is now on top, the blue one at the bottom
    assert turned[5, 10, 0] > 200 and turned[5, 10, 2] < 60
    assert turned[35, 10, 2] > 200 and turned[35, 10, 0] < 60
    (flat / "photo.xml").write_text(_xml("photo.jpg", size=(40, 20)))
    r = load_dataset(flat, "all").records[0]
    assert (r.width, r.height) == (40, 20) and r.read().shape == (20, 40, 3)
    r = load_dataset(flat, "all", exif_transpose=True).records[0]
    assert (r.width, r.height) == (20, 40) and r.read().shape == (40, 20, 3)
    assert load_config(None, ["data.exif_transpose=true"]).data.exif_transpose is True
    assert Config().data.exif_transpose is None  # each format's own convention
    # YOLO: Ultralytics labels the oriented image, so its sets are read oriented by default
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "images" / "photo.jpg").write_bytes(p.read_bytes())
    (yolo / "labels" / "photo.txt").write_text("0 0.5 0.25 1.0 0.5\n")  # the red (top) half
    (yolo / "classes.txt").write_text("red\n")
    r = load_dataset(yolo, "all").records[0]
    assert (r.width, r.height) == (20, 40) and r.read().shape == (40, 20, 3)
    np.testing.assert_allclose(r.boxes[0], [0, 0, 19, 19])
    assert (load_dataset(yolo, "all", exif_transpose=False).records[0].width) == 40
