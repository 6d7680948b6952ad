"""Writing files so that finished work is never lost: atomic replaces, temporary files that
never outlive a failure, and output folders checked before hours of work start."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any failure (full disk, Ctrl-C, a bug) the temporary file is removed and ``path`` keeps
    its previous content, so readers see either the old or the new file, never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, default=float))


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically create ``path`` with ``writer(tmp_path)`` (e.g. ``lambda p: torch.save(x, p)``)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def ensure_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` if needed and prove a file can be written there, before any long work.

    Raises a :class:`UserError` naming the folder and the cause (a file in the way, no
    permission, read-only or full file system).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {p} exists and is not a folder; choose another path")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sppdet-write-test.", dir=p)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
                  errno.ENOTDIR: "a parent is not a folder", errno.EEXIST: "a file is in the way"}.get(
            exc.errno, exc.strerror or str(exc))
        raise UserError(f"{what} {p} is not writable ({reason}); choose another path") from None
    return p


def describe_os_error(exc: OSError) -> str:
    """One line for an I/O failure while writing results (full disk, permissions)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
