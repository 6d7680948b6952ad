"""Reading a ``detections.json`` strictly, and matching its entries to a split's records.

A detections file may come from anywhere (another tool, a hand edit), so every entry is
checked before it reaches the metric: a NaN score or box would otherwise sort or match
silently wrong.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_detection(d: Any, where: str) -> dict:
    """One entry ``{"image": str, "label": str, "score": finite number, "bbox": 4 finite
    numbers}`` (other keys are kept); :class:`UserError` naming ``where`` and the problem."""
    if not isinstance(d, dict):
        raise UserError(f"{where} is a {type(d).__name__}, not an object with image, label, score, bbox")
    missing = [k for k in ("image", "label", "score", "bbox") if k not in d]
    if missing:
        raise UserError(f"{where} has no {', '.join(missing)}")
    if not isinstance(d["image"], str) or not d["image"].strip():
        raise UserError(f"{where}: image must be a non-empty string (the image's file name), got {d['image']!r}")
    if not isinstance(d["label"], str) or not d["label"]:
        raise UserError(f"{where}: label must be a non-empty string (a class name), got {d['label']!r}")
    if not _number(d["score"]):
        raise UserError(f"{where}: score must be a finite number, got {d['score']!r}")
    b = d["bbox"]
    if not (isinstance(b, list) and len(b) == 4 and all(_number(v) for v in b)):
        raise UserError(f"{where}: bbox must be 4 finite numbers [x1, y1, x2, y2], got {b!r}"[:300])
    return {**d, "score": float(d["score"]), "bbox": [float(v) for v in b]}


def read_detections(path: str | Path) -> list[dict]:
    """Every entry of a ``detections.json`` (a JSON list), checked by :func:`check_detection`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"detections file not found: {p}")
    try:
        # NaN/Infinity are not JSON; Python's reader accepts them, so refuse them here
        data = json.loads(p.read_text(encoding="utf-8-sig"), parse_constant=_refuse_constant)  # a BOM (Notepad) is no error
    except UnicodeDecodeError as exc:
        raise UserError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{p} is not valid JSON ({exc})") from None
    except _NonFinite as exc:
        raise UserError(f"{p} is not valid JSON: it contains {exc.args[0]}, which is not a number") from None
    except (OSError, RecursionError) as exc:
        raise UserError(f"cannot read {p}: {exc}") from None
    if not isinstance(data, list):
        raise UserError(f"{p} must hold a JSON list of detections, got a {type(data).__name__}")
    return [check_detection(d, f"{p}: entry {i}") for i, d in enumerate(data)]


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def record_index(records: Sequence) -> dict[str, str]:
    """Every name a detection may give its image by → the record's ``image_id``: the id, the
    file name, and the path as the record holds it. The first record wins a shared name."""
    index: dict[str, str] = {}
    for r in records:
        for key in (r.image_id, r.path.name, str(r.path), r.path.as_posix()):
            index.setdefault(key, r.image_id)
    return index


def image_id_of(index: dict[str, str], image: str) -> str | None:
    """The record id a detection's ``image`` names (as given, or by its file name: a
    detection may carry a relative path such as ``JPEGImages/x.jpg``), or None."""
    hit = index.get(image)
    if hit is None:
        hit = index.get(Path(image).name)
    return hit


def match_to_records(dets: Sequence[dict], records: Sequence) -> tuple[list[dict], int]:
    """``(kept, n_stray)``: the detections whose image is one of ``records`` (by file name,
    path or id), in their order, and how many named another image. O(len(dets) + len(records))."""
    index = record_index(records)
    kept = [d for d in dets if image_id_of(index, d["image"]) is not None]
    return kept, len(dets) - len(kept)
