"""What ``detect`` reads and writes per input: image paths expanded from files, folders and
list files (every skipped entry listed with its reason), and collision-free output names."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Sequence

from .images import is_image_file
from .video import is_video_file

LIST_SUFFIXES = (".txt", ".lst", ".list")
MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS)


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


def expand_inputs(inputs: Sequence[str | Path], videos: bool = False) -> tuple[list[Path], list[str]]:
    """Image paths from files, folders (their image files, not recursive; with ``videos``,
    their video files too) and ``.txt`` lists (one path per line, relative to the list's
    folder); each file once, in the order given.

    Returns ``(paths, skipped)``: ``skipped`` has one ``"path: reason"`` line per entry that was
    named or found but cannot be read (missing, dangling or looping links, FIFOs).
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
            for q in sorted(p.iterdir()):
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
