"""A deterministic synthetic detection set in the VOC devkit layout, for the built-in demo
and tests: five shape classes at 20–300 px, varied aspect ratios and rotations, partial
occlusion, look-alike clutter, on photographic (matplotlib's sample photo) or textured
(terrain relief, smooth noise) backgrounds, with sensor noise and JPEG artefacts.
Heavily occluded or tiny objects are marked ``difficult`` as VOC annotators would."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..boxes import min_size_mask
from ..errors import UserError
from ..progress import progress

CLASSES = ["disc", "triangle", "star", "cross", "ring"]


def _sample_photo() -> Image.Image | None:
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            return Image.open(io.BytesIO(f.read())).convert("RGB")
    except Exception:  # noqa: BLE001 - matplotlib without sample data: textures only
        return None


def _terrain() -> np.ndarray | None:
    try:
        from matplotlib import cbook

        return np.asarray(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"], dtype=np.float64)
    except Exception:  # noqa: BLE001
        return None


def _background(rng: np.random.Generator, w: int, h: int, photo, dem) -> Image.Image:
    kind = rng.integers(0, 3)
    if kind == 0 and photo is not None:
        pw, ph = photo.size
        cw, ch = int(rng.integers(pw // 4, pw)), int(rng.integers(ph // 4, ph))
        x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        img = photo.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, dtype=np.float64)[:, :, rng.permutation(3)]  # colour shuffle
        return Image.fromarray(np.clip(arr * rng.uniform(0.6, 1.2), 0, 255).astype(np.uint8))
    if kind == 1 and dem is not None:
        dh, dw = dem.shape
        y, x = int(rng.integers(0, dh // 2)), int(rng.integers(0, dw // 2))
        patch = dem[y:y + dh // 2, x:x + dw // 2]
        gy, gx = np.gradient(patch)
        shade = np.clip(0.5 + 0.05 * (gx - gy), 0, 1)
        tint = rng.uniform(80, 230, size=3)
        arr = shade[:, :, None] * tint[None, None, :] + 20
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    noise = rng.normal(size=(h // 8 + 1, w // 8 + 1, 3))
    img = Image.fromarray(((noise - noise.min()) / (np.ptp(noise) + 1e-9) * 255).astype(np.uint8))
    return img.resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def _polygon(cls: str, cx: float, cy: float, rx: float, ry: float, angle: float) -> list[tuple[float, float]]:
    if cls == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif cls == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5)) for k in range(10)]
    else:  # cross
        t = 0.33
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t),
               (-t, -t)]
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + rx * (x * ca - y * sa), cy + ry * (x * sa + y * ca)) for x, y in pts]


def _draw_shape(draw: ImageDraw.ImageDraw, cls: str, cx, cy, rx, ry, angle, fill, outline) -> None:
    if cls == "disc":
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill, outline=outline)
    elif cls == "ring":
        width = max(2, int(min(rx, ry) * 0.35))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=fill, width=width)
    else:
        draw.polygon(_polygon(cls, cx, cy, rx, ry, angle), fill=fill, outline=outline)


def make_image(rng: np.random.Generator, photo=None, dem=None):
    w, h = int(rng.integers(360, 640)), int(rng.integers(300, 520))
    img = _background(rng, w, h, photo, dem).convert("RGBA")
    # Clutter: lines, rectangles and blobs that are not objects (some look like parts of them).
    clutter = Image.new("RGBA", (w, h))
    cd = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(3, 12))):
        col = tuple(int(v) for v in rng.integers(0, 255, 3)) + (int(rng.integers(90, 220)),)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(10, 120)
        k = rng.integers(0, 3)
        if k == 0:
            cd.line([x, y, x + rng.uniform(-200, 200), y + rng.uniform(-200, 200)], fill=col,
                    width=int(rng.integers(1, 6)))
        elif k == 1:
            cd.rectangle([x, y, x + s, y + s * rng.uniform(0.3, 2)], fill=col)
        else:
            cd.chord([x, y, x + s, y + s * rng.uniform(0.5, 1.5)], rng.uniform(0, 180), rng.uniform(180, 360), fill=col)
    img = Image.alpha_composite(img, clutter)
    objects, masks = [], []
    for _ in range(int(rng.integers(1, 7))):
        cls = CLASSES[int(rng.integers(0, len(CLASSES)))]
        size = math.exp(rng.uniform(math.log(20), math.log(min(300, 0.9 * min(w, h)))))
        aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        rx, ry = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * math.pi) if cls in ("triangle", "star", "cross") else 0.0
        base = rng.integers(30, 255, 3)
        fill = tuple(int(v) for v in base) + (int(rng.integers(200, 256)),)
        outline = tuple(int(v) for v in base // 2) + (255,)
        layer = Image.new("RGBA", (w, h))
        _draw_shape(ImageDraw.Draw(layer), cls, cx, cy, rx, ry, angle, fill, outline)
        alpha = np.asarray(layer)[:, :, 3] > 0
        ys, xs = np.nonzero(alpha)
        if len(xs) < 30:
            continue
        for m in masks:  # later objects occlude earlier ones
            m &= ~alpha
        masks.append(alpha.copy())
        img = Image.alpha_composite(img, layer)
        objects.append([cls, [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())], int(alpha.sum())])
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    rgb += rng.normal(0, rng.uniform(3, 12), rgb.shape)
    out = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    annotated = []
    for (cls, box, area), m in zip(objects, masks):
        visible = m.sum() / max(area, 1)
        if visible < 0.1:
            continue  # hidden: not annotated at all
        tiny = not min_size_mask(np.asarray(box), 16)
        annotated.append((cls, box, bool(visible < 0.4 or tiny), bool(visible < 0.9)))
    return out, annotated


def _xml(image_id: str, w: int, h: int, objects) -> str:
    parts = [f"<annotation><folder>JPEGImages</folder><filename>{image_id}.jpg</filename>",
             "<source><database>sppdet synthetic</database></source>",
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>"]
    for cls, (x1, y1, x2, y2), difficult, occluded in objects:
        parts.append(f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>{int(occluded)}</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                     f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>")
    parts.append("</annotation>\n")
    return "\n".join(parts)


def write_synthetic(out: str | Path, n_images: int = 200, seed: int = 0, test_fraction: float = 0.3) -> Path:
    """Write ``n_images`` images in the devkit layout under ``out``; returns ``out``."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise UserError(f"synth: the number of images must be a positive integer, got {n_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"synth: the seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(test_fraction, (int, float)) and 0 <= test_fraction <= 1):
        raise UserError(f"synth: test_fraction must be in [0, 1], got {test_fraction!r}")
    out = Path(out)
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / d).mkdir(parents=True, exist_ok=True)
    photo, dem = _sample_photo(), _terrain()
    ids = []
    for i in progress(range(n_images), desc="synthetic images", unit="img"):
        image_id = f"{i:06d}"
        img, objects = make_image(np.random.default_rng([seed, i]), photo, dem)
        img.save(out / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (out / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, img.size[0], img.size[1], objects))
        ids.append(image_id)
    n_test = int(round(n_images * test_fraction))
    test, trainval = ids[len(ids) - n_test:], ids[: len(ids) - n_test]
    main = out / "ImageSets" / "Main"
    for name, lst in (("trainval", trainval), ("test", test), ("train", trainval[: len(trainval) // 2]),
                      ("val", trainval[len(trainval) // 2:])):
        (main / f"{name}.txt").write_text("".join(f"{x}\n" for x in lst))
    return out
