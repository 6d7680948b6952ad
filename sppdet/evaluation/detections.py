"""Reading a ``detections.json`` strictly, and matching its rows to a split's images."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UserError


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_detections(path: str | Path) -> list[dict]:
    """A list of ``{"image": str, "label": str, "score": number, "bbox": [4 numbers]}``; any
    other shape, or a non-finite number, is a :class:`UserError` naming the entry."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        dets = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(dets, list):
        raise UserError(f"{path} must hold a JSON list of detections")
    for i, d in enumerate(dets):
        if not (isinstance(d, dict) and {"image", "label", "score", "bbox"} <= d.keys()):
            raise UserError(f"{path}: entry {i} is not {{'image', 'label', 'score', 'bbox': [x1, y1, x2, y2]}}")
        if not isinstance(d["image"], str) or not isinstance(d["label"], str):
            raise UserError(f"{path}: entry {i}: 'image' and 'label' must be strings")
        if not _number(d["score"]):
            raise UserError(f"{path}: entry {i}: 'score' must be a finite number, got {d['score']!r}")
        b = d["bbox"]
        if not (isinstance(b, list) and len(b) == 4 and all(_number(v) for v in b)):
            raise UserError(f"{path}: entry {i}: 'bbox' must be 4 finite numbers [x1, y1, x2, y2], got {b!r}")
    return dets


def match_to_records(dets: list[dict], records) -> tuple[list[dict], int]:
    """The detections whose image is one of ``records`` (by file name, path or id), and the
    number of the others; linear in both."""
    known = {r.path.name for r in records} | {r.image_id for r in records} | {str(r.path) for r in records}
    kept = [d for d in dets if d["image"] in known or Path(d["image"]).name in known
            or Path(d["image"]).stem in known]
    return kept, len(dets) - len(kept)
