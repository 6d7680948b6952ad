"""Pascal VOC devkit layout (``VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}``)
and the VOC XML format shared with labelImg folders."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from ..errors import UserError
from ..images import IMAGE_EXTENSIONS
from .common import (MISSING_IN_SPLIT, OUTSIDE, DataRoots, DetectionDataset, ImageRecord, LoadReport, finish_classes,
                     is_list_file, probe_image, read_list_file, repair_boxes, safe_image_id)

_TRUE, _FALSE = {"1", "yes", "true", "1.0"}, {"0", "no", "false", "0.0", ""}


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


def parse_flag(text: str | None, tag: str, report: LoadReport, where: str) -> bool:
    """``<difficult>``/``<truncated>``: 1/yes/true is set, 0/no/false/empty (or no tag) is not;
    anything else is counted and read as not set."""
    if text is None:
        return False
    v = text.strip().lower()
    if v in _TRUE:
        return True
    if v not in _FALSE:
        report.add(f"unreadable <{tag}> value (read as 0)", f"{where}: {text.strip()[:40]!r}")
    return False


def parse_voc_xml(xml_path: Path, report: LoadReport) -> dict | None:
    """Objects of one VOC XML file; None (with a report entry) when it cannot be parsed.

    Parsed with defusedxml, DTDs refused: entity expansion ("billion laughs") and external
    entities never reach the parser, whatever expat's own limits are.
    """
    try:
        root = SafeET.parse(xml_path, forbid_dtd=True).getroot()
    except (ET.ParseError, defusedxml.DefusedXmlException, OSError, ValueError) as exc:
        report.add("malformed XML (image skipped)", f"{xml_path.name}: {type(exc).__name__}: {exc}"[:200])
        return None
    size = root.find("size")
    w = h = None
    if size is not None:
        try:
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
        except (TypeError, ValueError, OverflowError):
            w = h = None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            if not all(math.isfinite(c) for c in coords):
                raise ValueError("not finite")
        except (AttributeError, TypeError, ValueError):
            report.add("object without a readable <bndbox> (skipped)", xml_path.name)
            continue
        if not name:
            report.add("object without a <name> (skipped)", xml_path.name)
            continue
        difficult = parse_flag(obj.findtext("difficult"), "difficult", report, xml_path.name)
        objects.append((name, [c - 1.0 for c in coords], difficult))  # 1-based → 0-based
    return {"filename": (root.findtext("filename") or "").strip(), "width": w, "height": h,
            "objects": objects}


def make_record(image_id: str, image_path: Path | None, parsed: dict, report: LoadReport,
                min_box_size: float, exif_transpose: bool = False) -> ImageRecord | None:
    """Check the image against its XML and repair the boxes."""
    if image_path is None or not image_path.is_file():
        report.add("annotation whose image is missing (skipped)", image_id)
        return None
    size = probe_image(image_path, report, image_path.name, exif_transpose)
    if size is None:
        return None
    width, height = size
    if parsed["width"] is None:
        report.add("XML without <size> (size read from the image)", image_id)
    elif (parsed["width"], parsed["height"]) != (width, height):
        report.add("XML <size> disagrees with the image (image size used)", image_id)
    objs = parsed["objects"]
    boxes = np.array([o[1] for o in objs], dtype=np.float64).reshape(-1, 4)
    keep = repair_boxes(boxes, width, height, min_box_size, report, image_id)
    return ImageRecord(safe_image_id(image_id, report), image_path, boxes[keep],
                       [o[0] for o, k in zip(objs, keep) if k],
                       np.array([o[2] for o in objs], dtype=bool)[keep] if objs else np.zeros(0, bool),
                       width, height,
                       raw_objects=[(o[0], [c + 1.0 for c in o[1]], o[2]) for o in objs],
                       exif_transpose=exif_transpose)


def find_image(folder: Path, stem: str, filename: str, roots: DataRoots, report: LoadReport) -> Path | None:
    """The image an annotation names (``<filename>`` first, then ``stem`` with any image
    extension), only ever inside ``roots``: a ``<filename>`` leading outside skips the image."""
    if filename:
        n = report.counts[OUTSIDE]
        cand = roots.inside(folder, filename, report)
        if cand is not None or report.counts[OUTSIDE] > n:  # found, or names a file outside: skipped
            return cand
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            cand = roots.inside(folder, f"{stem}{e}", report)
            if cand is not None:
                return cand
    return None


def load_voc(root: Path, split: str, classes: list[str] | None, min_box_size: float = 1.0,
             exif_transpose: bool = False) -> DetectionDataset:
    report = LoadReport()
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    roots = DataRoots(root, img_dir, ann_dir)
    if split == "all":
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    elif is_list_file(split, ["all", *(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))]):
        ids = read_list_file(Path(split), report)
    else:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            avail = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
            raise UserError(f"split file {split_file} not found; available splits: "
                            f"{', '.join(avail) or 'none'} (or use --split all)")
        ids = read_list_file(split_file, report)
    records, seen = [], set()
    for image_id in ids:
        if not (ann_dir / f"{image_id}.xml").is_file():
            report.add(MISSING_IN_SPLIT, image_id)
            continue
        xml = roots.inside(ann_dir, f"{image_id}.xml", report)
        if xml is None:
            continue
        parsed = parse_voc_xml(xml, report)
        if parsed is None:
            continue
        n_outside = report.counts[OUTSIDE]
        path = find_image(img_dir, image_id, parsed["filename"], roots, report)
        if path is None and report.counts[OUTSIDE] > n_outside:
            continue  # counted as outside the data folder
        rec = make_record(image_id, path, parsed, report, min_box_size, exif_transpose)
        if rec is not None:
            if rec.image_id in seen:
                report.add("duplicate image id (first kept)", rec.image_id)
                continue
            seen.add(rec.image_id)
            records.append(rec)
    classes, records = finish_classes(records, classes, report)
    how = ("every annotation" if split == "all" else f"the images listed in {split}" if Path(split).is_file()
           else f"ImageSets/Main/{split}.txt")
    return DetectionDataset(root.name, classes, records, report, is_voc2007="2007" in root.name,
                            source=f"{root} ({how})")
