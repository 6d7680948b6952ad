"""Detection data sets: VOC devkit, labelImg flat folders, COCO JSON, YOLO, and the synthetic set.

The readers share :mod:`.common`; this package picks the reader for a path, so the import
graph runs one way (package → readers → common).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .coco import EXPORT_FILE, export_split_files, load_coco, load_coco_export
from .common import DetectionDataset, ImageRecord, LoadReport
from .labelimg import load_flat
from .voc import find_devkit_root, load_voc
from .yolo import find_yaml, is_yolo_dir, load_yolo

__all__ = ["DetectionDataset", "ImageRecord", "LoadReport", "load_dataset"]


def load_dataset(path: str | Path, split: str = "all", classes: list[str] | None = None,
                 seed: int = 0, test_fraction: float = 0.2, min_box_size: float = 1.0,
                 exif_transpose: bool | None = None) -> DetectionDataset:
    """Read a data set in any supported layout; ``split`` is a split name, ``all``, or a list file.

    ``exif_transpose`` (config ``data.exif_transpose``) makes record sizes, boxes and pixels
    follow the images' EXIF orientation. ``None`` follows the convention of the tools that
    write each format: labelImg and VOC/COCO tools draw boxes on the stored pixels (off),
    Ultralytics' YOLO tools on the oriented image (on)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"data path not found: {p}")
    stored = bool(exif_transpose)  # None → False: the stored pixels
    oriented = True if exif_transpose is None else exif_transpose
    if p.is_file() and p.suffix.lower() == ".json":
        ds = load_coco(p, split, classes, seed, test_fraction, min_box_size, stored)
    elif p.is_file() and find_yaml(p) is not None:
        ds = load_yolo(p, split, classes, seed, test_fraction, min_box_size, oriented)
    else:
        root = find_devkit_root(p)
        if root is not None:
            ds = load_voc(root, split, classes, min_box_size, stored)
        elif is_yolo_dir(p):
            ds = load_yolo(p, split, classes, seed, test_fraction, min_box_size, oriented)
        elif export_split_files(p):
            ds = load_coco_export(p, split, classes, min_box_size, stored)
        elif (p / EXPORT_FILE).is_file():  # one split folder of an export: ROOT/test/
            ds = load_coco(p / EXPORT_FILE, split, classes, seed, test_fraction, min_box_size, stored)
        else:
            ds = load_flat(p, split, classes, seed, test_fraction, min_box_size, stored)
    if not ds.records:
        raise UserError(f"split {split!r} of {p} holds no usable images"
                        + (f"\n{ds.report.summary()}" if ds.report.counts else ""))
    if not ds.classes:
        raise UserError(f"no object classes found in {p} (split {split!r})")
    if not ds.source:
        ds.source = f"{p} (split {split})"
    return ds
