"""labelImg-style flat folders: images and VOC XML side by side, or in sibling folders
(``images/`` + ``annotations/`` or ``annots/``), any image extension in any case."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..images import is_image_file
from .common import (OUTSIDE, DataRoots, DetectionDataset, LoadReport, finish_classes, resplit_note,
                     select_split)
from .voc import make_record, parse_voc_xml

ANNOTATION_DIRS = ("annotations", "Annotations", "annots", "labels", "xml", "xmls")
IMAGE_DIRS = ("images", "JPEGImages", "imgs", "img")


def _dirs(root: Path) -> tuple[Path, Path]:
    ann = next((root / d for d in ANNOTATION_DIRS if (root / d).is_dir() and any((root / d).glob("*.xml"))),
               None)
    img = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if ann is None and any(root.glob("*.xml")):
        ann = root
    if ann is None:
        raise UserError(f"{root}: no VOC devkit layout, no COCO JSON and no XML annotations found "
                        f"(looked in {root} and {', '.join(ANNOTATION_DIRS)})")
    return ann, img or ann


def load_flat(root: Path, split: str, classes: list[str] | None, seed: int = 0,
              test_fraction: float = 0.2, min_box_size: float = 1.0,
              exif_transpose: bool = False) -> DetectionDataset:
    report = LoadReport()
    ann_dir, img_dir = _dirs(root)
    roots = DataRoots(root, ann_dir, img_dir)
    images, refused = {}, set()
    for p in sorted(img_dir.iterdir()):
        if p.is_file() and is_image_file(p):
            if not roots.contains(p):
                report.add(OUTSIDE, p.name)
                refused.add(p.stem)
                continue
            if p.stem in images:
                report.add("duplicate image id (first file kept)", p.name)
                continue
            images[p.stem] = p
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
    ids = select_split(xmls, split, seed, test_fraction, report)
    records, seen = [], set()
    for image_id in ids:
        xml = roots.inside(ann_dir, xmls[image_id].name, report)
        parsed = parse_voc_xml(xml, report) if xml is not None else None
        if parsed is None:
            continue
        path = images.get(image_id)
        if path is None and image_id in refused:
            continue  # its image leads outside the data folder: counted above
        if path is None and parsed["filename"]:
            n = report.counts[OUTSIDE]
            path = roots.inside(img_dir, parsed["filename"], report)
            if path is None and report.counts[OUTSIDE] > n:
                continue  # counted as outside the data folder
            if path is None:
                path = images.get(Path(parsed["filename"]).stem)
        rec = make_record(image_id, path, parsed, report, min_box_size, exif_transpose)
        if rec is not None:
            if rec.image_id in seen:
                report.add("duplicate image id (first kept)", rec.image_id)
                continue
            seen.add(rec.image_id)
            records.append(rec)
    classes, records = finish_classes(records, classes, report)
    how = ("every image" if split == "all" else f"the images listed in {split}" if Path(split).is_file()
           else resplit_note(split, len(xmls), len(ids), seed, test_fraction))
    return DetectionDataset(root.name, classes, records, report, source=f"{root} ({how})")
