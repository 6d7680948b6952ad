"""COCO JSON detection annotations (``images``, ``annotations``, ``categories``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from .common import (DetectionDataset, ImageRecord, LoadReport, finish_classes, image_size,
                     read_list_file, repair_boxes, seeded_split)


def _image_dir(json_path: Path) -> Path:
    for cand in (json_path.parent / "images", json_path.parent):
        if cand.is_dir():
            return cand
    return json_path.parent


def load_coco(json_path: Path, split: str, classes: list[str] | None, seed: int = 0,
              test_fraction: float = 0.2, min_box_size: float = 1.0) -> DetectionDataset:
    report = LoadReport()
    try:
        data = json.loads(json_path.read_text())
        images, anns, cats = data["images"], data.get("annotations", []), data["categories"]
    except (json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
        raise UserError(f"{json_path} is not a COCO detection file: {exc}") from None
    cat_name = {c["id"]: c["name"] for c in cats}
    by_image: dict = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    img_dir = _image_dir(json_path)
    id_of = {}
    for im in images:
        stem = Path(im["file_name"]).stem
        if stem in id_of:
            report.add("duplicate image id (first kept)", im["file_name"])
            continue
        id_of[stem] = im
    wanted = read_list_file(Path(split), report) if Path(split).is_file() else seeded_split(
        list(id_of), split, seed, test_fraction)
    records = []
    for stem in wanted:
        im = id_of.get(stem)
        if im is None:
            continue
        path = img_dir / im["file_name"]
        if not path.is_file():
            path = json_path.parent / im["file_name"]
        if not path.is_file():
            report.add("annotation whose image is missing (skipped)", im["file_name"])
            continue
        size = image_size(path)
        if size is None:
            report.add("file that is not a readable image (skipped)", im["file_name"])
            continue
        boxes, labels, crowd = [], [], []
        for a in by_image.get(im["id"], []):
            if a.get("category_id") not in cat_name or len(a.get("bbox", [])) != 4:
                report.add("annotation with unknown category or no bbox (skipped)", im["file_name"])
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            boxes.append([x, y, x + w - 1, y + h - 1])  # continuous → inclusive pixels
            labels.append(cat_name[a["category_id"]])
            crowd.append(bool(a.get("iscrowd", 0)))
        b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        keep = repair_boxes(b, size[0], size[1], min_box_size, report, stem)
        records.append(ImageRecord(stem, path, b[keep], [lab for lab, k in zip(labels, keep) if k],
                                   np.array(crowd, dtype=bool)[keep] if crowd else np.zeros(0, bool),
                                   size[0], size[1], coco_id=im["id"] if isinstance(im.get("id"), int) else None))
    if classes is None:
        classes = [cat_name[c["id"]] for c in sorted(cats, key=lambda c: c["id"])]
    classes, records = finish_classes(records, classes, report)
    id_of_name: dict[str, int] = {}
    for c in sorted(cats, key=lambda c: c["id"]):
        id_of_name.setdefault(c["name"], c["id"])
    return DetectionDataset(json_path.stem, classes, records, report,
                            category_ids={c: id_of_name[c] for c in classes if c in id_of_name})
