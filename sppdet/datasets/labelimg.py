"""labelImg-style flat folders: images and VOC XML side by side, or in sibling folders
(``images/`` + ``annotations/`` or ``annots/``), any image extension in any case."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..images import is_image_file
from .common import (DetectionDataset, LoadReport, finish_classes, read_list_file, seeded_split)
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
              test_fraction: float = 0.2, min_box_size: float = 1.0) -> DetectionDataset:
    report = LoadReport()
    ann_dir, img_dir = _dirs(root)
    images = {}
    for p in sorted(img_dir.iterdir()):
        if p.is_file() and is_image_file(p):
            if p.stem in images:
                report.add("duplicate image id (first file kept)", p.name)
                continue
            images[p.stem] = p
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
    if Path(split).is_file():
        ids = [i for i in read_list_file(Path(split), report) if i in xmls]
    else:
        ids = seeded_split(list(xmls), split, seed, test_fraction)
    records = []
    for image_id in ids:
        parsed = parse_voc_xml(xmls[image_id], report)
        if parsed is None:
            continue
        path = images.get(image_id)
        if path is None and parsed["filename"]:
            cand = img_dir / parsed["filename"]
            path = cand if cand.is_file() else images.get(Path(parsed["filename"]).stem)
        rec = make_record(image_id, path, parsed, report, min_box_size)
        if rec is not None:
            records.append(rec)
    classes, records = finish_classes(records, classes, report)
    return DetectionDataset(root.name, classes, records, report)
