"""sppdet.datasets.synth: the synthetic set is deterministic per seed, its splits partition the
images as documented, and its XML (read here with ElementTree, not sppdet's reader) holds 1-based
boxes inside each image's real size, of the five classes."""
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from sppdet.datasets.synth import CLASSES, write_synthetic
from sppdet.errors import UserError


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a = files(write_synthetic(tmp_path / "a", 3, seed=5))
    b = files(write_synthetic(tmp_path / "b", 3, seed=5))
    c = files(write_synthetic(tmp_path / "c", 3, seed=6))
    assert a == b and len(a) == 3 * 2 + 4  # 3 images, 3 XML, 4 split lists
    assert a["JPEGImages/000000.jpg"] != c["JPEGImages/000000.jpg"]


def test_splits_partition_the_images(tmp_path):
    root = write_synthetic(tmp_path / "s", 7, seed=1, test_fraction=0.3)
    lists = {n: (root / "ImageSets" / "Main" / f"{n}.txt").read_text().split() for n in
             ("trainval", "test", "train", "val")}
    ids = [f"{i:06d}" for i in range(7)]
    assert lists["test"] == ids[5:]  # round(7 * 0.3) = 2: the last two
    assert lists["trainval"] == ids[:5]
    assert lists["train"] == ids[:2] and lists["val"] == ids[2:5]  # trainval's halves
    none = write_synthetic(tmp_path / "n", 2, seed=1, test_fraction=0)
    assert (none / "ImageSets" / "Main" / "test.txt").read_text() == ""


def test_annotations_are_one_based_inside_the_image(tmp_path):
    root = write_synthetic(tmp_path / "s", 4, seed=2)
    n_objects = 0
    for xml in sorted((root / "Annotations").glob("*.xml")):
        ann = ET.parse(xml).getroot()
        with Image.open(root / "JPEGImages" / ann.findtext("filename")) as im:
            w, h = im.size
        assert (int(ann.findtext("size/width")), int(ann.findtext("size/height"))) == (w, h)
        for obj in ann.iter("object"):
            n_objects += 1
            assert obj.findtext("name") in CLASSES and obj.findtext("difficult") in ("0", "1")
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h
    assert n_objects >= 1


@pytest.mark.parametrize("kwargs, message", [({"n_images": True}, "number of images"),
                                             ({"n_images": 2.0}, "number of images"),
                                             ({"seed": -1}, "seed must be a non-negative integer"),
                                             ({"test_fraction": 1.5}, r"test_fraction must be in \[0, 1\]")])
def test_bad_arguments_write_nothing(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        write_synthetic(tmp_path / "s", **{"n_images": 2, **kwargs})
    assert not (tmp_path / "s").exists()
