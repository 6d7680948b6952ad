"""What ``detect`` reads and writes per input: image paths expanded from files, folders and
list files (every skipped entry listed with its reason), and collision-free output names."""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Sequence

from .images import is_image_file
from .video import is_video_file

LIST_SUFFIXES = (".txt", ".lst", ".list")
MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS)

log = logging.getLogger("sppdet")


def _kind(p: Path) -> str | None:
    """None for a regular file or folder, else why ``p`` cannot be read as one."""
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if p.is_symlink():
            return "dangling symlink"
        return "not found" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return "not a regular file (FIFO, socket or device)"


def _subdirs(p: Path) -> list[Path]:
    try:
        return sorted(q for q in p.iterdir() if q.is_dir())
    except OSError:
        return []


def _count_images(p: Path) -> int:
    try:
        return sum(1 for q in p.iterdir() if is_image_file(q) and q.is_file())
    except OSError:
        return 0


def dataset_image_folders(p: Path) -> list[Path]:
    """Where the images of a data set or split folder are, when ``p`` holds none itself: a VOC
    devkit's ``JPEGImages/`` (also from ``VOCdevkit/`` above it), a YOLO split's ``images/``
    (or Ultralytics' ``images/<split>/``), an export's split folders (``train/``, ``valid/``,
    ``test/``: their ``images/``, or their images directly as in COCO exports)."""
    from .datasets.common import canonical_split

    found: list[Path] = []
    devkits = [p] if (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir() else [
        d for d in _subdirs(p) if (d / "Annotations").is_dir() and (d / "JPEGImages").is_dir()]
    found += [d / "JPEGImages" for d in devkits]
    if (p / "images").is_dir():
        found += [p / "images"] if _count_images(p / "images") else _subdirs(p / "images")
    for d in _subdirs(p):
        if canonical_split(d.name) is not None:
            found.append(d if _count_images(d) else d / "images")
    return [f for f in dict.fromkeys(found) if f.is_dir() and _count_images(f)]


def _where_images_are(p: Path) -> list[Path]:
    """Folders one or two levels below ``p`` that hold images (folders are not searched
    recursively: these are named, never read)."""
    found = []
    for d in _subdirs(p):
        found += [d] if _count_images(d) else [e for e in _subdirs(d) if _count_images(e)]
    return found


def _listing(folders: list[Path], most: int = 6) -> str:
    def n(f: Path) -> str:
        k = _count_images(f)
        return f"{k} image{'' if k == 1 else 's'}"

    text = ", ".join(f"{f}: {n(f)}" for f in folders[:most])
    return text + (f" and {len(folders) - most} more folders" if len(folders) > most else "")


def expand_inputs(inputs: Sequence[str | Path], videos: bool = False) -> tuple[list[Path], list[str]]:
    """Image paths from files, folders (their image files, not recursive; with ``videos``,
    their video files too) and ``.txt`` lists (one path per line, relative to the list's
    folder); each file once, in the order given.

    A folder with no images of its own that is a data set or a split (a YOLO split's
    ``images/``, a VOC devkit's ``JPEGImages/``) is read from its one image folder; when it has
    several (an export's train/valid/test), or images only in subfolders, it is skipped with
    a line naming them, so that nothing is silently left out.

    Returns ``(paths, skipped)``: ``skipped`` has one ``"path: reason"`` line per entry that was
    named or found but cannot be read (missing, dangling or looping links, FIFOs, folders
    without images).
    """
    paths: list[Path] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        why = _kind(p)
        if why is not None:
            skipped.append(f"{p}: {why}")
            return
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for s in inputs:
        p = Path(s)
        why = _kind(p)
        if why is not None:
            skipped.append(f"{p}: {why}")
        elif p.is_dir():
            entries = sorted(p.iterdir())
            if not any(is_image_file(q) or (videos and is_video_file(q)) for q in entries):
                folders = dataset_image_folders(p)
                if len(folders) == 1:
                    log.info(f"{p} holds no images itself; reading the {_count_images(folders[0])} images "
                             f"of {folders[0]}")
                    entries = sorted(folders[0].iterdir())
                elif folders:
                    skipped.append(f"{p}: no images of its own; it is a data set whose images are in "
                                   f"{_listing(folders)}; pass the one you want")
                else:
                    below = _where_images_are(p)
                    skipped.append(f"{p}: no images in this folder" + (
                        f" (folders are not searched recursively); {_listing(below)}: pass "
                        f"{'that folder' if len(below) == 1 else 'those folders'}" if below else ""))
            for q in entries:
                if is_image_file(q) or (videos and is_video_file(q)):
                    add(q)
                elif not q.is_dir() and _kind(q) not in (None, "not found"):
                    skipped.append(f"{q}: {_kind(q)}")
        elif not is_image_file(p) and p.suffix.lower() in LIST_SUFFIXES:
            for line in p.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    q = Path(line.strip())
                    add(q if q.is_absolute() else p.parent / q)
        else:
            add(p)
    return paths, skipped


def _fit(name: str, suffix: str) -> str:
    """``name + suffix``, shortened (with a hash of the full name) to fit a file-name limit."""
    raw = os.fsencode(name)  # the bytes on disk (names that are not UTF-8 hold surrogates)
    if len(raw + os.fsencode(suffix)) <= MAX_NAME_BYTES:
        return name + suffix
    digest = hashlib.sha1(raw).hexdigest()[:10]
    room = MAX_NAME_BYTES - len(os.fsencode(suffix)) - len(digest) - 1
    short = raw[:room].decode("utf-8", errors="ignore")
    return f"{short}-{digest}{suffix}"


def output_names(paths: Sequence[Path], suffix: str = "_det.jpg") -> dict[Path, Path]:
    """A relative output path per input: its path below the inputs' common folder, with
    ``suffix``. Inputs that would still collide (``x.jpg`` and ``x.png``) keep their extension
    in the name (``x.jpg_det.jpg``); over-long names are shortened with a hash."""
    if not paths:
        return {}
    real = [Path(os.path.realpath(p)) for p in paths]
    try:
        root = Path(os.path.commonpath([r.parent for r in real]))
    except ValueError:  # different drives (Windows)
        root = None
    rel = [r.relative_to(root) if root is not None else Path(r.name) for r in real]
    stems = [r.parent / r.stem for r in rel]
    clash = {s for s in stems if stems.count(s) > 1}
    out = {}
    for p, r, s in zip(paths, rel, stems):
        base = r.name if s in clash else r.stem
        out[p] = Path(*[_fit(part, "") for part in r.parent.parts], _fit(base, suffix))
    return out
