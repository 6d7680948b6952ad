"""sppdet.fileio: atomic writes that leave the old file or the new one (never half, never a
temporary), the write probe of output folders, checked array files (their CRC-32 recomputed here
with zlib from the documented recipe), and the removal of stale temporaries."""
import errno
import io
import json
import os
import time
import zipfile
import zlib

import numpy as np
import pytest

from sppdet.errors import UserError
from sppdet.fileio import (CheckedFileError, atomic_path, atomic_save, atomic_write, atomic_write_json,
                           describe_os_error, ensure_writable_dir, load_checked_arrays,
                           remove_stale_temporaries, save_checked_arrays)


def listing(folder):
    return sorted(os.listdir(folder))


# -- atomic writes ----------------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write(p, "old")
    for failure in (OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(failure)):
            with atomic_path(p) as tmp:
                assert tmp.parent == tmp_path and tmp != p
                tmp.write_text("half of the new")
                raise failure
        assert p.read_text() == "old" and listing(tmp_path) == ["out.txt"]
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new" and listing(tmp_path) == ["out.txt"]


def test_text_is_utf8_and_undecodable_names_keep_their_bytes(tmp_path):
    name = os.fsdecode(b"caf\xe9")  # a Latin-1 file name as Python reads it (surrogateescape)
    atomic_write(tmp_path / "a.txt", f"é {name}\n")
    assert (tmp_path / "a.txt").read_bytes() == "é ".encode() + b"caf\xe9\n"


def test_json_turns_numpy_numbers_into_floats(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"mAP": np.float32(0.5), "n": 3}, indent=None)
    assert (tmp_path / "m.json").read_text() == '{"mAP": 0.5, "n": 3}'
    assert json.loads((tmp_path / "m.json").read_text()) == {"mAP": 0.5, "n": 3}


def test_atomic_save_reports_torch_s_write_failure_as_an_os_error(tmp_path):
    def torch_like_failure(path):
        path.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 512 vs 448")

    with pytest.raises(OSError) as exc:
        atomic_save(tmp_path / "model.pt", torch_like_failure)
    assert exc.value.errno in (errno.EIO, errno.ENOSPC) and exc.value.filename == str(tmp_path / "model.pt")
    assert listing(tmp_path) == []

    def a_bug(path):
        raise RuntimeError("shape mismatch")  # not a write failure: passed on as it is

    with pytest.raises(RuntimeError, match="shape mismatch"):
        atomic_save(tmp_path / "model.pt", a_bug)
    assert listing(tmp_path) == []
    atomic_save(tmp_path / "model.pt", lambda path: path.write_bytes(b"whole"))
    assert (tmp_path / "model.pt").read_bytes() == b"whole"


# -- output folders ---------------------------------------------------------------------------
def test_ensure_writable_dir_creates_and_probes(tmp_path):
    p = ensure_writable_dir(tmp_path / "a" / "b")
    assert p.is_dir() and listing(p) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--out .*file exists and is not a folder"):
        ensure_writable_dir(tmp_path / "file")
    with pytest.raises(UserError, match=r"--cache .*sub is not writable \(a parent is not a folder\)"):
        ensure_writable_dir(tmp_path / "file" / "sub", what="--cache")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write to any folder")
def test_ensure_writable_dir_names_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match=r"ro is not writable \(permission denied\)"):
            ensure_writable_dir(ro)
    finally:
        ro.chmod(0o700)


def test_describe_os_error():
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == \
        "No space left on device (/x/y)"
    assert describe_os_error(OSError("odd")) == "odd"


# -- checked array files ----------------------------------------------------------------------
def reference_crc(arrays):
    """The digest as the docstring describes it: CRC-32 over name|dtype|shape| and the bytes of
    each array, in name order, stored as 4 little-endian bytes."""
    crc = 0
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        crc = zlib.crc32(f"{name}|{a.dtype.str}|{a.shape}|".encode(), crc)
        crc = zlib.crc32(a.tobytes(), crc)
    return crc.to_bytes(4, "little")


ARRAYS = {"boxes": np.array([[0, 0, 9, 9], [2, 3, 17, 11]], np.float32), "scores": np.array([0.5, 0.25])}


def test_checked_arrays_round_trip_with_the_documented_digest(tmp_path):
    p = tmp_path / "a.npz"
    save_checked_arrays(p, {"scores": ARRAYS["scores"], "boxes": ARRAYS["boxes"]})  # not in name order
    with zipfile.ZipFile(p) as z:
        assert sorted(z.namelist()) == ["boxes.npy", "crc32.npy", "scores.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())  # uncompressed
        stored = np.load(io.BytesIO(z.read("crc32.npy")))
    assert stored.tobytes() == reference_crc(ARRAYS)
    got = load_checked_arrays(p, ("boxes", "scores"))
    assert sorted(got) == ["boxes", "scores"]
    for k, v in ARRAYS.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    assert sorted(load_checked_arrays(p, ("boxes", "scores"), only=("scores",))) == ["scores"]


def test_checked_arrays_refuse_other_members_content_and_dtypes(tmp_path):
    p = tmp_path / "a.npz"
    save_checked_arrays(p, ARRAYS)
    with pytest.raises(CheckedFileError, match="holds"):
        load_checked_arrays(p, ("boxes",))  # another set of arrays than asked for
    # the right members, but another array's content under the stored digest
    digest = np.frombuffer(reference_crc(ARRAYS), np.uint8)
    np.savez(p, boxes=ARRAYS["boxes"] + 1, scores=ARRAYS["scores"], crc32=digest)
    with pytest.raises(CheckedFileError, match="does not match its checksum"):
        load_checked_arrays(p, ("boxes", "scores"))
    # the same numbers in another dtype change the digest too
    np.savez(p, boxes=ARRAYS["boxes"].astype(np.float64), scores=ARRAYS["scores"], crc32=digest)
    with pytest.raises(CheckedFileError, match="does not match"):
        load_checked_arrays(p, ("boxes", "scores"))
    p.write_bytes(b"not a zip")
    with pytest.raises(CheckedFileError, match="BadZipFile"):
        load_checked_arrays(p, ("boxes", "scores"))
    with pytest.raises(FileNotFoundError):
        load_checked_arrays(tmp_path / "none.npz", ("boxes",))


def test_a_header_asking_for_gigabytes_is_refused_before_allocating(tmp_path):
    """A .npy header saying (10**9,) float64 over 16 bytes of data: refused from the sizes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 9,)})
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("boxes.npy", buf.getvalue() + b"\0" * 16)
        z.writestr("crc32.npy", b"")
    with pytest.raises(CheckedFileError, match=r"boxes: header says \(1000000000,\) float64, data has 16 bytes"):
        load_checked_arrays(p, ("boxes",))


# -- stale temporaries ------------------------------------------------------------------------
def test_remove_stale_temporaries(tmp_path):
    old = time.time() - 3 * 86400
    for name in ("a.npz.tmp12345", ".b.npz.abc.tmp", ".c.npz.def.tmp", "d.npz", "e.tmp", "f.tmpx"):
        (tmp_path / name).write_bytes(b"x")
    os.utime(tmp_path / ".c.npz.def.tmp", (old, old))  # an atomic_path temporary from 3 days ago
    (tmp_path / ".g.tmp").mkdir()  # a folder is never removed
    os.utime(tmp_path / ".g.tmp", (old, old))
    assert remove_stale_temporaries(tmp_path) == 2  # sppdet 0.2's (any age) and the old one
    assert listing(tmp_path) == [".b.npz.abc.tmp", ".g.tmp", "d.npz", "e.tmp", "f.tmpx"]
    assert remove_stale_temporaries(tmp_path, max_age_s=-1) == 1  # now every atomic_path one is old
    assert remove_stale_temporaries(tmp_path / "missing") == 0
