"""One writer per output folder: ``detect --out``, an evaluation's folder and a run folder
being trained into.

An OS lock (``flock`` through the ``filelock`` package) on ``FOLDER/.sppdet.lock``: the kernel
drops it when its process dies, so a killed command (or a lock file it left) never blocks the
next one. Readers of a run (``sppdet.load``) ask :func:`held_elsewhere` so that they never read
a run another command is training into.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_NAME = ".sppdet.lock"
log = logging.getLogger("sppdet")


def check_plain_file(path: Path, what: str) -> None:
    """Refuse to write through a link or onto something that is not a regular file."""
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; sppdet does not write through links into {what}: "
                        "remove it or choose another folder")
    if path.exists() and not path.is_file():
        raise UserError(f"{path} exists and is not a regular file; remove it or choose another folder")


@contextmanager
def folder_lock(folder: str | Path, what: str = "--out") -> Iterator[None]:
    """Hold the folder's lock for the block; a second holder is refused with one line."""
    import filelock

    path = Path(folder) / LOCK_NAME
    check_plain_file(path, what)
    lock = filelock.FileLock(str(path), timeout=0, fallback_to_soft=False, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise UserError(f"another sppdet command is writing to {folder} ({what}); wait for it to finish "
                        "or choose another folder") from None
    except OSError as exc:  # a file system without locks (some network mounts): go on unguarded
        log.warning(f"cannot lock {path} ({exc.strerror or exc}); make sure no other sppdet command "
                    f"writes to {folder} at the same time")
        yield
        return
    try:
        yield
    finally:
        lock.release()


def held_elsewhere(folder: str | Path) -> bool:
    """Whether a command holds ``folder``'s lock now (another process writing there, or
    another holder in this one). Only reads: the lock file is opened read-only (so a read-only
    folder is fine), never created, never followed through a link; a lock file a killed
    process left is not held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Unix: nothing to ask
        return False
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return False  # none (no command ever wrote there), a link, or unreadable
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
