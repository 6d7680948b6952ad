"""Pascal VOC devkit layout (``VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}``)
and the VOC XML format shared with labelImg folders."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..images import IMAGE_EXTENSIONS
from .common import (DetectionDataset, ImageRecord, LoadReport, finish_classes, image_size,
                     read_list_file, repair_boxes)


def find_devkit_root(p: Path) -> Path | None:
    """The folder holding ``Annotations/`` and ``JPEGImages/`` (also from ``VOCdevkit/``)."""
    if p.is_dir() and (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir():
        return p
    if p.is_dir():
        subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "Annotations").is_dir()
                      and (d / "JPEGImages").is_dir())
        if len(subs) == 1:
            return subs[0]
        if len(subs) > 1:
            raise UserError(f"{p} holds several devkit folders ({', '.join(d.name for d in subs)}); "
                            "point --data at one of them")
    return None


def parse_voc_xml(xml_path: Path, report: LoadReport) -> dict | None:
    """Objects of one VOC XML file; None (with a report entry) when it cannot be parsed."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        report.add("malformed XML (image skipped)", f"{xml_path.name}: {exc}")
        return None
    size = root.find("size")
    w = h = None
    if size is not None:
        try:
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
        except (TypeError, ValueError):
            w = h = None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            report.add("object without a readable <bndbox> (skipped)", xml_path.name)
            continue
        if not name:
            report.add("object without a <name> (skipped)", xml_path.name)
            continue
        diff = obj.findtext("difficult")
        try:
            difficult = bool(int(float(diff))) if diff is not None and diff.strip() else False
        except ValueError:
            difficult = False
        objects.append((name, [c - 1.0 for c in coords], difficult))  # 1-based → 0-based
    return {"filename": (root.findtext("filename") or "").strip(), "width": w, "height": h,
            "objects": objects}


def make_record(image_id: str, image_path: Path | None, parsed: dict, report: LoadReport,
                min_box_size: float) -> ImageRecord | None:
    """Check the image against its XML and repair the boxes."""
    if image_path is None or not image_path.is_file():
        report.add("annotation whose image is missing (skipped)", image_id)
        return None
    size = image_size(image_path)
    if size is None:
        report.add("file that is not a readable image (skipped)", str(image_path.name))
        return None
    width, height = size
    if parsed["width"] is None:
        report.add("XML without <size> (size read from the image)", image_id)
    elif (parsed["width"], parsed["height"]) != (width, height):
        report.add("XML <size> disagrees with the image (image size used)", image_id)
    objs = parsed["objects"]
    boxes = np.array([o[1] for o in objs], dtype=np.float64).reshape(-1, 4)
    keep = repair_boxes(boxes, width, height, min_box_size, report, image_id)
    return ImageRecord(image_id, image_path, boxes[keep], [o[0] for o, k in zip(objs, keep) if k],
                       np.array([o[2] for o in objs], dtype=bool)[keep] if objs else np.zeros(0, bool),
                       width, height,
                       raw_objects=[(o[0], [c + 1.0 for c in o[1]], o[2]) for o in objs])


def find_image(folder: Path, stem: str, filename: str = "") -> Path | None:
    if filename:
        cand = folder / filename
        if cand.is_file():
            return cand
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            cand = folder / f"{stem}{e}"
            if cand.is_file():
                return cand
    return None


def load_voc(root: Path, split: str, classes: list[str] | None, min_box_size: float = 1.0) -> DetectionDataset:
    report = LoadReport()
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if split == "all":
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    elif Path(split).is_file():
        ids = read_list_file(Path(split), report)
    else:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            avail = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
            raise UserError(f"split file {split_file} not found; available splits: "
                            f"{', '.join(avail) or 'none'} (or use --split all)")
        ids = read_list_file(split_file, report)
    records = []
    for image_id in ids:
        xml = ann_dir / f"{image_id}.xml"
        if not xml.is_file():
            report.add("image id in the split without an annotation file (skipped)", image_id)
            continue
        parsed = parse_voc_xml(xml, report)
        if parsed is None:
            continue
        rec = make_record(image_id, find_image(img_dir, image_id, parsed["filename"]), parsed, report,
                          min_box_size)
        if rec is not None:
            records.append(rec)
    classes, records = finish_classes(records, classes, report)
    return DetectionDataset(root.name, classes, records, report, is_voc2007="2007" in root.name)
