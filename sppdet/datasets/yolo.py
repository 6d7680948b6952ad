"""YOLO (Ultralytics / Darknet) layouts: ``data.yaml`` with split entries, or ``images/`` +
``labels/`` folders, one ``class cx cy w h`` line per object, normalised to [0, 1].

Where a label file is: the image path with its last ``/images/`` component replaced by
``/labels/`` and its extension by ``.txt`` (Ultralytics' ``img2label_paths``); an image whose
label file is missing or empty is a background image (valid, no objects).

Boxes follow the COCO reader's convention: a continuous box ``[left, right)`` covers the
inclusive pixels ``left .. right - 1``, so ``x1 = (cx - w/2)·W`` and ``x2 = (cx + w/2)·W - 1``.
A VOC box ``xmin..xmax`` (1-based) written as YOLO with ``cx = (xmin - 1 + xmax) / 2W``,
``w = (xmax - xmin + 1) / W`` reads back exactly. Images are measured, and their pixels read,
after their EXIF orientation, as Ultralytics does (``data.exif_transpose: false`` turns it off).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..boxes import min_size_mask
from ..errors import UserError
from ..images import is_image_file
from .common import (OUTSIDE, DataRoots, DetectionDataset, ImageRecord, LoadReport, finish_classes, probe_image,
                     SEEDED_SPLITS, is_list_file, read_list_file, repair_boxes, resplit_note, safe_image_id,
                     seeded_split)

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
CLASS_FILES = ("classes.txt", "obj.names", "classes.names")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train",), "test": ("test",)}
# A coordinate this far above 1 means the file holds pixels, not normalised values.
NOT_NORMALISED = 2.0


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` → ``/labels/``, the extension → ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def find_yaml(p: Path) -> Path | None:
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return p
    if p.is_dir():
        return next((p / n for n in YAML_NAMES if (p / n).is_file()), None)
    return None


def _has_txt_labels(d: Path) -> bool:
    return d.is_dir() and next(d.rglob("*.txt"), None) is not None


def is_yolo_dir(p: Path) -> bool:
    """A folder with a data.yaml, or with ``labels/`` (or ``<split>/labels/``) holding .txt files
    beside its images."""
    if not p.is_dir():
        return False
    if find_yaml(p) is not None:
        return True
    if _has_txt_labels(p / "labels") and (p / "images").is_dir():
        return True
    return any(_has_txt_labels(p / s / "labels") and (p / s / "images").is_dir()
               for a in SPLIT_ALIASES.values() for s in a)


def _images_in(folder: Path) -> list[Path]:
    return sorted(q for q in folder.rglob("*") if q.is_file() and is_image_file(q))


def _resolve(entry: str, bases: list[Path], report: LoadReport | None = None) -> Path | None:
    """A path from data.yaml or a list file, tried against each base folder in turn. Roboflow's
    exports write ``../train/images`` relative to the dataset root; that is tried too. An absolute
    path that does not exist here (written on another machine) is re-rooted: the longest tail of
    it that exists under a base folder (``/home/them/ds/valid/images`` → ``ROOT/valid/images``)."""
    p = Path(entry).expanduser()
    if p.is_absolute():
        if p.exists():
            return p
        tails = [Path(*p.parts[i:]) for i in range(1, len(p.parts))]
        for tail in tails:
            for b in bases:
                if (b / tail).exists():
                    if report is not None:
                        report.add("absolute path of another machine (re-rooted in the data folder)",
                                   f"{entry} → {b / tail}")
                    return (b / tail).resolve()
        return None
    for b in bases:
        if (b / p).exists():
            return (b / p).resolve()
    if entry.startswith("../"):
        return _resolve(entry[3:], bases)
    return None


def _images_of_entry(entry, bases: list[Path], what: str, report: LoadReport) -> list[Path]:
    """Images of a data.yaml split entry: a folder, a .txt list of image paths, or a list of those."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        p = _resolve(str(e), bases, report)
        if p is None:
            raise UserError(f"{what}: {e!r} not found (looked in {', '.join(str(b) for b in bases)})")
        if p.is_dir():
            out += _images_in(p)
        else:
            out += _images_of_list(p, bases, report)
    return out


def _images_of_list(lst: Path, bases: list[Path], report: LoadReport) -> list[Path]:
    """A YOLO image list: one image per line, a path relative to the list's folder or the root,
    or just a file name (or stem) found anywhere under them. Like every reader's file-named
    paths, an entry must lie in the data set's folders (absolute entries there, as Darknet
    writes them, are fine); others are skipped, counted."""
    roots = DataRoots(lst.parent, *bases)
    index: dict[str, Path] = {}

    def by_name(name: str) -> Path | None:
        if not index:
            for b in dict.fromkeys([lst.parent, *bases]):
                for q in _images_in(b):
                    index.setdefault(q.name, q)
                    index.setdefault(q.stem, q)
        return index.get(name)

    out = []
    for line in lst.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cands = [Path(line)] if Path(line).is_absolute() else [lst.parent / line, *(b / line for b in bases)]
        if "\x00" in line or not any(roots.contains(c) for c in cands):
            report.add(OUTSIDE, line)
            continue
        p = _resolve(line, [lst.parent, *bases])
        if (p is None or not p.is_file()) and len(Path(line).parts) == 1:
            p = by_name(line)
        if p is None or not p.is_file():
            report.add("image in a list file that does not exist (skipped)", line)
            continue
        out.append(p)
    return out


def _names(data: dict, where: Path) -> dict[int, str] | None:
    """Class names by id. An ``{id: name}`` mapping may skip ids (``{0: cat, 2: dog}``): no
    class is invented for a gap, and a label with an id that has no name is counted."""
    names = data.get("names")
    if names is None:
        nc = data.get("nc")
        if nc is None:
            return None
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
            raise UserError(f"{where}: nc must be a positive whole number of classes, got {nc!r}")
        return {i: str(i) for i in range(nc)}
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise UserError(f"{where}: 'names' keys must be class ids (0, 1, ...)") from None
        return dict(sorted(by_id.items()))
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    raise UserError(f"{where}: 'names' must be a list or an {{id: name}} mapping")


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError) as exc:
        raise UserError(f"{path} is not a readable YAML file: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with 'train'/'val'/'names' keys")
    return data


def _class_file(root: Path) -> dict[int, str] | None:
    for d in (root, root / "labels", root / "images"):
        for n in CLASS_FILES:
            if (d / n).is_file():
                return dict(enumerate(ln.strip() for ln in (d / n).read_text(
                    encoding="utf-8-sig", errors="surrogateescape").splitlines() if ln.strip()))
    return None


def parse_label_file(path: Path, width: int, height: int, n_classes: int | set[int] | None, report: LoadReport,
                     where: str) -> tuple[np.ndarray, list[int]]:
    """Pixel boxes ``[N, 4]`` (0-based inclusive, unrepaired) and class ids of one label file.
    Polygon (segmentation) lines become their bounding box; bad lines are skipped, counted."""
    boxes, ids = [], []
    try:
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        report.add("unreadable label file (image kept without objects)", f"{path.name}: {exc}")
        return np.zeros((0, 4)), []
    for ln in text.splitlines():
        tok = ln.split()
        if not tok:
            continue
        try:
            vals = [float(t) for t in tok]
        except ValueError:
            report.add("malformed label line (skipped)", f"{path.name}: {ln.strip()[:60]}")
            continue
        if not all(math.isfinite(v) for v in vals):
            report.add("non-finite value in a label line (skipped)", f"{path.name}: {ln.strip()[:60]}")
            continue
        c = vals[0]
        if c != int(c) or c < 0 or (n_classes is not None and (
                int(c) not in n_classes if isinstance(n_classes, set) else c >= n_classes)):
            report.add("class id out of range (object skipped)", f"{path.name}: {tok[0]}")
            continue
        coords = vals[1:]
        if len(coords) == 4:
            cx, cy, w, h = coords
            left, right, top, bottom = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            xs, ys = coords[0::2], coords[1::2]
            left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
            report.add("segmentation polygon (its bounding box used)", path.name)
        else:
            report.add("malformed label line (skipped)", f"{path.name}: {len(tok)} values")
            continue
        if max(abs(v) for v in coords) > NOT_NORMALISED:
            report.add("coordinates not normalised to [0, 1] (object skipped)", f"{path.name}: {ln.strip()[:60]}")
            continue
        if right <= left or bottom <= top:
            report.add("zero-area or tiny box (dropped)", where)
            continue
        boxes.append([left * width, top * height, right * width - 1, bottom * height - 1])
        ids.append(int(c))
    # Rounded to a thousandth of a pixel: finer is noise of the normalised text (6–8 decimals),
    # and integral boxes written by VOC tools then read back exactly, so a converted set
    # trains to the same model as its original.
    return np.round(np.array(boxes, dtype=np.float64).reshape(-1, 4), 3), ids


def _record(image: Path, image_id: str, names: dict[int, str] | None, report: LoadReport,
            min_box_size: float, exif_transpose: bool) -> ImageRecord | None:
    size = probe_image(image, report, image.name, exif_transpose)
    if size is None:
        return None
    lab = label_path(image)
    if lab.is_file():
        boxes, ids = parse_label_file(lab, size[0], size[1], None if names is None else set(names),
                                      report, image_id)
    else:
        report.add("image without a label file (kept as background)", image.name)
        boxes, ids = np.zeros((0, 4)), []
    # boxes under a pixel wide would turn inverted after the -1: drop them before the repairs
    wide = min_size_mask(boxes, min_box_size)
    if (~wide).any():
        report.add("zero-area or tiny box (dropped)", image_id)
    boxes, ids = boxes[wide], [i for i, k in zip(ids, wide) if k]
    keep = repair_boxes(boxes, size[0], size[1], min_box_size, report, image_id)
    labels = [names[i] if names is not None else str(i) for i, k in zip(ids, keep) if k]
    return ImageRecord(safe_image_id(image_id, report), image, boxes[keep], labels, np.zeros(len(labels), dtype=bool),
                       size[0], size[1], exif_transpose=exif_transpose)


def _split_images(root: Path, yaml_path: Path | None, data: dict, split: str, seed: int,
                  test_fraction: float, report: LoadReport, how: dict | None = None) -> list[Path]:
    """The images of ``split``: data.yaml entries, ``images/<split>/`` folders, a list file, or a
    seeded split of a layout without splits (``how["text"]`` says which, in words)."""
    how = {} if how is None else how
    base = root
    if yaml_path is not None and data.get("path"):
        # a 'path' of another machine, or one that is not there: the yaml's own folder
        base = _resolve(str(data["path"]), [yaml_path.parent, Path.cwd()]) or yaml_path.parent
        if not base.is_dir():
            base = yaml_path.parent
    bases = [base] + ([yaml_path.parent] if yaml_path is not None and yaml_path.parent != base else [])
    where = str(yaml_path or root)
    # split name → its images, from data.yaml or from folders
    entries: dict[str, object] = {s: data[s] for s in SPLITS if data.get(s)}
    if not entries and yaml_path is None:
        for s, aliases in SPLIT_ALIASES.items():
            for a in aliases:
                for cand in (root / "images" / a, root / a / "images"):
                    if cand.is_dir() and s not in entries:
                        entries[s] = str(cand)
    def everything() -> list[Path]:
        if not entries:  # no splits: every image under images/ (or the root)
            return _images_in(root / "images" if (root / "images").is_dir() else root)
        found = set()
        for s, e in entries.items():
            try:
                found.update(_images_of_entry(e, bases, where, report))
            except UserError as exc:  # e.g. a test entry that was never downloaded
                report.add("split entry not found (skipped)", str(exc))
        return sorted(found)

    if is_list_file(split, [*SEEDED_SPLITS, *entries]):
        lst = Path(split)
        how["text"] = f"the images listed in {lst}"
        if lst.suffix.lower() == ".txt" and any("/" in ln or is_image_file(ln.strip())
                                                for ln in lst.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines()[:20]):
            return _images_of_list(lst, [lst.parent, *bases], report)
        by_stem: dict[str, Path] = {}
        for p in everything():
            by_stem.setdefault(p.stem, p)
        wanted = read_list_file(lst, report)
        missing = [i for i in wanted if i not in by_stem]
        for i in missing:
            report.add("image id in the split without an image (skipped)", i)
        return [by_stem[i] for i in wanted if i in by_stem]
    if split == "all":
        how["text"] = "every image"
        return everything()
    split = {"valid": "val", "validation": "val"}.get(split, split)
    if entries:
        if split == "trainval" and ("train" in entries or "val" in entries):
            how["text"] = "splits " + " + ".join(f"{s}: {entries[s]}" for s in ("train", "val") if s in entries)
            return [p for s in ("train", "val") if s in entries
                    for p in _images_of_entry(entries[s], bases, where, report)]
        if split not in entries:
            raise UserError(f"split {split!r} not in {where}; available splits: "
                            f"{', '.join(entries)} (or use --split all, or a list file)")
        how["text"] = f"split {split}: {entries[split]}"
        return _images_of_entry(entries[split], bases, where, report)
    by_stem = {}
    for p in everything():
        by_stem.setdefault(p.stem, p)
    ids = seeded_split(list(by_stem), split, seed, test_fraction)
    how["text"] = resplit_note(split, len(by_stem), len(ids), seed, test_fraction)
    return [by_stem[i] for i in ids]


def load_yolo(path: Path, split: str, classes: list[str] | None, seed: int = 0,
              test_fraction: float = 0.2, min_box_size: float = 1.0, exif_transpose: bool = True) -> DetectionDataset:
    """Read a YOLO data set from its folder or its data.yaml. Ultralytics measures and labels
    images after their EXIF orientation, hence ``exif_transpose=True`` by default here."""
    report = LoadReport()
    yaml_path = find_yaml(path)
    root = yaml_path.parent if yaml_path is not None else path
    data = _read_yaml(yaml_path) if yaml_path is not None else {}
    names = _names(data, yaml_path) if yaml_path is not None else None
    if names is None:
        names = _class_file(root)
    how: dict = {}
    images = _split_images(root, yaml_path, data, split, seed, test_fraction, report, how)
    records, seen = [], set()
    for img in images:
        if img.stem in seen:
            report.add("duplicate image id (first file kept)", str(img))
            continue
        seen.add(img.stem)
        rec = _record(img, img.stem, names, report, min_box_size, exif_transpose)
        if rec is not None:
            records.append(rec)
    if names is None:
        # no class names anywhere: the ids themselves, in numeric order
        names = {int(lab): lab for lab in sorted({lab for r in records for lab in r.labels}, key=int)}
    classes, records = finish_classes(records, classes if classes is not None else list(names.values()), report)
    return DetectionDataset(root.name, classes, records, report,
                            source=f"{yaml_path or root} ({how.get('text', f'split {split}')})")
