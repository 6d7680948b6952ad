"""sppdet.datasets.coco on tiny hand-written COCO files: [x, y, w, h] to inclusive pixels, iscrowd
as difficult, classes in category-id order with their ids kept, the split a file's name or
folder says, a split file used whole, and an export root's splits."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets.coco import export_split_files, load_coco, load_coco_export, split_of_file
from sppdet.errors import UserError


def coco_file(path: Path, images, annotations, categories) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for im in images:
        Image.new("RGB", (60, 40)).save(path.parent / im["file_name"])
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


CATS = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]


def test_boxes_crowds_and_classes(tmp_path):
    f = coco_file(tmp_path / "ann.json", [{"id": 11, "file_name": "a.jpg"}],
                  [{"image_id": 11, "category_id": 3, "bbox": [10, 5, 20, 10]},
                   {"image_id": 11, "category_id": 7, "bbox": [0.5, 0, 1, 1], "iscrowd": 1}], CATS)
    ds = load_coco(f, "all", None)
    (r,) = ds.records
    # [x, y, w, h] continuous: 20 px wide from x = 10 is columns 10..29 inclusive
    np.testing.assert_array_equal(r.boxes, [[10, 5, 29, 14], [0.5, 0, 0.5, 0]])
    assert r.labels == ["cat", "dog"] and r.difficult.tolist() == [False, True]  # a crowd is not counted
    assert ds.classes == ["cat", "dog"]  # by category id: 3 before 7
    assert ds.category_ids == {"cat": 3, "dog": 7} and r.coco_id == 11
    assert r.eval_objects()[0] == ("cat", [11.0, 6.0, 30.0, 15.0], False)


@pytest.mark.parametrize("path, split", [("valid/_annotations.coco.json", "val"), ("x/instances_val2017.json", "val"),
                                         ("x/instances_train2017.json", "train"), ("x/trainval.json", "trainval"),
                                         ("Testing/a.json", "test"), ("x/annotations.json", None)])
def test_split_of_file(path, split):
    assert split_of_file(Path(path)) == split


def test_a_split_file_is_used_whole(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(5)]
    anns = [{"image_id": i, "category_id": 3, "bbox": [1, 1, 5, 5]} for i in range(5)]
    f = coco_file(tmp_path / "test" / "_annotations.coco.json", images, anns, CATS)
    ds = load_coco(f, "train", None, test_fraction=0.4)
    assert len(ds.records) == 5 and "--split train does not re-split a split file" in ds.source
    plain = coco_file(tmp_path / "other" / "ann.json", images, anns, CATS)
    test = load_coco(plain, "test", None, test_fraction=0.4)
    train = load_coco(plain, "train", None, test_fraction=0.4)
    assert len(test.records) == 2 and len(train.records) == 3  # a file that is no split: re-split
    assert {r.image_id for r in test.records}.isdisjoint(r.image_id for r in train.records)


def test_an_export_root_s_splits(tmp_path):
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        coco_file(tmp_path / "exp" / split / "_annotations.coco.json",
                  [{"id": i, "file_name": f"{split}{i}.jpg"} for i in range(n)],
                  [{"image_id": i, "category_id": 3, "bbox": [1, 1, 5, 5]} for i in range(n)], CATS)
    files = export_split_files(tmp_path / "exp")
    assert list(files) == ["train", "val", "test"]
    assert sorted(r.image_id for r in load_coco_export(tmp_path / "exp", "trainval", None).records) == \
        ["train0", "train1", "valid0"]
    assert [r.image_id for r in load_coco_export(tmp_path / "exp", "valid", None).records] == ["valid0"]
    assert len(load_coco_export(tmp_path / "exp", "all", None).records) == 4
    (tmp_path / "exp" / "test" / "_annotations.coco.json").unlink()
    with pytest.raises(UserError, match=r"split 'test' not in .*: it has train, valid"):
        load_coco_export(tmp_path / "exp", "test", None)
