"""Records shared by every reader, box repairs, the load report, and format detection.

Boxes are float ``(x1, y1, x2, y2)`` in 0-based inclusive pixels: VOC's 1-based files are
shifted by one on reading, and shifted back when results are written for the devkit.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

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

    def __len__(self) -> int:
        return len(self.records)

    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header, or None when it is not a readable image."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - any decoder failure: not an image
        return None


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
    clipped = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
    if (clipped != boxes).any():
        report.add("box extends past the image (clipped)", where)
    boxes[:] = clipped
    keep = ((boxes[:, 2] - boxes[:, 0] + 1) >= min_size) & ((boxes[:, 3] - boxes[:, 1] + 1) >= min_size)
    if (~keep).any():
        report.add("zero-area or tiny box (dropped)", where)
    return keep


def read_list_file(path: Path, report: LoadReport | None = None) -> list[str]:
    """Image ids from a list file: one per line (first token), or a CSV's ``filename`` column.
    Repeated ids are kept once (a CSV has one row per object, so repeats are expected there)."""
    text = path.read_text(errors="replace").splitlines()
    if path.suffix.lower() == ".csv":
        import csv

        rows = list(csv.DictReader(text))
        if not rows or "filename" not in rows[0]:
            raise UserError(f"{path}: a CSV split file needs a 'filename' column")
        names = [r["filename"] for r in rows]
    else:
        names = [ln.split()[0] for ln in text if ln.strip() and not ln.startswith("#")]
    seen, ids = set(), []
    for n in names:
        stem = Path(n).stem
        if stem not in seen:
            seen.add(stem)
            ids.append(stem)
        elif report is not None and path.suffix.lower() != ".csv":
            report.add("duplicate image id in the split file (kept once)", stem)
    return ids


def seeded_split(ids: list[str], split: str, seed: int, test_fraction: float) -> list[str]:
    """Deterministic split of a folder with no split files: 'train'/'trainval' vs 'test'/'val'."""
    ids = sorted(ids)
    if split == "all":
        return ids
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
            r.boxes = r.boxes[keep]
            r.difficult = r.difficult[keep]
            r.labels = [lab for lab, k in zip(r.labels, keep) if k]
    return list(classes), records
