"""Tiled inference: tile origins by hand, exact coverage, the checks, the merge, a scale-limited
stand-in detector that only tiles let see small squares, and the real detector on a tiny run."""
import json

import numpy as np
import pytest

import sppdet
from sppdet.detector import Detections
from sppdet.errors import UserError
from sppdet.runtime import single_threaded
from sppdet.tiling import Tiling, detect_tiled, make_tiling, merge, tile_origins
from test_detector import bare_detector


@pytest.mark.parametrize("length, tile, overlap, expected", [
    (1000, 400, 0.25, [0, 300, 600]),  # step 300: exactly three
    (1000, 400, 0.0, [0, 300, 600]),  # 2.5 tiles' worth: three, spread evenly (overlap 100 > 0)
    (1000, 400, 0.5, [0, 200, 400, 600]),
    (1001, 400, 0.25, [0, 200, 401, 601]),  # one pixel more needs a fourth tile (601 / 3 apart, rounded)
    (400, 400, 0.25, [0]), (300, 400, 0.9, [0]),  # no longer than a tile: one
    (401, 400, 0.5, [0, 1]),
    (800, 400, 0.0, [0, 400]),  # abutting, no overlap asked
])
def test_tile_origins_by_hand(length, tile, overlap, expected):
    assert tile_origins(length, tile, overlap) == expected


def test_tile_origins_cover_exactly_and_overlap_at_least_as_asked():
    rng = np.random.default_rng(0)
    for _ in range(300):
        tile = int(rng.integers(16, 600))
        length = int(rng.integers(1, 5000))
        overlap = float(rng.choice([0.0, 0.1, 0.25, 0.5, 0.9, rng.uniform(0, 0.99)]))
        o = tile_origins(length, tile, overlap)
        assert o[0] == 0 and o == sorted(set(o))
        if length <= tile:
            assert o == [0]
            continue
        assert o[-1] + tile == length  # the last tile is flush with the border
        gaps = np.diff(o)
        assert (tile - gaps >= overlap * tile - 1).all()  # overlap as asked (rounding: one pixel)
        # and as few tiles as that allows: one fewer, evenly spread, would be further apart than a step
        if len(o) > 2:
            assert (length - tile) / (len(o) - 2) > tile * (1 - overlap) - 1e-9


def test_windows_cover_every_pixel_and_stay_inside():
    t = Tiling(300, 0.3)
    for w, h in ((1234, 777), (300, 300), (299, 1000), (1, 1)):
        seen = np.zeros((h, w), int)
        for x0, y0, x1, y1 in t.windows(w, h):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert x1 - x0 == min(300, w) and y1 - y0 == min(300, h)
            seen[y0:y1, x0:x1] += 1
        assert seen.min() >= 1
    assert t.passes(1234, 777)[0] == (0, 0, 1234, 777) and len(t.passes(1234, 777)) == 1 + 6 * 4  # step 210: 934 / 210 → 5 steps + 1, 477 / 210 → 3 + 1
    assert t.passes(300, 200) == [(0, 0, 300, 200)]  # one tile is the whole image: one pass
    assert Tiling(300, 0.3, whole=False).passes(1234, 777)[0] != (0, 0, 1234, 777)


@pytest.mark.parametrize("tile, overlap, message", [
    (8, 0.25, "below the trunk's stride of 16 px"), (0, 0.25, "below the trunk's stride"),
    (300, 1.0, r"in \[0, 1\)"), (300, -0.1, r"in \[0, 1\)"), (300, float("nan"), r"in \[0, 1\)"),
    (300.5, 0.25, "whole number"), (True, 0.25, "whole number"), ("300", 0.25, "whole number"),
])
def test_make_tiling_refuses(tile, overlap, message):
    with pytest.raises(UserError, match=message):
        make_tiling(tile, overlap, 16)


def _dets(boxes, scores, labels, names=("a", "b")):
    return Detections(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(labels, int),
                      names=list(names), margins=np.array(scores, float))


def test_merge_maps_tiles_back_and_nms_per_class():
    det = bare_detector(nms=0.3, max_per_image=100)
    det.classes = ["a", "b"]
    whole = ((0, 0, 1000, 800), _dets([[100, 100, 149, 149]], [0.6], [0]))
    # the same object seen by a tile at (90, 80): kept, it scores higher; another class there too
    tile = ((90, 80, 390, 380), _dets([[10, 20, 59, 69], [10, 20, 59, 69], [200, 200, 209, 209]],
                                      [0.9, 0.5, 0.4], [0, 1, 0]))
    out = merge(det, [whole, tile], 1000, 800, Tiling(300, 0.25))
    got = sorted((tuple(b), round(s, 3), int(c)) for b, s, c in zip(out.boxes, out.scores, out.labels))
    assert got == [((100.0, 100.0, 149.0, 149.0), 0.5, 1), ((100.0, 100.0, 149.0, 149.0), 0.9, 0),
                   ((290.0, 280.0, 299.0, 289.0), 0.4, 0)]
    assert list(out.scores) == sorted(out.scores, reverse=True)
    # a box against the tile's inner right border (x 389) is dropped only with drop_border
    edge = ((90, 80, 390, 380), _dets([[280, 20, 299, 69]], [0.8], [0]))
    assert len(merge(det, [edge], 1000, 800, Tiling(300, 0.25))) == 1
    assert len(merge(det, [edge], 1000, 800, Tiling(300, 0.25, drop_border=True))) == 0
    # the image's own border is no tile border: a box there stays
    corner = ((0, 0, 300, 300), _dets([[0, 0, 20, 20]], [0.8], [0]))
    assert len(merge(det, [corner], 1000, 800, Tiling(300, 0.25, drop_border=True))) == 1
    # test.max_per_image caps each pass (Detector.detect), not the merge of many passes
    assert len(merge(bare_detector(max_per_image=1), [whole, tile], 1000, 800, Tiling(300, 0.25))) == 3


class SquareFinder:
    """A stand-in for ``Detector.detect`` with a trained detector's blind spot: it finds bright
    squares (their bounding boxes, as connected components), but only those at least ``least``
    pixels wide once the image is rescaled to a ``scale``-pixel short side, as the trunk sees it."""

    def __init__(self, scale=300, least=12):
        self.scale, self.least, self.calls = scale, least, []

    def __call__(self, image, proposals=None, threshold=None):
        from scipy import ndimage

        self.calls.append(image.shape)
        f = self.scale / min(image.shape[:2])
        lab, _ = ndimage.label(image[..., 0] > 128)
        boxes = [[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in ndimage.find_objects(lab)]
        boxes = [b for b in boxes if min(b[2] - b[0] + 1, b[3] - b[1] + 1) * f >= self.least]
        return _dets(boxes, np.linspace(0.9, 0.8, len(boxes)) if boxes else [], [0] * len(boxes))


def _canvas():
    """1500×1000 black with 20-px white squares (some across tile borders) and one of 400 px."""
    img = np.zeros((1000, 1500, 3), np.uint8)
    truth = []
    for x, y in ((40, 40), (290, 100), (600, 590), (1100, 300), (1390, 900), (700, 20), (880, 880)):
        img[y:y + 20, x:x + 20] = 255
        truth.append((x, y, x + 19, y + 19))
    img[450:850, 50:450] = 255
    truth.append((50, 450, 449, 849))
    return img, sorted(truth)


def test_tiles_find_the_small_squares_the_whole_image_misses():
    img, truth = _canvas()
    det = bare_detector(nms=0.3, max_per_image=100)
    det.classes = ["a", "b"]
    det.detect = finder = SquareFinder()
    whole = det.detect(img)
    assert [tuple(b) for b in whole.boxes] == [(50, 450, 449, 849)]  # 20 px → 6 px at a 300-px scale: missed
    tiled = detect_tiled(det, img, Tiling(300, 0.25, drop_border=True))
    assert len(finder.calls) == 1 + len(Tiling(300, 0.25).passes(1500, 1000))
    assert sorted(tuple(map(int, b)) for b in tiled.boxes) == truth  # each square once, in the canvas's pixels
    # keeping border boxes finds every square too, plus pieces of those cut by a tile border
    kept = detect_tiled(det, img, Tiling(300, 0.25))
    got = [tuple(map(int, b)) for b in kept.boxes]
    assert set(truth) <= set(got)
    for b in set(got) - set(truth):  # each extra is a piece inside a true square
        assert any(t[0] <= b[0] and t[1] <= b[1] and b[2] <= t[2] and b[3] <= t[3] for t in truth)


# In a process holding an onnxruntime session (tests/test_onnx_graph.py before this file), selective
# search gave a 256-px crop other windows in 3 of 40 calls (0 of 40 without; C rand()'s sequence was
# unchanged), and with the windows made the same for both paths (memoised by crop) the counts still
# parted (529 against 524): the torch stages' last bits move too. A test that only imports onnxruntime
# before this one was enough to make it fail once. The README says so (ONNX, "a known wrinkle").
@pytest.mark.xfail(strict=False, reason="fails after tests/test_onnx_graph.py in one process: with an onnxruntime "
                   "session alive, selective search and the torch stages are not repeatable to the last bit on "
                   "this near-tie run (the README's known wrinkle of the ONNX section)")
def test_the_real_detector_on_tiles(small_run, tmp_path):
    """det(img, tile=...) runs the detector on each tile crop and the whole image; sppdet.detect,
    which proposes each tile's windows in its workers, gives the same detections."""
    from PIL import Image

    from decisive import decisive

    d, det, imgs = small_run
    big = np.array(Image.open(imgs[0]).convert("RGB").resize((600, 450)))
    Image.fromarray(big).save(tmp_path / "big.png")
    # the tiny run's own margins all sit near the floor: at threshold 0 which near-ties survive
    # NMS and the cap turned on rounding (237 against 235 detections in one full suite run)
    det = decisive(det, big)
    seen = []
    real = det.detect

    def spy(image, proposals=None, threshold=None):
        seen.append(image.copy())
        return real(image, proposals, threshold)

    det.detect = spy
    try:
        with single_threaded():
            r = det(big, threshold=0.0, tile=256, overlap=0.25)
    finally:
        del det.detect
    passes = Tiling(256, 0.25).passes(600, 450)
    assert len(seen) == len(passes) == 1 + 3 * 3  # step 192: 344 and 194 px to cover → 2 steps + 1 each
    for crop, (x0, y0, x1, y1) in zip(seen, passes):
        np.testing.assert_array_equal(crop, big[y0:y1, x0:x1])
    assert len(r) > 0 and (r.boxes[:, :2] >= 0).all() and (r.boxes[:, 2] <= 599).all() and (r.boxes[:, 3] <= 449).all()
    res = sppdet.detect(det, [tmp_path / "big.png"], tmp_path / "o", threshold=0.0, tile=256, workers=1, paint=False)
    rows = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert res["detections"] == len(r)
    np.testing.assert_allclose(np.array([row["bbox"] for row in rows]), r.boxes, rtol=0, atol=1e-9)
    np.testing.assert_array_equal([row["score"] for row in rows], r.scores)
    with pytest.raises(UserError, match="stride"):
        det(big, tile=4)
    with pytest.raises(UserError, match="only applies to tiles"):
        sppdet.detect(det, [tmp_path / "big.png"], tmp_path / "p", overlap=0.5)
    assert not (tmp_path / "p").exists()
    with pytest.raises(UserError, match="another detect command"):  # other tiles: another result
        sppdet.detect(det, [tmp_path / "big.png"], tmp_path / "o", threshold=0.0, tile=300, workers=1, paint=False)


def test_the_benchmark_tool_canvases_and_recall(small_run, tmp_path, load_tool):
    """tools/tiling_benchmark.py: pasted objects keep their count and shrink by the paste scale;
    recall at a threshold counts the objects matched above it (hand-made case)."""
    tool = load_tool("tiling_benchmark")
    d, det, _ = small_run
    ds = sppdet.load_data(d / "data", "trainval", det.cfg, classes=det.classes)
    recs = ds.records[:5]
    canv = sppdet.load_data(tool.build_canvases(recs, tmp_path / "c", 900, 0.5, 4), "test", classes=det.classes)
    assert [r.width for r in canv.records] == [900, 900] and sum(len(r.boxes) for r in canv.records) == sum(
        len(r.boxes) for r in recs)
    widths = sorted(np.concatenate([r.boxes[:, 2] - r.boxes[:, 0] + 1 for r in recs]) * 0.5)
    pasted = sorted(np.concatenate([r.boxes[:, 2] - r.boxes[:, 0] + 1 for r in canv.records]))
    np.testing.assert_allclose(pasted, widths, atol=1.01)
    gt = {"a": (np.array([[1.0, 1, 10, 10], [21, 21, 30, 30]]), np.array([False, False]))}
    dets = [("a", 0.9, [1.0, 1, 10, 10]), ("a", 0.2, [21.0, 21, 30, 30]), ("a", 0.95, [50.0, 50, 60, 60])]
    assert tool.recall_at(gt, dets, 0.5) == 0.5 and tool.recall_at(gt, dets, 0.0) == 1.0
