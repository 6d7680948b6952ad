"""SPP image classification (``sppdet classify``): train, predict, evaluate."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("sppdet")


# -- SPP image classification (sppdet train-cls / classify / eval-cls) -------------------------
def train_classifier(data, out: str | Path, *, split: str = "trainval", max_per_class: int | None = None,
                     seed: int = 0, device: str | None = None, **settings: Any):
    """Train an SPP image classifier on ``split`` of ``data`` (an ImageFolder, or a detection data
    set whose objects are cropped) and save it in ``out``. ``settings`` are
    :class:`~sppdet.classification.ClsConfig` fields (``levels``, ``sizes``, ``epochs``, ...).
    Returns ``(model, classes)``."""
    from ..classification import ClsConfig, load_cls_data
    from ..classification import train_classifier as fit

    cfg = ClsConfig(seed=seed, device=device or "auto", **settings)
    samples, classes = load_cls_data(data, split, max_per_class=max_per_class, seed=seed)
    log.info(f"training an SPP classifier on {len(samples)} images, {len(classes)} classes, sizes {cfg.sizes}")
    return fit(samples, classes, cfg, Path(out)), classes


def classify(run: str | Path, inputs: Sequence[str | Path] | str | Path, *, mode: str = "10view+full",
             size: int = 224, top_k: int = 5, exif_transpose: bool = True, device: str | None = None) -> dict:
    """Top-``top_k`` classes of image files, folders and ``.txt`` lists with the classifier run
    ``run``. Returns ``{"results": [{"image", "top": [(class, probability), ...]} or {"image",
    "error"}], "skipped": [messages for inputs that are not images]}``."""
    from ..classification import load_classifier, predict
    from ..images import ImageReadError, read_image
    from ..inputs import expand_inputs

    model, classes = load_classifier(run, device)
    paths, skipped = expand_inputs([inputs] if isinstance(inputs, (str, Path)) else list(inputs))
    results = []
    for p in paths:
        try:
            img = read_image(p, exif_transpose=exif_transpose)
        except ImageReadError as exc:
            results.append({"image": str(p), "error": str(exc)})
            continue
        probs = predict(model, img, mode, size)
        top = probs.argsort()[::-1][:top_k]
        results.append({"image": str(p), "top": [(classes[i], float(probs[i])) for i in top]})
    return {"results": results, "skipped": skipped}


def evaluate_classifier(run: str | Path, data, *, split: str = "test", modes: Sequence[str] | None = None,
                        size: int = 224, max_per_class: int | None = None, seed: int = 0,
                        device: str | None = None, out: str | Path | None = None) -> dict:
    """Top-1/top-5 error of the classifier run ``run`` on ``split`` of ``data`` per test mode
    (default: all), written as JSON to ``out`` when given. Returns ``{"errors": {mode:
    {"top1_error", "top5_error"}}, "images", "classes"}``."""
    from ..classification import MODES, load_classifier, load_cls_data
    from ..classification import evaluate_classifier as score

    model, classes = load_classifier(run, device)
    samples, _ = load_cls_data(data, split, classes=classes, max_per_class=max_per_class, seed=seed)
    res = score(model, samples, modes or MODES, size)
    if out:
        from ..fileio import atomic_write_json

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, res)
    return {"errors": res, "images": len(samples), "classes": len(classes)}
