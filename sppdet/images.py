"""Robust image reading: every real-world file either becomes an RGB uint8 array or a clear error."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
# Images with more pixels than this are refused from their header, before decoding: a 219 KB
# PNG can declare 200 Mpx and cost 4 GB once decoded. 100 Mpx (e.g. 12000×8300) is far above
# what detection needs; raise it with $SPPDET_MAX_PIXELS or the ``max_pixels`` arguments.
MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "SPPDET_MAX_PIXELS"
# sppdet checks every header against its own (configurable) limit, so Pillow's fixed one
# (which raises at 2 × 89 Mpx whatever sppdet's limit is) is turned off.
Image.MAX_IMAGE_PIXELS = None
EXIF_ORIENTATION = 0x0112


class ImageReadError(UserError):
    """The file is missing, not an image, or too damaged to decode."""


class ImageTooLargeError(ImageReadError):
    """The header declares more pixels than the limit; nothing was decoded."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$SPPDET_MAX_PIXELS``, else
    :data:`MAX_PIXELS`."""
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not raw:
            return MAX_PIXELS
        try:
            max_pixels = int(float(raw)) if raw.lower() not in ("nan", "inf", "-inf") else -1
        except ValueError:
            max_pixels = -1
        if max_pixels < 1:
            raise UserError(f"${MAX_PIXELS_ENV} must be a positive number of pixels, got {raw!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    return max_pixels


def _check_pixels(path: Path, size: tuple[int, int], limit: int) -> None:
    w, h = size
    if w * h > limit:
        raise ImageTooLargeError(
            f"{path}: image of {w}×{h} = {w * h / 1e6:.1f} Mpx is above the limit of {limit / 1e6:g} Mpx "
            f"(refused before decoding; set ${MAX_PIXELS_ENV}={w * h} to accept it)")


def orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1–8), 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - damaged EXIF must not stop a read
        return 1
    return value if 1 <= value <= 8 else 1


def oriented_size(size: tuple[int, int], orient: int) -> tuple[int, int]:
    """The size after applying an EXIF orientation (5–8 turn the image by 90°)."""
    return (size[1], size[0]) if orient in (5, 6, 7, 8) else size


def header_size(path: str | Path, exif_transpose: bool = False, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the file header (after the EXIF orientation when asked),
    without decoding; :class:`ImageReadError` when it is not an image or is too large."""
    path = Path(path)
    limit = pixel_limit(max_pixels)
    try:
        with Image.open(path) as img:
            size = tuple(img.size)
            _check_pixels(path, size, limit)
            return oriented_size(size, orientation(img)) if exif_transpose else size
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"image not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure: not an image
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None


def _to_uint8_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: rescale the actual range to 0..255 instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
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


def _finish(img: Image.Image, exif_transpose: bool) -> np.ndarray:
    if exif_transpose and orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    return _to_uint8_rgb(img)


def read_image(path: str | Path, exif_transpose: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Read any common image file as an ``[H, W, 3]`` RGB uint8 array.

    Greyscale, CMYK, palette, RGBA and 16-bit files are converted; a truncated JPEG is
    decoded as far as possible with a warning (the missing part is grey), because a
    user's data set should not be dropped for one damaged tail. ``exif_transpose`` applies
    the EXIF orientation tag (cameras store portrait photos sideways with a tag): off for
    training data, whose boxes annotation tools such as labelImg draw on the stored pixels.
    More than ``max_pixels`` (see :func:`pixel_limit`) is refused from the header.
    """
    path = Path(path)
    limit = pixel_limit(max_pixels)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            _check_pixels(path, img.size, limit)
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
                        arr = _finish(img2, exif_transpose)
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
                return arr
            arr = _finish(img, exif_transpose)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
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
