"""COCO JSON detection annotations (``images``, ``annotations``, ``categories``).

Every entry is checked before use: a malformed entry is skipped and counted in the load
report; only a file that is not a COCO detection file at all is a :class:`UserError`.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .common import (OUTSIDE, DataRoots, DetectionDataset, ImageRecord, LoadReport, canonical_split, finish_classes,
                     probe_image, read_list_file, repair_boxes, resplit_note, safe_image_id, seeded_split,
                     select_split)

EXPORT_FILE = "_annotations.coco.json"  # a labelling service's name for each split's file


def split_of_file(json_path: Path) -> str | None:
    """The split a COCO file holds, by its folder (``valid/_annotations.coco.json``) or its name
    (``instances_val2017.json``): ``train``, ``val``, ``trainval``, ``test``, or None."""
    if c := canonical_split(json_path.parent.name):
        return c
    for tok in re.split(r"[^a-zA-Z]+", json_path.stem):
        if tok.lower() == "trainval" or (c := canonical_split(tok)):
            return c or "trainval"
    return None


def export_split_files(root: Path) -> dict[str, Path]:
    """An export root's COCO files by split: ``ROOT/<split>/_annotations.coco.json`` (or the one
    ``.json`` file there), for split folders spelled train/valid/val/validation/test."""
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        c = canonical_split(d.name) if d.is_dir() else None
        if c is None or c in out:
            continue
        f = d / EXPORT_FILE
        if not f.is_file():
            found = sorted(d.glob("*.json"))
            f = found[0] if len(found) == 1 else None
        if f is not None:
            out[c] = f
    return {c: out[c] for c in ("train", "val", "test") if c in out}


def _image_dir(json_path: Path) -> Path:
    for cand in (json_path.parent / "images", json_path.parent):
        if cand.is_dir():
            return cand
    return json_path.parent


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_json(json_path: Path) -> dict:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig", errors="surrogateescape"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{json_path} is not valid JSON ({exc})") from None
    except (OSError, RecursionError) as exc:
        raise UserError(f"cannot read {json_path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{json_path} is not a COCO detection file: the top level is a "
                        f"{type(data).__name__}, not an object with images/annotations/categories")
    for key, required in (("images", True), ("categories", True), ("annotations", False)):
        if key not in data:
            if required:
                raise UserError(f"{json_path} is not a COCO detection file: no {key!r} key")
            data[key] = []
        elif not isinstance(data[key], list):
            raise UserError(f"{json_path}: {key!r} must be a list, got {type(data[key]).__name__}")
    return data


def load_coco(json_path: Path, split: str, classes: list[str] | None, seed: int = 0,
              test_fraction: float = 0.2, min_box_size: float = 1.0,
              exif_transpose: bool = False) -> DetectionDataset:
    report = LoadReport()
    data = _read_json(json_path)
    name = json_path.name

    cat_name: dict = {}
    for c in data["categories"]:
        if not (isinstance(c, dict) and _is_id(c.get("id")) and isinstance(c.get("name"), str)
                and c["name"].strip()):
            report.add("category without an id or a name (skipped)", f"{name}: {str(c)[:80]}")
        elif c["id"] in cat_name:
            report.add("duplicate category id (first kept)", f"{name}: {c['id']!r}")
        else:
            cat_name[c["id"]] = c["name"].strip()

    by_id: dict = {}  # image id → image entry (the first with that id)
    by_stem: dict[str, dict] = {}
    for im in data["images"]:
        if not (isinstance(im, dict) and _is_id(im.get("id")) and isinstance(im.get("file_name"), str)
                and im["file_name"].strip()):
            report.add("image entry without an id or a file_name (skipped)", f"{name}: {str(im)[:80]}")
            continue
        if im["id"] in by_id:
            report.add("duplicate image id (its annotations go to the first image)", f"{name}: {im['id']!r}")
            continue
        by_id[im["id"]] = im
        stem = Path(im["file_name"]).stem
        if stem in by_stem:
            report.add("duplicate image file stem (first kept)", im["file_name"])
            continue
        by_stem[stem] = im

    by_image: dict = {}
    for a in data["annotations"]:
        if not isinstance(a, dict) or not _is_id(a.get("image_id")) or a["image_id"] not in by_id:
            report.add("annotation of an unknown image_id (skipped)",
                       f"{name}: {a.get('image_id') if isinstance(a, dict) else str(a)[:40]!r}")
            continue
        by_image.setdefault(a["image_id"], []).append(a)

    img_dir = _image_dir(json_path)
    roots = DataRoots(json_path.parent, img_dir)
    file_split = split_of_file(json_path)
    if Path(split).is_file():
        wanted = select_split(by_stem, split, seed, test_fraction, report)
        how = f"the images listed in {split}"
    elif split == "all" or file_split is not None:
        # a file that is a split is used whole: re-splitting it would silently drop images
        wanted = sorted(by_stem)
        how = "every image of the file" + (f": it is the {file_split} split" if file_split else "")
        asked = canonical_split(split) or split
        if file_split is not None and asked not in ("all", file_split) and not (
                asked == "trainval" and file_split in ("train", "val")):
            how += f" (--split {split} does not re-split a split file)"
    else:
        wanted = seeded_split(list(by_stem), split, seed, test_fraction)
        how = resplit_note(split, len(by_stem), len(wanted), seed, test_fraction)

    records, seen = [], set()
    for stem in wanted:
        im = by_stem[stem]
        fname = im["file_name"]
        n_outside = report.counts[OUTSIDE]
        path = roots.inside(img_dir, fname, report)
        if path is None and report.counts[OUTSIDE] == n_outside and img_dir != json_path.parent:
            path = roots.inside(json_path.parent, fname, report)
        if path is None:
            if report.counts[OUTSIDE] == n_outside:
                report.add("annotation whose image is missing (skipped)", fname)
            continue
        size = probe_image(path, report, fname, exif_transpose)
        if size is None:
            continue
        boxes, labels, crowd = [], [], []
        for a in by_image.get(im["id"], []):
            bbox, cid = a.get("bbox"), a.get("category_id")
            if not _is_id(cid) or cid not in cat_name:
                report.add("annotation with an unknown category_id (skipped)", f"{fname}: {cid!r}"[:120])
                continue
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_number(v) for v in bbox)):
                report.add("annotation without a bbox of 4 finite numbers (skipped)", f"{fname}: {bbox!r}"[:120])
                continue
            x, y, w, h = (float(v) for v in bbox)
            if w <= 0 or h <= 0:  # not an object (turning it into a 2-pixel box would count it)
                report.add("COCO bbox with zero or negative width or height (skipped)", f"{fname}: {bbox!r}"[:120])
                continue
            boxes.append([x, y, x + w - 1, y + h - 1])  # continuous → inclusive pixels
            labels.append(cat_name[cid])
            c = a.get("iscrowd", 0)
            if c not in (0, 1, True, False, None):
                report.add("unreadable iscrowd value (read as 0)", f"{fname}: {c!r}"[:80])
                c = 0
            crowd.append(bool(c))
        image_id = safe_image_id(stem, report)
        if image_id in seen:
            report.add("duplicate image id (first kept)", image_id)
            continue
        seen.add(image_id)
        b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        keep = repair_boxes(b, size[0], size[1], min_box_size, report, stem)
        records.append(ImageRecord(image_id, path, b[keep], [lab for lab, k in zip(labels, keep) if k],
                                   np.array(crowd, dtype=bool)[keep] if crowd else np.zeros(0, bool),
                                   size[0], size[1], coco_id=im["id"] if isinstance(im.get("id"), int) else None,
                                   exif_transpose=exif_transpose))
    if classes is None:
        ids = list(cat_name)
        if all(isinstance(i, int) for i in ids):
            ids.sort()
        classes = list(dict.fromkeys(cat_name[i] for i in ids))
    classes, records = finish_classes(records, classes, report)
    id_of_name: dict[str, int] = {}
    for cid in sorted(cat_name, key=lambda i: (not isinstance(i, int), str(i) if not isinstance(i, int) else i)):
        if isinstance(cid, int):
            id_of_name.setdefault(cat_name[cid], cid)
    return DetectionDataset(json_path.stem, classes, records, report,
                            category_ids={c: id_of_name[c] for c in classes if c in id_of_name},
                            source=f"{json_path} ({how})")


def load_coco_export(root: Path, split: str, classes: list[str] | None, min_box_size: float = 1.0,
                     exif_transpose: bool = False) -> DetectionDataset:
    """An export root: one COCO file per split folder (:func:`export_split_files`). ``split``:
    train, val (valid), test, trainval (train + val), all, or a list file of image names."""
    files = export_split_files(root)
    want = canonical_split(split) or split
    listed = read_list_file(Path(split)) if Path(split).is_file() else None
    if listed is not None or want == "all":
        parts = list(files)
    elif want == "trainval":
        parts = [s for s in ("train", "val") if s in files]
    else:
        parts = [want] if want in files else []
    if not parts:
        names = {"val": "valid"}.get
        raise UserError(f"split {split!r} not in {root}: it has {', '.join(names(s, s) for s in files)} "
                        "(or use --split all, or a list file)")
    loaded = [load_coco(files[s], "all", classes, min_box_size=min_box_size, exif_transpose=exif_transpose)
              for s in parts]
    report = LoadReport()
    names_all: list[str] = []
    records, seen, cat_ids = [], set(), {}
    for ds in loaded:
        report.counts.update(ds.report.counts)
        report.unlisted.update(ds.report.unlisted)
        for k, v in ds.report.examples.items():
            report.examples.setdefault(k, v)
        names_all += [c for c in ds.classes if c not in names_all]
        for c, i in (ds.category_ids or {}).items():
            cat_ids.setdefault(c, i)
        for r in ds.records:
            if listed is not None and r.image_id not in listed:
                continue
            if r.image_id in seen:
                report.add("duplicate image id (first kept)", r.image_id)
                continue
            seen.add(r.image_id)
            records.append(r)
    source = "; ".join(ds.source for ds in loaded)
    if listed is not None:
        source = f"the images listed in {split} of: {source}"
    return DetectionDataset(root.name, list(classes) if classes is not None else names_all, records, report,
                            category_ids={c: cat_ids[c] for c in (classes or names_all) if c in cat_ids},
                            source=source)
