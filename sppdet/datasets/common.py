"""Records shared by every reader, box repairs, the load report, and format detection.

Boxes are float ``(x1, y1, x2, y2)`` in 0-based inclusive pixels: VOC's 1-based files are
shifted by one on reading, and shifted back when results are written for the devkit.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..boxes import clip, min_size_mask
from ..errors import UserError
from ..images import ImageReadError, ImageTooLargeError, header_size, read_image

log = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    image_id: str
    path: Path
    boxes: np.ndarray  # [N, 4] float64, 0-based inclusive pixels
    labels: list[str]
    difficult: np.ndarray  # [N] bool
    width: int
    height: int
    # Objects exactly as the annotation file has them, for evaluation: (class, [x1, y1, x2, y2]
    # 1-based, unrepaired), difficult). The devkit scores against these, not the repaired boxes.
    raw_objects: list[tuple[str, list[float], bool]] | None = None
    # The image's id in the COCO file it came from, so results can be written with that id.
    coco_id: int | None = None
    # Whether the image's EXIF orientation applies (``data.exif_transpose``); width/height
    # and boxes are in the pixels :meth:`read` returns.
    exif_transpose: bool = False

    def read(self) -> np.ndarray:
        """The image as ``[H, W, 3]`` RGB uint8, oriented as the record's boxes are."""
        return read_image(self.path, exif_transpose=self.exif_transpose)

    def eval_objects(self) -> list[tuple[str, list[float], bool]]:
        if self.raw_objects is not None:
            return self.raw_objects
        return [(lab, [float(v) + 1.0 for v in box], bool(d))
                for lab, box, d in zip(self.labels, self.boxes, self.difficult)]


@dataclass
class LoadReport:
    """What the readers repaired or skipped, so a user sees it once, in one summary."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    # objects skipped because their class is not in the class list, per class name
    unlisted: Counter = field(default_factory=Counter)

    def add(self, what: str, example: str) -> None:
        self.counts[what] += 1
        self.examples.setdefault(what, example)

    def summary(self) -> str:
        if not self.counts:
            return ""
        lines = ["data problems found (repaired or skipped):"]
        for what, n in sorted(self.counts.items()):
            lines.append(f"  {n:6d} × {what} (e.g. {self.examples[what]})")
        return "\n".join(lines)


@dataclass
class DetectionDataset:
    name: str
    classes: list[str]
    records: list[ImageRecord]
    report: LoadReport = field(default_factory=LoadReport)
    is_voc2007: bool = False  # the VOC07 11-point metric is the default either way
    # class name → the COCO file's category id (COCO-sourced sets only), for COCO results files
    category_ids: dict[str, int] | None = None
    # which images these are, in words: the files or folders read and how the split was made
    source: str = ""

    def __len__(self) -> int:
        return len(self.records)


def probe_image(path: Path, report: LoadReport, where: str, exif_transpose: bool = False) -> tuple[int, int] | None:
    """The image's size, or None with a report entry when it is unreadable or above the
    pixel limit (so a long run never meets it later)."""
    try:
        return header_size(path, exif_transpose)
    except ImageTooLargeError as exc:
        report.add("image above the pixel limit (skipped)", str(exc))
    except ImageReadError:
        report.add("file that is not a readable image (skipped)", where)
    return None


OUTSIDE = "image path outside the data folder (skipped)"


class DataRoots:
    """The folders a data set may read images from. Every path a file names (an XML
    ``<filename>``, a COCO ``file_name``, a list-file entry) goes through :meth:`inside`:
    absolute names and ``..`` are never opened, so an annotation file cannot make sppdet read
    (or reveal the size of) files elsewhere. Symbolic links that the data's owner placed in
    these folders are followed: linking images from a shared pool is a common layout, and a
    link is the owner's choice, not the annotation's."""

    def __init__(self, *roots: Path):
        self.roots = [Path(os.path.abspath(r)) for r in roots]

    def contains(self, path: Path) -> bool:
        """Whether ``path`` lies lexically in a root (links are not resolved)."""
        try:
            p = Path(os.path.abspath(path))
        except (OSError, ValueError):  # NUL bytes
            return False
        return any(p == r or p.is_relative_to(r) for r in self.roots)

    def inside(self, base: Path, name: str, report: LoadReport | None = None) -> Path | None:
        """``base / name`` if it names a file inside the roots; None (counted when it leads
        outside) otherwise."""
        if not name:
            return None
        try:
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts or "\x00" in name:
                raise ValueError
            cand = base / rel
            if not cand.is_file():
                return None
        except (ValueError, OSError):
            if report is not None:
                report.add(OUTSIDE, name)
            return None
        if not self.contains(cand):
            if report is not None:
                report.add(OUTSIDE, name)
            return None
        return cand


_SPACE = re.compile(r"\s+")


def safe_image_id(stem: str, report: LoadReport | None = None) -> str:
    """The image id used in records, comp4 files and cache names: the file stem with each run
    of whitespace replaced by ``_`` (comp4 lines are ``id score x1 y1 x2 y2``, split on spaces).
    The image's file name is kept as it is."""
    safe = _SPACE.sub("_", stem.strip()) if _SPACE.search(stem) else stem
    if safe != stem and report is not None:
        report.add("image id with whitespace (spaces replaced by _ in its id)", stem)
    return safe


def repair_boxes(boxes: np.ndarray, width: int, height: int, min_size: float,
                 report: LoadReport, where: str) -> np.ndarray:
    """Swap inverted corners, clip to the image, and mark boxes that end up too small.

    Returns a keep-mask; ``boxes`` is repaired in place.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        report.add("inverted box (corners swapped)", where)
        boxes[:, [0, 2]] = np.sort(boxes[:, [0, 2]], axis=1)
        boxes[:, [1, 3]] = np.sort(boxes[:, [1, 3]], axis=1)
    # wholly outside: clipping would leave a sliver on the border counted as an object
    outside = (boxes[:, 0] > width - 1) | (boxes[:, 1] > height - 1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if outside.any():
        report.add("box wholly outside the image (dropped)", where)
    clipped = clip(boxes, width, height)
    if (clipped[~outside] != boxes[~outside]).any():
        report.add("box extends past the image (clipped)", where)
    boxes[:] = clipped
    keep = min_size_mask(boxes, min_size)
    if (~keep & ~outside).any():
        report.add("zero-area or tiny box (dropped)", where)
    return keep & ~outside


def read_list_file(path: Path, report: LoadReport | None = None) -> list[str]:
    """Image names from a list file: one per line (first token), or a CSV's ``filename``
    column, as file stems. Repeated ids are kept once (a CSV has one row per object, so
    repeats are expected there); absolute names or names climbing with ``..`` are skipped
    and counted (the image is looked up by its stem inside the data folder only)."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines()  # BOM; raw bytes as the OS names them
    except OSError as exc:
        raise UserError(f"cannot read split file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".csv":
        import csv

        try:
            rows = list(csv.DictReader(text))
        except csv.Error as exc:
            raise UserError(f"{path}: not a readable CSV ({exc})") from None
        if not rows or "filename" not in rows[0]:
            raise UserError(f"{path}: a CSV split file needs a 'filename' column")
        names = [(r["filename"] or "").strip() for r in rows]
    else:
        names = [ln.split()[0] for ln in text if ln.strip() and not ln.lstrip().startswith("#")]
    seen, ids = set(), []
    for n in names:
        if not n:
            continue
        p = Path(n)
        if p.is_absolute() or ".." in p.parts or "\x00" in n:
            if report is not None:
                report.add(OUTSIDE, n)
            continue
        stem = p.stem
        if stem not in seen:
            seen.add(stem)
            ids.append(stem)
        elif report is not None and path.suffix.lower() != ".csv":
            report.add("duplicate image id in the split file (kept once)", stem)
    return ids


MISSING_IN_SPLIT = "image id in the split without an annotation file (skipped)"


SEEDED_SPLITS = ("all", "train", "trainval", "val", "test")


def is_list_file(split: str, names: Sequence[str] = SEEDED_SPLITS) -> bool:
    """Whether ``split`` names a list file rather than a split of the data set. A split name the
    data set knows (``names``) wins over a stray file of that name in the working folder."""
    return split not in names and Path(split).is_file()


def select_split(ids, split: str, seed: int, test_fraction: float, report: LoadReport) -> list[str]:
    """The ids of ``split`` among ``ids`` (a layout without split files): the ids a list file
    names (those not in ``ids`` counted as missing), or a seeded split."""
    if is_list_file(split):
        known = set(ids)
        listed = read_list_file(Path(split), report)
        for i in listed:
            if i not in known:
                report.add(MISSING_IN_SPLIT, i)
        return [i for i in listed if i in known]
    return seeded_split(list(ids), split, seed, test_fraction)


# Split names as exports spell them, by the name sppdet uses.
SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


def canonical_split(name: str) -> str | None:
    """``train``, ``val`` or ``test`` for a split name in any of its spellings, else None."""
    n = name.lower()
    return next((s for s, aliases in SPLIT_ALIASES.items() if n in aliases), None)


def resplit_note(split: str, n_all: int, n: int, seed: int, test_fraction: float) -> str:
    part = "test/val" if split in ("test", "val") else "train"
    return (f"re-split: the seeded {part} part ({n} of {n_all} images; data.test_fraction={test_fraction:g}, "
            f"data.split_seed={seed}; --split all uses every image)")


def seeded_split(ids: list[str], split: str, seed: int, test_fraction: float) -> list[str]:
    """Deterministic split of a folder with no split files: 'train'/'trainval' vs 'test'/'val'."""
    ids = sorted(ids)
    if split == "all":
        return ids
    split = {"valid": "val", "validation": "val"}.get(split, split)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_test = int(round(len(ids) * test_fraction))
    test = {ids[i] for i in order[:n_test]}
    if split in ("test", "val"):
        return [i for i in ids if i in test]
    if split in ("train", "trainval"):
        return [i for i in ids if i not in test]
    raise UserError(f"unknown split {split!r}: use train, trainval, val, test, all, or a list file")


def finish_classes(records: list[ImageRecord], classes: list[str] | None,
                   report: LoadReport) -> tuple[list[str], list[ImageRecord]]:
    """Use the given class list (dropping unknown names) or collect names from the data."""
    if classes is None:
        return sorted({lab for r in records for lab in r.labels}), records
    known = set(classes)
    for r in records:
        keep = np.array([lab in known for lab in r.labels], dtype=bool)
        if (~keep).any():
            for lab in set(np.asarray(r.labels, dtype=object)[~keep]):
                report.add(f"unknown class {lab!r} (object skipped)", r.image_id)
            report.unlisted.update(lab for lab, k in zip(r.labels, keep) if not k)
            r.boxes = r.boxes[keep]
            r.difficult = r.difficult[keep]
            r.labels = [lab for lab, k in zip(r.labels, keep) if k]
    return list(classes), records
