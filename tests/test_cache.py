"""sppdet.cache: where the cache lives, the key of an image (its id and a blake2b of its bytes,
recomputed here), and CachedData.prepare over a few records with external proposals (no
trunk): computed once, unreadable images dropped and counted."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.cache import CachedData, cache_key, default_cache_root
from sppdet.config import Config, ProposalConfig
from sppdet.datasets.common import ImageRecord, LoadReport
from sppdet.images import ImageReadError


def record(path: Path, image_id: str, exif=False) -> ImageRecord:
    return ImageRecord(image_id, path, np.zeros((0, 4)), [], np.zeros(0, bool), 30, 20, exif_transpose=exif)


def test_default_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SPPDET_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "a"
    monkeypatch.delenv("SPPDET_CACHE")
    assert default_cache_root() == tmp_path / "x" / "sppdet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "sppdet"


def test_the_key_is_the_id_and_a_hash_of_the_bytes(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (30, 20), (1, 2, 3)).save(p)
    digest = hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
    assert cache_key(record(p, "img 1")) == f"img 1-{digest}"
    assert cache_key(record(p, "img 1", exif=True)) == f"img 1-{digest}-t"  # other pixels: another key
    long_id = "x" * 130
    short = hashlib.blake2b(long_id.encode(), digest_size=6).hexdigest()
    assert cache_key(record(p, long_id)) == f"{'x' * 100}~{short}-{digest}"
    with pytest.raises(ImageReadError, match="cannot read"):
        cache_key(record(tmp_path / "gone.png", "gone"))


def test_prepare_caches_once_and_drops_unreadable_images(tmp_path):
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    records = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (30, 20), (i, i, i)).save(p)
        (ext_dir / f"im{i}.txt").write_text(f"0 0 {10 + i} 9\n")
        records.append(record(p, f"im{i}"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    records.insert(1, record(tmp_path / "bad.png", "bad"))
    (ext_dir / "bad.txt").write_text("0 0 5 5\n")
    cfg = Config(proposals=ProposalConfig(method="external", external_dir=str(ext_dir)))
    data = CachedData.from_config(cfg, None, tmp_path / "cache")
    report = LoadReport()
    ok = data.prepare(records, report)
    assert [r.image_id for r in ok] == ["im0", "im1", "im2"]  # in order, the unreadable one left out
    assert report.counts["image that cannot be decoded (skipped)"] == 1
    assert data.last_stats["computed"] == 4 and data.last_stats["unreadable"] == 1
    assert [data.proposals_for(r).tolist() for r in ok] == [[[0, 0, 10, 9]], [[0, 0, 11, 9]], [[0, 0, 12, 9]]]
    again = CachedData.from_config(cfg, None, tmp_path / "cache")
    assert [r.image_id for r in again.prepare(ok, LoadReport())] == ["im0", "im1", "im2"]
    assert again.last_stats["computed"] == 0  # all cached
