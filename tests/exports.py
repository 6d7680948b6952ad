"""Tiny data sets shaped like a labelling service's exports, written from the synthetic VOC set
with code independent of sppdet's readers (boxes converted by hand):

- COCO: ``ROOT/{train,valid,test}/_annotations.coco.json`` with the images beside each file,
  and category 0 the super-category that no annotation uses;
- YOLO: ``ROOT/{train,valid,test}/{images,labels}`` and a ``data.yaml`` whose split paths are
  absolute paths of another machine.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

SPLITS = ("train", "valid", "test")


def voc_objects(voc: Path, image_id: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``(name, (xmin, ymin, xmax, ymax))`` 1-based inclusive, as the XML has them."""
    out = []
    for obj in ET.parse(voc / "Annotations" / f"{image_id}.xml").getroot().iter("object"):
        bb = obj.find("bndbox")
        out.append((obj.find("name").text, tuple(float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return out


def assign(voc: Path, n_valid: int = 2, n_test: int = 3) -> dict[str, list[str]]:
    ids = sorted(p.stem for p in (voc / "Annotations").glob("*.xml"))
    return {"train": ids[: len(ids) - n_valid - n_test], "valid": ids[len(ids) - n_valid - n_test: len(ids) - n_test],
            "test": ids[len(ids) - n_test:]}


def write_coco_export(voc: Path, out: Path, classes: list[str], splits: dict[str, list[str]],
                      supercategory: str = "shapes") -> Path:
    """One ``_annotations.coco.json`` per split folder; category ids 1.. for ``classes``, 0 for
    the super-category (no annotation). COCO bbox ``[x, y, w, h]`` is continuous:
    ``x = xmin - 1``, ``w = xmax - xmin + 1``."""
    cats = [{"id": 0, "name": supercategory, "supercategory": "none"}] + [
        {"id": i + 1, "name": c, "supercategory": supercategory} for i, c in enumerate(classes)]
    for split, ids in splits.items():
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k, image_id in enumerate(ids):
            src = voc / "JPEGImages" / f"{image_id}.jpg"
            shutil.copy(src, d / src.name)
            w, h = Image.open(src).size
            images.append({"id": k, "file_name": src.name, "width": w, "height": h})
            for name, (x1, y1, x2, y2) in voc_objects(voc, image_id):
                if name in classes:
                    anns.append({"id": len(anns), "image_id": k, "category_id": classes.index(name) + 1,
                                 "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1], "area": (x2 - x1 + 1) * (y2 - y1 + 1),
                                 "iscrowd": 0})
        (d / "_annotations.coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                              "categories": cats}))
    return out


def write_yolo_export(voc: Path, out: Path, classes: list[str], splits: dict[str, list[str]],
                      foreign_root: str = "/home/someone-else/datasets/shapes-3") -> Path:
    """``ROOT/<split>/images``, ``ROOT/<split>/labels`` and a data.yaml naming each split by an
    absolute path that does not exist here (``val`` is the ``valid`` folder)."""
    for split, ids in splits.items():
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            src = voc / "JPEGImages" / f"{image_id}.jpg"
            shutil.copy(src, out / split / "images" / src.name)
            W, H = Image.open(src).size
            lines = [f"{classes.index(n)} {(x1 - 1 + x2) / 2 / W:.8f} {(y1 - 1 + y2) / 2 / H:.8f} "
                     f"{(x2 - x1 + 1) / W:.8f} {(y2 - y1 + 1) / H:.8f}\n"
                     for n, (x1, y1, x2, y2) in voc_objects(voc, image_id) if n in classes]
            (out / split / "labels" / f"{image_id}.txt").write_text("".join(lines))
    yaml_split = {"train": "train", "valid": "val", "test": "test"}
    (out / "data.yaml").write_text("".join(f"{yaml_split[s]}: {foreign_root}/{s}/images\n" for s in splits)
                                   + f"nc: {len(classes)}\nnames: {json.dumps(classes)}\n")
    return out
