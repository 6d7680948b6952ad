"""Detection on video files, cameras and streams, frame by frame, through OpenCV.

Each detected frame becomes one JSON line, written and flushed before the next frame is read:
``{"frame": i, "time": seconds, "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
"labels": [class names], "margins": [...]}`` (boxes in 0-based inclusive pixels, as
``detections.json``). So an interruption, a full disk or a stream that drops leaves every line
before it valid. The annotated video (mp4v in an .mp4, which every OpenCV wheel can write) holds
the detected frames at the source's frame rate divided by ``every``, so it lasts as long as the
source; its writer is released in a ``finally``, so a video stopped by Ctrl-C is still playable.

``time`` is the frame index over the container's frame rate for files, and the seconds since the
first frame for cameras and URLs (their frame rate is often unknown or nominal).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import UserError
from .progress import progress

if TYPE_CHECKING:
    from .detector import Detector
    from .tiling import Tiling

log = logging.getLogger("sppdet")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".mjpeg", ".mjpg")
FOURCC = "mp4v"  # MPEG-4 Part 2: written by opencv-(contrib-)python(-headless) wheels everywhere; H.264 is not
Source = Union[str, int, Path]


class VideoReadError(UserError):
    """A video OpenCV cannot open, or of which it decodes no frame."""


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def parse_source(text: str) -> Source:
    """``--source``: a whole number is a camera index (``0``: the first camera), anything else
    a path, URL (``rtsp://…``, ``http://…/video.mjpg``) or device OpenCV opens as a stream."""
    text = str(text).strip()
    if not text:
        raise UserError("--source must be a camera index (0, 1, ...) or a path or URL OpenCV can open")
    return int(text) if text.isdigit() else text


def is_live(source: Source) -> bool:
    """A camera or a URL: no frame count, a nominal frame rate, times measured by the clock."""
    return isinstance(source, int) or "://" in str(source)


def source_name(source: Source) -> str:
    """A file-name-safe name for a stream's outputs: ``camera0``, ``rtsp_host_8554_live``."""
    import re

    if isinstance(source, int):
        return f"camera{source}"
    s = re.sub(r"^[a-z]+://", "", str(source)) if is_live(source) else Path(source).name
    return re.sub(r"[^A-Za-z0-9.-]+", "_", s).strip("_.")[:80] or "stream"


def open_capture(source: Source):
    """``cv2.VideoCapture`` on ``source``, opened, else :class:`VideoReadError` saying why."""
    import cv2

    # OpenCV's FFmpeg prints its own lines ("moov atom not found") on stderr; ours say the same
    # once, in words. Only a default: $OPENCV_FFMPEG_LOGLEVEL set by the user is kept.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if isinstance(source, (str, Path)) and not is_live(source):
        p = Path(source)
        if not p.exists():
            raise VideoReadError(f"{p}: not found")
        if p.is_dir():
            raise VideoReadError(f"{p}: a folder, not a video")
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        if isinstance(source, int):
            raise VideoReadError(f"camera {source}: OpenCV cannot open it (no such camera, or it is in use)")
        if is_live(source):
            raise VideoReadError(f"{source}: OpenCV cannot open this stream (wrong URL, not reachable, or a "
                                 "protocol its FFmpeg lacks)")
        raise VideoReadError(f"{source}: OpenCV cannot open it as a video (not a video, a codec its FFmpeg lacks, "
                             "or a truncated file: an MP4 cut short loses the index at its end)")
    return cap


def _finite_positive(v: float) -> float | None:
    return float(v) if math.isfinite(v) and v > 0 else None


@dataclass
class VideoJob:
    """One video (or stream) to detect in: ``run()`` writes ``jsonl`` (and ``video`` unless
    None), filling in the counts as it goes, so that they are true after an interruption too."""

    det: Detector
    source: Source
    jsonl: Path
    video: Path | None = None
    every: int = 1
    max_frames: int | None = None
    threshold: object = None
    tiling: Tiling | None = None
    # filled in by run():
    fps: float | None = None  # the source's frame rate (None: unknown)
    declared_frames: int | None = None  # what the container's header says
    frames_read: int = 0
    frames_detected: int = 0
    detections: int = 0
    size: tuple[int, int] | None = None  # (width, height)
    truncated: bool = False
    finished: bool = False
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"source": str(self.source), "jsonl": str(self.jsonl),
                "video": None if self.video is None or not self.frames_detected else str(self.video),
                "frames_read": self.frames_read, "frames_detected": self.frames_detected,
                "detections": self.detections, "every": self.every, "fps": self.fps,
                "declared_frames": self.declared_frames, "truncated": self.truncated,
                "size": list(self.size) if self.size else None, "finished": self.finished}

    def run(self) -> "VideoJob":
        """Detect in every ``every``-th frame, to the end of the source or ``max_frames``
        detected frames. :class:`VideoReadError` when no frame could be read (nothing is left on
        disk then); a file that ends before its header's frame count is a warning (``truncated``)."""
        import contextlib

        import cv2

        from .runtime import single_threaded
        from .viz import draw

        det = self.det
        cap = open_capture(self.source)
        live = is_live(self.source)
        self.fps = _finite_positive(cap.get(cv2.CAP_PROP_FPS))
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared_frames = None if live or not math.isfinite(n) or n <= 0 else int(n)
        total = None if self.declared_frames is None else -(-self.declared_frames // self.every)
        if self.max_frames is not None:
            total = self.max_frames if total is None else min(total, self.max_frames)
        thr = det.thresholds(self.threshold)
        out_fps = (self.fps or 30.0) / self.every
        writer, lines = None, None
        bar = progress(total=total, desc=f"detect {Path(str(self.source)).name or self.source}", unit="frame")
        t_first = None
        try:
            lines = open(self.jsonl, "w", encoding="utf-8")
            with single_threaded() if det.device.type == "cpu" else contextlib.nullcontext():
                while self.max_frames is None or self.frames_detected < self.max_frames:
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        break
                    i = self.frames_read
                    self.frames_read += 1
                    if t_first is None:
                        t_first = time.monotonic()
                    if i % self.every:
                        continue
                    rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    if self.size is None:
                        self.size = (rgb.shape[1], rgb.shape[0])
                    d = detect_frame(det, rgb, thr, self.tiling)
                    t = i / self.fps if self.fps and not live else time.monotonic() - t_first
                    lines.write(json.dumps(frame_row(i, t, d)) + "\n")
                    lines.flush()
                    if self.video is not None:
                        if writer is None:
                            writer = _open_writer(self.video, out_fps, self.size)
                        painted = cv2.cvtColor(draw(rgb, d.boxes, d.class_names, d.scores, det.classes),
                                               cv2.COLOR_RGB2BGR)
                        if (painted.shape[1], painted.shape[0]) != self.size:  # a stream that changed size
                            painted = cv2.resize(painted, self.size)
                        writer.write(painted)
                    self.frames_detected += 1
                    self.detections += len(d)
                    bar.update(1)
            self.finished = True
        finally:
            bar.close()
            cap.release()
            if writer is not None:
                writer.release()  # writes the MP4's index: without it the file does not play
            if lines is not None:
                lines.close()
            if self.frames_read == 0:  # nothing to keep: no empty outputs left behind
                self.jsonl.unlink(missing_ok=True)
        if self.frames_read == 0:
            raise VideoReadError(f"{self.source}: OpenCV opened it but decoded no frame (an empty or damaged "
                                 "video, or a codec its FFmpeg lacks)")
        if self.declared_frames is not None and self.max_frames is None and self.frames_read < self.declared_frames:
            self.truncated = True
            self.warnings.append(f"{self.source} ended after {self.frames_read} of the {self.declared_frames} frames "
                                 "its header declares (a truncated or damaged file?); the frames before were detected")
        return self


def _open_writer(path: Path, fps: float, size: tuple[int, int]):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
    if not writer.isOpened():
        raise UserError(f"cannot write {path}: OpenCV's {FOURCC} video writer does not open there (a read-only "
                        "folder, or an OpenCV without FFmpeg); pass --no-images to write the detections only")
    return writer


def detect_frame(det: Detector, rgb: np.ndarray, threshold, tiling: Tiling | None):
    """One frame's detections: the whole frame, or its tiles and the whole frame merged."""
    if tiling is not None:
        from .tiling import detect_tiled

        return detect_tiled(det, rgb, tiling, threshold)
    return det.detect(rgb, threshold=threshold)


def frame_row(index: int, seconds: float, d) -> dict:
    """A frame's JSON line (see the module)."""
    return {"frame": int(index), "time": round(float(seconds), 6),
            "boxes": [[float(v) for v in b] for b in np.asarray(d.boxes).reshape(-1, 4)],
            "scores": [float(s) for s in d.scores], "labels": d.class_names,
            "margins": [float(m) for m in (d.margins if d.margins is not None else d.scores)]}


def read_frames_jsonl(path: str | Path) -> list[dict]:
    """The frame rows of a video's JSON lines file (a torn last line, from a kill or a full
    disk, is left out)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
