"""Learned proposals (proposals.method=rpn): anchors derived from the training boxes (hand-worked),
the box frames between sppdet and torchvision, a network that learns to find objects on
synthetic maps, the run folder's rpn.pt and every bad input around it."""
import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torchvision.models.detection.image_list import ImageList

import sppdet
from sppdet.config import config_from_dict
from sppdet.errors import UserError
from sppdet.features import ScaleMap
from sppdet.proposals.rpn import (RPNModel, RPNProposer, RPNSettings, RPNTrainItem, _to_original, _to_scaled,
                                  derive_anchors, load_rpn, pick_scale, rpn_blob, train_rpn)


def _iou(a, b):
    """IoU of two inclusive-pixel boxes, written out by hand (the devkit's +1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_derive_anchors_hand_worked():
    # sides 32 and 128 (1st and 99th percentiles): half-octave steps 32 .. 128 = 5 sizes
    sides = np.array([32.0] * 50 + [128.0] * 50)
    # aspects half 0.5, half 2: percentiles 10/50/90 = 0.5, 1.25 (midway), 2
    aspects = np.array([0.5] * 50 + [2.0] * 50)
    sizes, ratios = derive_anchors(sides, aspects, stride=16)
    assert sizes == [32.0, 45.3, 64.0, 90.5, 128.0]
    assert ratios == [0.5, 1.25, 2.0]
    # one shape only: one size, one ratio; tiny boxes are lifted to half the stride
    assert derive_anchors(np.full(10, 3.0), np.ones(10), stride=16) == ([8.0], [1.0])
    # a huge spread is capped at 8 sizes that still span it
    s, _ = derive_anchors(np.geomspace(10, 5000, 200), np.ones(200), stride=16)
    assert len(s) == 8 and s[0] == pytest.approx(np.quantile(np.geomspace(10, 5000, 200), 0.01), abs=0.1)
    assert s[-1] == pytest.approx(np.quantile(np.geomspace(10, 5000, 200), 0.99), rel=0.01)
    # no boxes at all (only empty images): a generic set, not a crash
    assert derive_anchors(np.zeros(0), np.zeros(0), 16)[0]


def test_box_frames_hand_worked():
    # inclusive [0, 0, 9, 19] is the continuous [0, 0, 10, 20]; at factor 2 it is [0, 0, 20, 40]
    t = _to_scaled(np.array([[0, 0, 9, 19]]), 2.0)
    assert t.tolist() == [[0.0, 0.0, 20.0, 40.0]]
    np.testing.assert_allclose(_to_original(t, 2.0), [[0, 0, 9, 19]], atol=1e-5)


def test_pick_scale():
    assert pick_scale([688]) == 688
    assert pick_scale([480, 576, 688, 864, 1200]) == 688
    assert pick_scale([480, 1200]) == 480
    assert pick_scale([480, 1200], 1200) == 1200
    with pytest.raises(UserError, match="rpn_scale"):
        pick_scale([480], 688)


@pytest.mark.parametrize("offset", [0.0, 15.0])
def test_anchors_sit_on_the_trunk_cells_whatever_the_image_size(offset):
    """AnchorGenerator infers the stride from the batch size; a 917-px-wide image with a 58-cell
    map would give 917 // 58 = 15 px. The model must use the trunk's 16, and centre anchors on
    the cells (16 i + offset: alexnet's 15)."""
    s = RPNSettings(8, 16, offset, 688, [32.0], [1.0])
    torch.manual_seed(0)
    m = RPNModel(s).eval()
    captured = {}
    orig = m.rpn.anchor_generator.forward

    def spy(images, feats):
        out = orig(images, feats)
        captured["anchors"] = out[0]
        return out

    m.rpn.anchor_generator.forward = spy
    with torch.no_grad():
        m(torch.zeros(8, 43, 58), (688, 917))
    a = captured["anchors"]
    centres = (a[:, 0] + a[:, 2]) / 2
    assert a.shape[0] == 43 * 58 and float(centres.max()) == 57 * 16 + offset and float(centres.min()) == offset
    # proposals may start at the image's first pixel whatever the offset (clipping is in the image's frame)
    with torch.no_grad():
        boxes, _ = m(torch.randn(8, 43, 58), (688, 917))
    assert float(boxes[0][:, :2].min()) == 0.0


def _synthetic_items(n, seed, size=320, channels=8):
    """Maps on which objects are plainly visible: inside a box, channel 0 is 1 and channels 1-4
    hold the distances (in cells) to its four sides, so objectness and extents can be learnt."""
    rng = np.random.default_rng(seed)
    cells = size // 16
    items = []
    for _ in range(n):
        fmap = np.zeros((channels, cells, cells), np.float32)
        boxes = []
        for _ in range(rng.integers(1, 4)):
            side = int(rng.integers(48, 112))
            x1, y1 = (int(v) for v in rng.integers(0, size - side, 2))
            b = [x1, y1, x1 + side - 1, y1 + side - 1]
            boxes.append(b)
            for cy in range(cells):
                for cx in range(cells):
                    px, py = cx * 16, cy * 16
                    if b[0] <= px <= b[2] and b[1] <= py <= b[3]:
                        fmap[:, cy, cx] = [1, (px - b[0]) / 16, (b[2] - px) / 16, (py - b[1]) / 16,
                                           (b[3] - py) / 16, 0, 0, 0]
        m = [ScaleMap(1.0, torch.from_numpy(fmap).half())]
        items.append(RPNTrainItem(lambda m=m: m, np.array(boxes, np.float64), size, size))
    return items


def _recall(proposer, items, k, thr):
    hit = tot = 0
    for it in items:
        props = proposer.propose("x", None, it.maps, (it.width, it.height))[:k]
        for g in it.boxes:
            tot += 1
            hit += max(_iou(g, p) for p in props) >= thr
    return hit / tot


def test_rpn_learns_to_find_objects_and_is_reproducible():
    train, test = _synthetic_items(40, 0), _synthetic_items(12, 1)
    s = RPNSettings(8, 16, 0.0, 320, [56.0, 80.0, 112.0], [1.0], max_boxes=100, min_size=4)
    torch.manual_seed(0)
    untrained = RPNProposer(RPNModel(s), [320])
    model, log = train_rpn(s, train, [320], epochs=8, lr=0.05, val_fraction=0.1, seed=0)
    trained = RPNProposer(model, [320])
    # a crude map and 288 steps: among its top 20 windows the network must place far more
    # objects tightly (IoU 0.7) than the same network untrained, whose windows are its anchors
    # (a wrong box frame or stride leaves it there); measured: 0.53 against 0.03. The empty map
    # gives many anchors equal objectness; at rate 0.01 the network was still so weak that their
    # order (anchor index, or torchvision's sort's) moved its recall between 0.43 and 0.53
    r_trained, r_untrained = _recall(trained, test, 20, 0.7), _recall(untrained, test, 20, 0.7)
    assert r_trained >= 0.45 and r_trained > r_untrained + 0.25, (r_trained, r_untrained)
    assert log["held_out"] == 4 and 1 <= log["best_epoch"] <= 8 and len(log["epochs"]) >= log["best_epoch"]
    # the same seed gives the same network bit for bit
    again, _ = train_rpn(s, train, [320], epochs=8, lr=0.05, val_fraction=0.1, seed=0)
    assert again.digest() == model.digest()
    # proposals are inside the image, inclusive pixels, best first, at most max_boxes
    p = trained.propose("x", None, test[0].maps, (320, 320))
    assert p.dtype == np.float32 and len(p) <= 100 and (p >= 0).all() and (p <= 319).all()
    assert (p[:, 2] >= p[:, 0]).all() and (p[:, 3] >= p[:, 1]).all()


def test_rpn_file_round_trip_and_damage(tmp_path):
    s = RPNSettings(8, 16, 0.0, 320, [32.0, 64.0], [0.5, 1.0])
    model = RPNModel(s)
    path = tmp_path / "rpn.pt"
    torch.save(rpn_blob(model), path)
    assert load_rpn(path).digest() == model.digest()

    with pytest.raises(UserError, match="missing"):
        load_rpn(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="damaged"):
        load_rpn(tmp_path / "junk.pt")
    torch.save({"format": 1, "settings": {"channels": 8}, "state": {}}, tmp_path / "few.pt")
    with pytest.raises(UserError, match="damaged"):
        load_rpn(tmp_path / "few.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match="not an sppdet proposal-network file"):
        load_rpn(tmp_path / "list.pt")
    for value, what in ((float("nan"), "NaN"), (0.5, "digest")):
        blob = rpn_blob(model)
        w = blob["state"]["rpn.head.cls_logits.weight"]
        w.view(-1)[0] = value
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(UserError, match=what):
            load_rpn(tmp_path / "bad.pt")
    blob = rpn_blob(model)
    blob["settings"]["sizes"] = [-4.0]
    torch.save(blob, tmp_path / "neg.pt")
    with pytest.raises(UserError, match="damaged"):
        load_rpn(tmp_path / "neg.pt")


@pytest.mark.parametrize("overrides,match", [
    ({"method": "rcnn", "proposals": {"method": "rpn"}}, "method=rcnn"),
    ({"proposals": {"method": "rpn", "rpn_scale": 500}}, "rpn_scale"),
    ({"proposals": {"method": "rpn", "rpn_anchor_sizes": [-3]}}, "rpn_anchor_sizes"),
    ({"proposals": {"method": "rpn", "rpn_aspect_ratios": [1, 1]}}, "rpn_aspect_ratios"),
    ({"proposals": {"rpn_nms": 0}}, "rpn_nms"),
    ({"proposals": {"rpn_epochs": 0}}, "rpn_epochs"),
    ({"proposals": {"rpn_val_fraction": 0.9}}, "rpn_val_fraction"),
])
def test_rpn_settings_it_cannot_serve_are_refused(overrides, match):
    with pytest.raises(UserError, match=match):
        config_from_dict(overrides)


def test_auto_chooses_by_the_number_of_training_objects():
    from sppdet.config import ProposalConfig
    from sppdet.proposals import choose_method

    auto = ProposalConfig()  # the default
    assert auto.method == "auto" and auto.rpn_min_objects == 1000
    assert choose_method(auto, 1000)[0] == "rpn" and choose_method(auto, 999)[0] == "selective_search"
    assert "999 training objects" in choose_method(auto, 999)[1]
    assert choose_method(auto, 10 ** 6, "rcnn")[0] == "selective_search"  # no whole-image map
    for m in ("selective_search", "rpn", "external"):
        assert choose_method(ProposalConfig(method=m), 0) == (m, "configured")


def test_proposal_recall_of_rpn_needs_a_run(tmp_path):
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "data", 4, 0)
    with pytest.raises(UserError, match="--run"):
        sppdet.proposal_recall(tmp_path / "data", "test", out=tmp_path / "o", overrides=["proposals.method=rpn"],
                               cache=tmp_path / "c")


# the default method (auto) with its threshold lowered: the tiny set gets a network
FAST = {"features": {"scales": [320]}, "svm": {"retrain_limit": 500},
        "proposals": {"rpn_min_objects": 10, "rpn_epochs": 2, "rpn_max_boxes": 200}}


@pytest.fixture(scope="module")
def rpn_run(tmp_path_factory, tiny_data):
    d = tmp_path_factory.mktemp("rpn")
    tiny_data(d, 12)
    det = sppdet.train(d / "data", d / "run", cache=d / "cache", eval_split="test",
                       backbone={"weights": str(d / "w.pth")}, **FAST)
    return d, det


def test_rpn_run_end_to_end(rpn_run, tmp_path):
    d, det = rpn_run
    log = json.loads((d / "run" / "train_log.json").read_text())
    # the log says what was chosen and learnt, stage by stage
    assert log["rpn"]["anchors"] == "derived from the training boxes" and log["rpn"]["scale"] == 320
    assert log["rpn"]["anchor_sizes"] and log["rpn"]["aspect_ratios"] and log["rpn"]["epochs"]
    assert {"rpn training", "rpn proposals"} <= set(log["timings_s"])
    assert log["proposals"]["method"] == "rpn" and log["proposals"]["why"].startswith("auto: ")
    assert (d / "run" / "rpn.pt").is_file() and det.cfg.proposals.method == "rpn"
    loaded = sppdet.load(d / "run")
    assert loaded.rpn is not None and loaded.rpn.digest() == det.rpn.digest()
    img = next((d / "data").rglob("*.jpg"))
    r = loaded(str(img))
    assert r.timings["proposals"] > 0 and r.boxes.shape[1] == 4
    # the cached path (eval) and the uncached one (detector(image)) agree
    m = sppdet.evaluate(d / "run", data=d / "data", split="test", out=tmp_path / "ev", cache=d / "cache")
    assert m["mAP"] == det.metrics["mAP"]
    res = sppdet.detect(d / "run", [img], tmp_path / "det", paint=False)
    rows = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert res["images"] == 1 and len(rows) == len(r)
    for row, b, s in zip(rows, r.boxes, r.scores):
        np.testing.assert_allclose(row["bbox"], b, atol=1e-4)
        assert math.isclose(row["score"], float(s), rel_tol=1e-5, abs_tol=1e-6)


def test_rpn_run_damage_is_named(rpn_run, tmp_path):
    import shutil

    d, _ = rpn_run
    run = tmp_path / "run"
    shutil.copytree(d / "run", run)
    (run / "rpn.pt").unlink()
    with pytest.raises(UserError, match="rpn.pt.*missing"):
        sppdet.load(run)
    # the network of another training (a whole, valid file: only model.pt's record tells)
    other = RPNModel(RPNSettings(**torch.load(d / "run" / "rpn.pt", weights_only=True)["settings"]))
    torch.save(rpn_blob(other), run / "rpn.pt")
    with pytest.raises(UserError, match="different training"):
        sppdet.load(run)


def test_proposal_recall_compares_a_run_with_selective_search(rpn_run, tmp_path):
    d, _ = rpn_run
    res = sppdet.proposal_recall(d / "data", "test", out=tmp_path / "p", runs=[d / "run"], cache=d / "cache",
                                 overrides=["proposals.max_boxes=100", "proposals.work_size=200",
                                            "features.scales=[320]"])
    assert len(res["methods"]) == 2 and "R@0.5 / R@0.7 top 300" in res["comparison"]
    table = json.loads((tmp_path / "p" / "comparison.json").read_text())
    for name, row in table.items():
        for k in ("100", "300"):
            assert 0 <= row["all"][k]["0.5"] <= 1 and row["all"][k]["0.7"] <= row["all"][k]["0.5"]
    assert (tmp_path / "p" / "proposal_recall.png").stat().st_size > 0


def test_bench_times_the_run_with_its_network_all_in(rpn_run, tmp_path):
    d, _ = rpn_run
    res = sppdet.bench(d / "data", "test", images=1, rcnn_images=1, out=tmp_path / "b", run=d / "run",
                       overrides=["proposals.max_boxes=40", "proposals.mode=fast"], cache=d / "cache")
    row = res["methods"]["spp-1scale-rpn"]
    assert row["proposals"] == "rpn on the conv map" and row["windows_per_image"] <= 200
    s = row["seconds_per_image"]
    assert s["proposals"] > 0 and s["total_with_proposals"] == pytest.approx(s["total"] + s["proposals"])
    has_ort = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    assert set(res["speedup_all_in_vs_rcnn"]) == {"spp-1scale", "spp-5scale", "spp-1scale-rpn"} | (
        {"onnxruntime"} if has_ort else set())
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "All in (proposals included)" in md
    if has_ort:  # the same run's graph on onnxruntime, its network inside the graph
        o, m = res["onnxruntime"], res["methods"]
        assert o["vs"] == "spp-1scale-rpn" and m["onnxruntime"]["seconds_per_image"]["graph"] > 0
        assert o["speedup_all_in"] == pytest.approx(m["spp-1scale-rpn"]["seconds_per_image"]["total_with_proposals"]
                                                    / m["onnxruntime"]["seconds_per_image"]["total_with_proposals"])
        assert "onnxruntime (" in md and "against the torch detector on the same run (spp-1scale-rpn)" in md
    else:
        assert res["onnxruntime"].startswith("no onnxruntime row:") and "onnxruntime" not in res["methods"]


def test_images_without_objects_and_a_single_tiny_box(caplog):
    """Background-only images are negatives for the network, not a crash; a class whose only
    box is smaller than the stride gets the smallest anchor the map can place, with a warning."""
    import logging

    from sppdet.backbones import get_spec
    from sppdet.config import ProposalConfig
    from sppdet.proposals.rpn import rpn_settings

    items = _synthetic_items(6, 2)
    blank = [ScaleMap(1.0, torch.zeros(8, 20, 20).half())]
    items += [RPNTrainItem(lambda: blank, np.zeros((0, 4)), 320, 320) for _ in range(4)]
    s = RPNSettings(8, 16, 0.0, 320, [56.0, 80.0], [1.0], max_boxes=50)
    model, log = train_rpn(s, items, [320], epochs=2, lr=0.01, val_fraction=0.0, seed=0)
    assert len(log["epochs"]) == 2 and all(math.isfinite(e["train_loss"]) for e in log["epochs"])

    class Trunk:  # what rpn_settings reads of a trunk
        stride, offset, channels = get_spec("mobilenet_v2").stride, 0.0, 8

    tiny = [RPNTrainItem(lambda: blank, np.array([[10, 10, 12, 13]], np.float64), 320, 320)]
    with caplog.at_level(logging.WARNING):
        settings, note = rpn_settings(ProposalConfig(method="rpn"), Trunk, [320], 2000, tiny)
    assert settings.sizes == [8.0] and note["anchors"] == "derived from the training boxes"
    assert "below half the trunk's stride" not in caplog.text  # lifted to half the stride: placeable
    with caplog.at_level(logging.WARNING):
        rpn_settings(ProposalConfig(method="rpn", rpn_anchor_sizes=[4.0]), Trunk, [320], 2000, tiny)
    assert "below half the trunk's stride" in caplog.text


def test_a_second_training_on_a_warm_cache(rpn_run, tmp_path, caplog):
    """The maps are cached by the first training; the second reads them (no proposals are
    cached before its network exists) and says so."""
    import logging

    d, det = rpn_run
    with caplog.at_level(logging.INFO, logger="sppdet"):
        again = sppdet.train(d / "data", tmp_path / "run2", cache=d / "cache",
                             backbone={"weights": str(d / "w.pth")}, **FAST)
    assert "read from the cache" in caplog.text and str(d / "cache") in caplog.text
    assert again.rpn.digest() == det.rpn.digest()  # same maps, same seed: the same network


def test_equal_objectness_is_ranked_by_anchor_index():
    """A flat map gives every anchor the same objectness: inference must rank the ties by anchor
    index (what the exported graph's stable TopK does), so the survivors of NMS are those of
    greedy NMS over the anchors in index order, worked out here without torchvision."""
    s = RPNSettings(8, 16, 0.0, 320, [40.0], [1.0], nms=0.3, pre_nms=10000, max_boxes=1000, min_size=1)
    m = RPNModel(s).eval()
    with torch.no_grad():
        for p in m.rpn.head.parameters():
            p.zero_()  # objectness 0 everywhere, box deltas 0: the proposals are the anchors
        boxes, _ = m(torch.zeros(8, 5, 7), (80, 112))
        a = m.rpn.anchor_generator(ImageList(torch.zeros(1, 8, 80, 112), [(80, 112)]), [torch.zeros(1, 8, 5, 7)])[0]
    a[:, 0::2] = a[:, 0::2].clamp(0, 112)
    a[:, 1::2] = a[:, 1::2].clamp(0, 80)

    def iou(p, q):
        iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = iw * ih
        return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)

    kept = []
    for i in range(len(a)):
        if all(iou(a[i].tolist(), a[j].tolist()) <= 0.3 for j in kept):
            kept.append(i)
    torch.testing.assert_close(boxes[0], a[kept])
