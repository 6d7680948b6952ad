"""``detect``'s journal, ``--out/detections.jsonl``: what lets an interrupted detect continue.

Line 1 is a header naming everything that changes a result (a digest of the model's weights,
the whole configuration after overrides, the EXIF setting); then one line per finished image,
keyed by a digest of the image file's content and recording what was painted. Nothing read
back is trusted: a foreign or unreadable header is refused (never reused), and an entry that
fails its schema, or whose image has changed since, is simply detected again.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import UserError
from .locking import check_plain_file

FORMAT = 2
log = logging.getLogger("sppdet")


def model_digest(det) -> str:
    """blake2b of everything a detector computes with: trunk weights id, classes, SVMs, fc head,
    box regressors, scales, the proposal network and the score calibration (an in-memory
    detector has no file to hash; this is the same). A detector on another engine names its own
    (``journal_digest``)."""
    if hasattr(det, "journal_digest"):
        return det.journal_digest()
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([det.extractor.trunk.weights_id, det.classes, det.feat_scale, det.pool5_scale]).encode())
    arrays = [det.svm_W, det.svm_b]
    if det.head is not None:
        arrays += [v for _, v in sorted(det.head.state_dict().items())]
    if det.bbox is not None:
        arrays += [det.bbox.W, det.bbox.b, det.bbox.trained]
    if getattr(det, "rpn", None) is not None:  # a proposal network proposes the windows
        h.update(det.rpn.digest().encode())
    if getattr(det, "platt", None) is not None:  # the scores are probabilities through these sigmoids
        # (a run before 0.4, without them, scores the same windows with its margins: other results)
        arrays.append(det.platt)
    for a in arrays:
        a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def content_key(path: Path) -> str:
    """Size and blake2b of the file's bytes; a file that cannot be read gets a key of its own
    that no later run matches (so it is tried again then)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            n = 0
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                n += len(block)
    except OSError:
        return f"unreadable-{os.urandom(8).hex()}"
    return f"{n}-{h.hexdigest()}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid_entry(e: Any, classes: set[str], min_score: float | Mapping[str, float], max_rows: int) -> bool:
    """The schema an entry must meet to count as a finished image: rows this detector could
    have given (known labels, finite boxes, scores above the threshold, per class when
    ``min_score`` is a dict, at most the cap); a video's entry holds a ``video`` dict."""
    if not (isinstance(e, dict) and isinstance(e.get("image"), str) and isinstance(e.get("key"), str)
            and isinstance(e.get("detections"), list) and isinstance(e.get("error"), (str, type(None)))
            and isinstance(e.get("painted"), (str, type(None)))):
        return False
    if (e["error"] is not None and e["detections"]) or len(e["detections"]) > max_rows:
        return False
    if not isinstance(e.get("video", {}), dict):
        return False
    least = min_score if isinstance(min_score, Mapping) else collections.defaultdict(lambda: min_score)
    for r in e["detections"]:
        if not (isinstance(r, dict) and r.get("image") == e["image"] and r.get("label") in classes
                and _number(r.get("score")) and r["score"] >= least[r["label"]]
                and isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4
                and all(_number(v) for v in r["bbox"])):
            return False
    return True


class DetectJournal:
    """Open (or start) the journal at ``path`` for a detect with ``identity``; see the module."""

    def __init__(self, path: Path, identity: dict, classes: list[str], overwrite: bool,
                 min_score: float | Mapping[str, float] = -math.inf, max_rows: int = 1 << 62):
        self.path = path
        check_plain_file(path, "--out")
        self.entries: dict[str, dict] = {}
        header = json.loads(json.dumps({"sppdet_detect": FORMAT, "settings": identity}))
        text = "" if overwrite or not path.exists() else path.read_text(encoding="utf-8", errors="surrogateescape")
        if text:
            self._read(text, header, lambda e: _valid_entry(e, set(classes), min_score, max_rows))
            self._f = open(path, "a", encoding="utf-8")
            if not text.endswith("\n"):  # a line torn by a kill or a full disk: end it, never append to it
                self._f.write("\n")
            return
        self._f = open(path, "w", encoding="utf-8")
        self._write(header)

    def _read(self, text: str, header: dict, valid) -> None:
        lines = text.splitlines()
        try:
            first = json.loads(lines[0])
        except ValueError:
            first = None
        if not isinstance(first, dict) or "sppdet_detect" not in first:
            raise UserError(f"{self.path} is not a detect journal sppdet can read (its first line is damaged "
                            "or foreign), so its results are not reused; pass --overwrite to start again "
                            "or use another --out")
        if first.get("sppdet_detect") != FORMAT:
            raise UserError(f"{self.path} was written by another sppdet version; pass --overwrite to detect "
                            "again or use another --out")
        if first != header:
            raise UserError(f"{self.path} holds results of another detect command (other model or settings); "
                            "use another --out, or --overwrite to start again")
        bad = 0
        for line in lines[1:]:
            try:
                e = json.loads(line)
            except ValueError:
                e = None
            if valid(e):
                self.entries[e["image"]] = e
            elif line.strip():
                bad += 1
        if bad:
            log.warning(f"{bad} damaged lines in {self.path} ignored; their images are detected again")

    def result(self, image: str, key: str) -> dict | None:
        """The entry of ``image`` if it was finished from the same file content, else None."""
        e = self.entries.get(image)
        return e if e is not None and e["key"] == key else None

    def _write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj) + "\n")
        self._f.flush()

    def add(self, image: str, key: str, rows: list[dict], error: str | None, painted: str | None = None,
            video: dict | None = None) -> None:
        """Record a finished input; a video's frames are in its own file, ``video`` says which
        and with what settings (its ``rows`` stay empty)."""
        e = {"image": image, "key": key, "detections": rows, "error": error, "painted": painted}
        if video is not None:
            e["video"] = video
        self._write(e)
        self.entries[image] = e

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # a full disk: the line being written is torn, which a resume ignores
            pass

