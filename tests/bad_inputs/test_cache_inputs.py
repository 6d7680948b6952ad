"""Damaged caches (every byte flipped, truncated, wrong arrays) are detected and recomputed;
cache writes leave no temporaries; the cache key follows the content."""
import dataclasses
import logging
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sppdet.errors import UserError

from .makers import _img


def _flip_every_byte(path: Path, load, expected, recomputed, step: int = 1) -> tuple[int, int]:
    """Flip each (``step``-th) byte of ``path`` in turn; every load must be detected
    (recomputed) or give the original content."""
    original = path.read_bytes()
    detected = same = 0
    logging.disable(logging.WARNING)
    try:
        for i in range(0, len(original), step):
            damaged = bytearray(original)
            damaged[i] ^= 0x5A
            path.write_bytes(bytes(damaged))
            n = recomputed[0]
            got = load()
            if recomputed[0] > n:
                detected += 1
            else:
                assert expected(got), f"byte {i}: damaged cache content was used"
                same += 1
    finally:
        logging.disable(logging.NOTSET)
    return detected, same


def test_proposal_cache_detects_every_damage(tmp_path):
    from sppdet.config import ProposalConfig
    from sppdet.proposals import ProposalCache

    boxes = np.array([[0, 0, 9, 9], [2, 3, 17, 11], [5, 5, 6, 6]], dtype=np.float32)
    calls = [0]
    cache = ProposalCache(tmp_path / "p", ProposalConfig())

    def compute(image_id, image, *rest):
        calls[0] += 1
        return boxes

    cache.compute = compute
    cache.get("k", lambda: None)
    detected, same = _flip_every_byte(cache.path("k"), lambda: cache.get("k", lambda: None),
                                      lambda got: got.dtype == np.float32 and np.array_equal(got, boxes), calls)
    assert detected > 0.5 * (detected + same)  # most bytes matter; the rest (zip dates...) load the same
    # truncation, and arrays of the wrong type or shape, are recomputed too
    p = cache.path("k")
    cache.get("k", lambda: None)
    p.write_bytes(p.read_bytes()[:-30])
    n = calls[0]
    np.testing.assert_array_equal(cache.get("k", lambda: None), boxes)
    assert calls[0] == n + 1
    from sppdet.fileio import save_checked_arrays

    for bad in (boxes.astype(np.float64), boxes[:, :3].copy(), np.full((2, 4), np.nan, np.float32)):
        save_checked_arrays(p, {"boxes": bad})
        n = calls[0]
        np.testing.assert_array_equal(cache.get("k", lambda: None), boxes)
        assert calls[0] == n + 1


def _stub_extractor(channels=4, scales=(32, 48)):
    def compute(image):
        return [ScaleMap(f, torch.arange(channels * 3 * (k + 2), dtype=torch.float16).reshape(channels, 3, k + 2))
                for k, f in enumerate((0.5, 0.75))]

    from sppdet.features import ScaleMap

    return types.SimpleNamespace(scales=list(scales), trunk=types.SimpleNamespace(channels=channels),
                                 compute=compute)


def test_feature_cache_detects_every_damage(tmp_path):
    from sppdet.features import FeatureCache

    ext = _stub_extractor()
    calls = [0]
    real = ext.compute

    def compute(image):
        calls[0] += 1
        return real(image)

    ext.compute = compute
    cache = FeatureCache(tmp_path / "f", ext)
    ref = cache.get("k", lambda: None)

    def same(got):
        return len(got) == 2 and all(g.factor == r.factor and g.fmap.dtype == torch.float16
                                     and torch.equal(g.fmap, r.fmap) for g, r in zip(got, ref))

    # every 2nd byte, to stay within a few seconds (the proposals test flips every byte)
    detected, unchanged = _flip_every_byte(cache.path("k"), lambda: cache.get("k", lambda: None), same, calls,
                                           step=2)
    assert detected > 0.5 * (detected + unchanged)
    # a map whose channel count differs from the trunk's (e.g. another backbone) is recomputed
    wide = _stub_extractor(channels=8)
    real = wide.compute
    wide.compute = compute
    other = FeatureCache(tmp_path / "f", wide)
    n = calls[0]
    assert other.get("k", lambda: None)[0].fmap.shape[0] == 8 and calls[0] == n + 1


def test_cache_writes_leave_no_temporaries(tmp_path, monkeypatch):
    from sppdet.config import ProposalConfig
    from sppdet.proposals import ProposalCache

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "old.npy.tmp12345").write_bytes(b"left by sppdet 0.2")
    (folder / "keep.npz").write_bytes(b"x")
    cache = ProposalCache(folder, ProposalConfig())
    assert sorted(os.listdir(folder)) == ["keep.npz"]  # the old temporary went, nothing else
    cache.compute = lambda image_id, image, *rest: np.zeros((1, 4), np.float32)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    with pytest.raises(UserError, match="No space left on device.*finished entries are kept"):
        cache.get("new", lambda: None)
    assert sorted(os.listdir(folder)) == ["keep.npz"]


def test_cache_key_follows_the_content(tmp_path):
    from sppdet.cache import cache_key
    from sppdet.datasets.common import ImageRecord

    p = _img(tmp_path / "a.bmp", colour=(1, 2, 3))  # uncompressed: same size whatever the pixels
    rec = ImageRecord("a", p, np.zeros((0, 4)), [], np.zeros(0, bool), 40, 30)
    k1 = cache_key(rec)
    st = p.stat()
    _img(p, colour=(1, 2, 4))  # same size and file name...
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and mtime, as cp -p / rsync keep it
    assert p.stat().st_size == st.st_size
    k2 = cache_key(rec)
    assert k1 != k2
    moved = tmp_path / "sub" / "a.bmp"
    moved.parent.mkdir()
    os.replace(p, moved)  # a moved file keeps its key
    assert cache_key(dataclasses.replace(rec, path=moved)) == k2
    assert cache_key(dataclasses.replace(rec, path=moved, exif_transpose=True)) != k2
