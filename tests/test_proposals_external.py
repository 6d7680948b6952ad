"""sppdet.proposals.external: per-image files in each format (and which one wins), R-CNN's
selective_search_data .mat (1-based y1 x1 y2 x2, converted by hand here), clipping to the
image, and what new images get."""
import warnings

import numpy as np
import pytest

from sppdet.config import ProposalConfig
from sppdet.errors import UserError
from sppdet.proposals.external import External, checked_boxes, load_external, load_rcnn_mat
from sppdet.proposals.selective_search import SelectiveSearch


def test_each_file_format_and_npy_first(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 10 12\n3 4 5 6\n")
    (tmp_path / "b.csv").write_text("1,2,10,12\n")
    (tmp_path / "c.txt").write_text("1 2 10 12\n")  # one box: still [1, 4] (ndmin=2)
    np.save(tmp_path / "d.npy", np.array([[0.5, 1.5, 9.5, 11.5]]))
    (tmp_path / "d.txt").write_text("0 0 1 1\n")  # .npy is read before .txt
    assert load_external(tmp_path, "a", 20, 20).tolist() == [[1, 2, 10, 12], [3, 4, 5, 6]]
    assert load_external(tmp_path, "b", 20, 20).tolist() == [[1, 2, 10, 12]]
    assert load_external(tmp_path, "c", 20, 20).shape == (1, 4)
    d = load_external(tmp_path, "d", 20, 20)
    assert d.dtype == np.float32 and d.tolist() == [[0.5, 1.5, 9.5, 11.5]]
    with pytest.raises(UserError, match=r"no proposals for image e in .* \(expected e.npy/.txt/.csv\)"):
        load_external(tmp_path, "e", 20, 20)
    (tmp_path / "f.csv").write_text("1,2,x,4\n")
    with pytest.raises(UserError, match="cannot read proposals file .*f.csv"):
        load_external(tmp_path, "f", 20, 20)


def test_boxes_are_clipped_to_the_last_pixel():
    # a 30 x 20 image: x in [0, 29], y in [0, 19]
    got = checked_boxes([[-5, -1, 40, 25], [3, 4, 5, 6]], "here", 30, 20)
    assert got.tolist() == [[0, 0, 29, 19], [3, 4, 5, 6]]
    with pytest.raises(UserError, match="proposals in here are not numbers"):
        checked_boxes([["a", 1, 2, 3]], "here", 30, 20)
    with pytest.raises(UserError, match="7 numbers, not 4 per box"):
        checked_boxes([1, 2, 3, 4, 5, 6, 7], "here", 30, 20)


def write_mat(path, ids, boxes):
    import scipy.io

    images = np.empty((len(ids), 1), dtype=object)
    cells = np.empty((1, len(ids)), dtype=object)
    for i, (image_id, b) in enumerate(zip(ids, boxes)):
        images[i, 0] = np.array([image_id])
        cells[0, i] = np.asarray(b, dtype=np.float64)
    scipy.io.savemat(str(path), {"images": images, "boxes": cells})


def test_rcnn_mat_is_read_as_zero_based_x1_y1_x2_y2(tmp_path):
    mat = tmp_path / "ss.mat"
    # 1-based (y1, x1, y2, x2): (3, 2, 13, 11) is 0-based x1=1, y1=2, x2=10, y2=12
    write_mat(mat, ["000001", "000002"], [[[3, 2, 13, 11], [1, 1, 5, 8]], [[10, 20, 30, 40]]])
    got = load_rcnn_mat(mat)
    assert sorted(got) == ["000001", "000002"]
    assert got["000001"].tolist() == [[1, 2, 10, 12], [0, 0, 7, 4]]
    assert got["000002"].tolist() == [[19, 9, 39, 29]] and got["000002"].dtype == np.float32
    ext = External(ProposalConfig(method="external", external_dir=str(mat)))
    image = np.zeros((25, 35, 3), np.uint8)  # 35 x 25: the second image's box is clipped
    assert ext.propose("000002", lambda: image).tolist() == [[19, 9, 34, 24]]
    with pytest.raises(UserError, match="has no proposals for image 000003"):
        ext.propose("000003", lambda: image)


def test_a_mat_without_its_variables_or_not_a_mat(tmp_path):
    import scipy.io

    scipy.io.savemat(str(tmp_path / "x.mat"), {"other": np.zeros(3)})
    with pytest.raises(UserError, match="lacks the 'images'/'boxes' variables"):
        load_rcnn_mat(tmp_path / "x.mat")
    (tmp_path / "y.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(UserError, match="cannot read .*y.mat"):
        load_rcnn_mat(tmp_path / "y.mat")


def test_per_image_files_through_the_proposer_and_new_images(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 100 12\n")
    cfg = ProposalConfig(method="external", external_dir=str(tmp_path))
    ext = External(cfg)
    assert ext.propose("a", lambda: np.zeros((20, 50, 3), np.uint8)).tolist() == [[1, 2, 49, 12]]
    with pytest.warns(UserWarning, match="new images get selective search"):
        new = ext.for_new_images()
    assert isinstance(new, SelectiveSearch) and new.cfg == cfg  # with the same proposals.* settings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        External(cfg)  # building one warns of nothing
