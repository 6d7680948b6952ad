"""sppdet.datasets.labelimg (flat folders), beyond test_datasets.py's cases: which folders it
takes, an image named by the XML's <filename> rather than its stem, two images of one stem,
where it finds nothing, and the source line saying which images were read."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppdet.datasets.labelimg import load_flat
from sppdet.errors import UserError


def xml(filename: str, box=(2, 3, 20, 30), name="roo") -> str:
    x1, y1, x2, y2 = box
    return (f"<annotation><filename>{filename}</filename><size><width>40</width><height>32</height></size>"
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>")


def img(path: Path, size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def test_boxes_are_zero_based_and_the_xml_names_the_image(tmp_path):
    img(tmp_path / "photo 7.jpg")
    (tmp_path / "ann_7.xml").write_text(xml("photo 7.jpg"))  # labelImg saved it under another name
    ds = load_flat(tmp_path, "all", None)
    (r,) = ds.records
    assert r.image_id == "ann_7" and r.path == tmp_path / "photo 7.jpg"
    np.testing.assert_array_equal(r.boxes, [[1, 2, 19, 29]])  # VOC's 1-based pixels, minus one
    assert ds.classes == ["roo"] and r.labels == ["roo"]
    assert ds.source == f"{tmp_path} (every image)"


@pytest.mark.parametrize("ann_dir, img_dir", [("annotations", "images"), ("Annotations", "JPEGImages"),
                                              ("xmls", "imgs"), ("labels", "img")])
def test_sibling_folders_by_their_usual_names(tmp_path, ann_dir, img_dir):
    img(tmp_path / img_dir / "a.PNG")
    (tmp_path / ann_dir).mkdir()
    (tmp_path / ann_dir / "a.xml").write_text(xml("a.PNG"))
    (r,) = load_flat(tmp_path, "all", None).records
    assert r.path == tmp_path / img_dir / "a.PNG"


def test_an_annotation_folder_without_xml_is_passed_over(tmp_path):
    (tmp_path / "annotations").mkdir()  # empty: the XML are beside the images
    (tmp_path / "annotations" / "notes.txt").write_text("x")
    img(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(xml("a.jpg"))
    (r,) = load_flat(tmp_path, "all", None).records
    assert r.path == tmp_path / "a.jpg"


def test_two_images_of_one_stem_keep_the_first_and_count_it(tmp_path):
    img(tmp_path / "a.jpg", size=(40, 32))
    img(tmp_path / "a.png", size=(50, 50))
    (tmp_path / "a.xml").write_text(xml("a.jpg"))
    ds = load_flat(tmp_path, "all", None)
    assert [r.path.name for r in ds.records] == ["a.jpg"]  # sorted: a.jpg before a.png
    assert ds.report.counts["duplicate image id (first file kept)"] == 1


def test_no_xml_anywhere_is_one_error_naming_where_it_looked(tmp_path):
    img(tmp_path / "images" / "a.jpg")
    with pytest.raises(UserError, match=r"no VOC devkit layout, no COCO JSON and no XML annotations found "
                                        r"\(looked in .* and annotations, Annotations, annots"):
        load_flat(tmp_path, "all", None)


def test_a_list_file_split_says_so_in_the_source(tmp_path):
    for n in "abc":
        img(tmp_path / f"{n}.jpg")
        (tmp_path / f"{n}.xml").write_text(xml(f"{n}.jpg"))
    lst = tmp_path / "mine.txt"
    lst.write_text("c\na\n")
    ds = load_flat(tmp_path, str(lst), None)
    assert sorted(r.image_id for r in ds.records) == ["a", "c"]
    assert ds.source == f"{tmp_path} (the images listed in {lst})"
