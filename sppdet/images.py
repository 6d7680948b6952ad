"""Robust image reading: every real-world file either becomes an RGB uint8 array or a clear error."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
# Images larger than this (in pixels) are refused rather than risking decompression bombs.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageReadError(UserError):
    """The file is missing, not an image, or too damaged to decode."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_uint8_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: rescale the actual range to 0..255 instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        arr = arr.round().astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent pixels onto white, as image viewers show them.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns on read-only)


def read_image(path: str | Path, exif_transpose: bool = False) -> np.ndarray:
    """Read any common image file as an ``[H, W, 3]`` RGB uint8 array.

    Greyscale, CMYK, palette, RGBA and 16-bit files are converted; a truncated JPEG is
    decoded as far as possible with a warning (the missing part is grey), because a
    user's data set should not be dropped for one damaged tail.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.draft(None, None)
            try:
                img.load()
            except OSError as exc:
                if "truncated" not in str(exc).lower():
                    raise
                warnings.warn(f"{path}: truncated image, decoding what is there", stacklevel=2)
                ImageFile.LOAD_TRUNCATED_IMAGES = True
                try:
                    with Image.open(path) as img2:
                        img2.load()
                        arr = _to_uint8_rgb(img2)
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
                return arr
            if exif_transpose:
                from PIL import ImageOps

                img = ImageOps.exif_transpose(img)
            arr = _to_uint8_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{path}: empty image")
    return arr


def to_rgb_array(source) -> np.ndarray:
    """An in-memory image as ``[H, W, 3]`` RGB uint8: a PIL image, a numpy array (``[H, W]``,
    ``[H, W, 1|3|4]``; uint8, or float in [0, 1]) or a torch tensor (``[3, H, W]`` or
    ``[H, W, 3]``, same dtypes). Anything else is a :class:`UserError`."""
    if isinstance(source, Image.Image):
        return _to_uint8_rgb(source)
    try:
        import torch

        if isinstance(source, torch.Tensor):
            t = source.detach().cpu()
            if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
                t = t.permute(1, 2, 0)
            source = t.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(source, np.ndarray):
        raise UserError(f"cannot read an image from a {type(source).__name__}: give a file path, a PIL image, "
                        "an [H, W, 3] uint8 array or a [3, H, W] tensor")
    a = source
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise UserError(f"an image array must be [H, W], [H, W, 3] (RGB) or [3, H, W], got shape {source.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating) and a.dtype != bool:
            raise UserError(f"image arrays must be uint8 or float in [0, 1], got {a.dtype}")
        f = a.astype(np.float32)
        if not np.isfinite(f).all() or f.min() < 0 or f.max() > 1:
            raise UserError("a float image must hold finite values in [0, 1]")
        a = (f * 255.0).round().astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)
