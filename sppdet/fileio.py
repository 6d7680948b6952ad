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

import numpy as np

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
    """Write ``data`` (text as UTF-8) to ``path`` atomically. File names that are not UTF-8 (read
    with ``surrogateescape``) are written as the bytes the file system has, never an encoding error."""
    blob = data.encode("utf-8", errors="surrogateescape") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, default=float))


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically create ``path`` with ``writer(tmp_path)`` (e.g. ``lambda p: torch.save(x, p)``).

    ``torch.save`` reports a full disk as a ``RuntimeError`` ("unexpected pos …"); that becomes
    the ``OSError`` it is, so callers handle one kind of write failure."""
    with atomic_path(path) as tmp:
        try:
            writer(tmp)
        except RuntimeError as exc:
            try:
                st = os.statvfs(tmp.parent)
                full = st.f_bavail * st.f_frsize < (64 << 20)
            except OSError:
                full = False
            if not (full or "write" in str(exc).lower() or "unexpected pos" in str(exc)):
                raise
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          "No space left on device" if full else f"write failed ({exc})", str(path)) from None


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


# -- checked array files (the per-image caches) --------------------------------------------
DIGEST_KEY = "crc32"


def _digest(arrays: dict[str, np.ndarray]) -> bytes:
    """CRC-32 over each array's name, dtype, shape and bytes (in name order): any change to a
    stored array, its type or its shape changes it. (CRC-32, not a cryptographic hash: it
    catches damage, not tampering, at a tenth of blake2b's cost on a 0.5 MB conv map.)"""
    import zlib

    crc = 0
    for name in sorted(arrays):
        a = arrays[name]
        crc = zlib.crc32(f"{name}|{a.dtype.str}|{a.shape}|".encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(a), crc)
    return crc.to_bytes(4, "little")


def save_checked_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` with a CRC-32 of their content,
    atomically (a full disk or Ctrl-C leaves the previous file, or none, and no temporary)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    digest = np.frombuffer(_digest(arrays), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **{DIGEST_KEY: digest})


def write_cache_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A checked, atomic cache write; a full disk is a :class:`UserError` (finished entries stay)."""
    try:
        save_checked_arrays(path, arrays)
    except OSError as exc:
        raise UserError(f"cannot write cache file {path}: {describe_os_error(exc)}; free some space or "
                        "choose another cache folder (--cache or $SPPDET_CACHE); finished entries are kept "
                        "and reused") from None


class CheckedFileError(ValueError):
    """A checked array file is damaged: unreadable, truncated, or its digest does not match."""


def load_checked_arrays(path: str | Path, names: tuple[str, ...],
                        only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Read the arrays ``names`` written by :func:`save_checked_arrays` and verify the digest.

    ``only``: read just these of ``names`` (each still checked by the zip's CRC, but the digest,
    which covers every array, is not): a cheap look at a small member of a large file.

    Each array's header is checked against its stored length before anything is allocated,
    so a damaged shape field cannot ask for gigabytes. Raises :class:`CheckedFileError` for
    any damage (and ``FileNotFoundError`` when there is no file).
    """
    import zipfile

    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename: i for i in z.infolist()}
            if set(members) != {f"{n}.npy" for n in (*names, DIGEST_KEY)}:
                raise CheckedFileError(f"holds {sorted(members)}")
            for name in (only if only is not None else (*names, DIGEST_KEY)):
                info = members[f"{name}.npy"]
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                             else np.lib.format.read_array_header_2_0(f))
                    if dtype.hasobject or fortran:
                        raise CheckedFileError(f"{name}: unexpected array layout")
                    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if f.tell() + nbytes != info.file_size:
                        raise CheckedFileError(f"{name}: header says {shape} {dtype}, data has "
                                               f"{info.file_size - f.tell()} bytes")
                    data = bytearray(nbytes)
                    if f.readinto(data) != nbytes or f.read(1):  # reading to the end checks the zip CRC
                        raise CheckedFileError(f"{name}: truncated")
                    out[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    except FileNotFoundError:
        raise
    except CheckedFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/npy damage of any kind
        raise CheckedFileError(f"{type(exc).__name__}: {exc}") from None
    if only is not None:
        return out
    stored = out.pop(DIGEST_KEY)
    if stored.tobytes() != _digest(out):
        raise CheckedFileError("content does not match its checksum")
    return out


def remove_stale_temporaries(folder: str | Path, max_age_s: float = 86400.0) -> int:
    """Delete temporary files that interrupted writers left in a cache folder: ``*.tmp<pid>``
    of sppdet < 0.3 (any age), and :func:`atomic_path`'s ``.*.tmp`` older than ``max_age_s``
    (a younger one may belong to a process writing now). Returns how many were removed."""
    import re
    import time

    old_style = re.compile(r"\.tmp\d+$")
    now, n = time.time(), 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            stale = bool(old_style.search(e.name)) or (
                e.name.startswith(".") and e.name.endswith(".tmp") and now - e.stat().st_mtime > max_age_s)
            if stale:
                os.unlink(e.path)
                n += 1
        except OSError:
            continue
    return n
