"""Builds the bad-input corpus on the fly (no binary fixtures in the repository)."""
from pathlib import Path

import numpy as np
from PIL import Image


def make_corpus(d: Path, large: bool = True) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    files = {}
    rgb.save(d / "good.jpg", quality=90)
    files["good"] = d / "good.jpg"
    data = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    files["truncated"] = d / "truncated.jpg"
    rgb.convert("L").save(d / "grey.jpg")
    files["grey"] = d / "grey.jpg"
    rgb.convert("CMYK").save(d / "cmyk.jpg")
    files["cmyk"] = d / "cmyk.jpg"
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "rgba.png")
    files["rgba"] = d / "rgba.png"
    Image.fromarray(rng.integers(0, 65535, (90, 70), dtype=np.uint16)).save(d / "sixteen.png")
    files["16bit"] = d / "sixteen.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "one.png")
    files["1x1"] = d / "one.png"
    (d / "not_an_image.jpg").write_text("this is text, not a JPEG")
    files["not_image"] = d / "not_an_image.jpg"
    if large:
        Image.new("RGB", (10000, 8000), (40, 90, 160)).save(d / "large.jpg", quality=50)  # 80 Mpx: under the 100 Mpx limit
        files["large"] = d / "large.jpg"
    return files
