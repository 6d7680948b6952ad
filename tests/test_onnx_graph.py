"""The pieces of the exported graph (sppdet.onnx_graph), each exported alone and run by
onnxruntime against the numpy/torch code it replaces: the window→cell mapping and SPP layer
against sppdet.ops, the per-class NMS against torchvision, the sigmoid against
calibration.sigmoid, box regression against bbox_regression, the RPN against RPNProposer
(skipped where onnx/onnxruntime are not installed)."""
import importlib.util
import io
import warnings

import numpy as np
import pytest
import torch

# looked up, not imported: onnxruntime loaded at collection would sit in the pytest process from
# the first test on, and with it loaded a tiny run's detections of one image differed between
# calls in the bad-input tests (float rounding through near-ties; sppdet itself imports it only
# for the onnxruntime engine). It is imported by the first test here that uses it.
if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    pytest.skip("onnx and onnxruntime are not installed: pip install 'sppdet[onnx]'", allow_module_level=True)

from sppdet import onnx_graph as G  # noqa: E402


def run_onnx(module, args, names, dynamic, feeds_list):
    """Export ``module`` traced on ``args`` and run it on each feed dict: the outputs per feed."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "torch.tensor results are registered", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(module.eval(), tuple(args), buf, dynamo=False, opset_version=17, input_names=names,
                          dynamic_axes=dynamic)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    return [s.run(None, f) for f in feeds_list]


# -- the pieces ----------------------------------------------------------------------------------
class _Pool(torch.nn.Module):
    def __init__(self, levels, channels_last, stride, offset):
        super().__init__()
        self.levels, self.cl, self.stride, self.offset = levels, channels_last, stride, offset

    def forward(self, fmap, windows, factor):
        shape = torch._shape_as_tensor(fmap)
        cells = G.window_cells(windows, factor, self.stride, self.offset, shape[2], shape[3])
        return cells, G.spp_layer(fmap, cells, self.levels, self.cl)


def _every_window(mh, mw, stride, factor, rng):
    """Image boxes whose cells take every width and height the map allows (each start), plus
    random, tiny (collapsing to one cell), fractional and out-of-image boxes."""
    s = stride / factor
    rows = [[x * s, y * s, (x + w) * s, (y + h) * s] for w in range(1, mw + 1) for h in (1, 2, mh // 2, mh)
            for x in range(0, mw - w + 1, max(1, (mw - w) // 3 or 1)) for y in (0, mh - h)]
    rows += [[x * s, y * s, (x + w) * s, (y + h) * s] for h in range(1, mh + 1) for w in (1, 2, mw)
             for x in (0, mw - w) for y in range(0, mh - h + 1, max(1, (mh - h) // 3 or 1))]
    r = rng.uniform(-20, max(mh, mw) * s + 20, (300, 4))
    rows += np.stack([np.minimum(r[:, 0], r[:, 2]), np.minimum(r[:, 1], r[:, 3]),
                      np.maximum(r[:, 0], r[:, 2]), np.maximum(r[:, 1], r[:, 3])], 1).tolist()
    c = rng.uniform(0, mw * s, (50, 2))
    rows += np.concatenate([c, c + rng.uniform(0, s, (50, 2))], 1).tolist()  # smaller than a cell
    rows += [[7.5, 7.5, 7.5, 7.5], [0, 0, 0, 0], [s * 3 - 0.5, s * 2 + 0.25, s * 7 + 0.5, s * 5 - 0.25]]
    return np.asarray(rows, dtype=np.float64)


@pytest.mark.parametrize("levels,channels_last,offset", [((6, 3, 2, 1), True, 0.0), ((6, 3, 2, 1), False, 15.0),
                                                         ((5, 3, 1), True, 7.5), ((4, 2), False, 0.0)])
def test_graph_pooling_is_sppdets_window_mapping_and_spp_layer(levels, channels_last, offset):
    from sppdet.ops import map_windows, spp_pool

    rng = np.random.default_rng(0)
    stride = 16
    m = _Pool(list(levels), channels_last, stride, offset)
    cases = []
    for mh, mw, factor in ((23, 31, 0.6875), (9, 40, 1.37), (1, 1, 0.05), (41, 17, 0.333333)):
        fmap = torch.randn(1, 6, mh, mw).half().float()  # distinct values: any wrong cell shows
        wins = _every_window(mh, mw, stride, factor, rng)
        cases.append((fmap, wins, factor))
    f0 = cases[0]
    outs = run_onnx(m, (f0[0], torch.from_numpy(f0[1][:5]), torch.tensor(f0[2], dtype=torch.float64)),
                    ["fmap", "windows", "factor"], {"fmap": {2: "h", 3: "w"}, "windows": {0: "k"}},
                    [{"fmap": c[0].numpy(), "windows": c[1], "factor": np.array(c[2])} for c in cases])
    for (fmap, wins, factor), (cells, pooled) in zip(cases, outs):
        ref_cells = map_windows(wins * factor, stride, offset, fmap.shape[2], fmap.shape[3])
        np.testing.assert_array_equal(cells, ref_cells)
        ref = spp_pool(fmap[0].half(), torch.from_numpy(ref_cells), levels, impl="table",
                       channels_last=channels_last).numpy()
        np.testing.assert_array_equal(pooled, ref)  # maxima: exact


def test_class_nms_is_torchvisions_per_class_nms():
    from torchvision.ops import batched_nms

    class M(torch.nn.Module):
        def forward(self, boxes, scores, classes, iou):
            return G.class_nms(boxes, scores, classes, 4, iou)

    rng = np.random.default_rng(1)
    feeds, refs = [], []
    for n, iou in ((60, 0.3), (300, 0.5), (1, 0.7), (0, 0.3)):
        xy = rng.uniform(0, 200, (n, 2))
        b = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], 1).astype(np.float32)
        s = rng.normal(0, 1, n).astype(np.float32)
        c = rng.integers(0, 4, n).astype(np.int64)
        feeds.append({"boxes": b, "scores": s, "classes": c, "iou": np.array(iou, np.float32)})
        refs.append(batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), iou).numpy())
    f = feeds[0]
    outs = run_onnx(M(), [torch.from_numpy(f[k]) for k in ("boxes", "scores", "classes", "iou")],
                    ["boxes", "scores", "classes", "iou"], {"boxes": {0: "n"}, "scores": {0: "n"}, "classes": {0: "n"}},
                    feeds)
    for (keep,), ref, f in zip(outs, refs, feeds):
        assert sorted(keep.tolist()) == sorted(ref.tolist())
        for c in range(4):  # within a class, by decreasing score
            mine = [k for k in keep if f["classes"][k] == c]
            assert mine == [k for k in ref if f["classes"][k] == c]
        eager = G.class_nms(*(torch.from_numpy(f[k]) for k in ("boxes", "scores", "classes")), 4,
                            torch.tensor(f["iou"])).numpy()
        np.testing.assert_array_equal(eager, keep)


def test_platt_and_box_deltas_are_calibrations_and_bbox_regressions():
    from sppdet.bbox_regression import apply_deltas
    from sppdet.calibration import sigmoid

    class M(torch.nn.Module):
        def forward(self, margins, ab, boxes, deltas):
            return G.platt(margins, ab), G.apply_deltas(boxes, deltas)

    rng = np.random.default_rng(2)
    m = np.concatenate([rng.normal(0, 3, (50, 3)), [[40.0, 80.0, -1.0], [19.9, 90.0, 1e4]]]).astype(np.float32)
    ab = np.array([[1.5, -0.5], [0.3, 2.0], [2.0, 0.0]])
    xy = rng.uniform(0, 300, (52, 3, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 80, (52, 3, 2))], 2)
    deltas = rng.normal(0, 1, (52, 3, 4)) * [0.2, 0.2, 3, 3]  # some beyond the ±4 log clip
    (p, b), = run_onnx(M(), [torch.from_numpy(v) for v in (m, ab, boxes, deltas)], ["margins", "ab", "boxes", "deltas"],
                       {}, [{"margins": m, "ab": ab, "boxes": boxes, "deltas": deltas}])
    ref = np.stack([sigmoid(m[:, c], *ab[c]) for c in range(3)], 1)
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-15)
    assert (np.diff(p[-2:, 1]) > 0).all() and p.max() < 1  # the tail keeps order past float64's 1
    ref_b = np.stack([apply_deltas(boxes[:, c], deltas[:, c]) for c in range(3)], 1)
    np.testing.assert_allclose(b, ref_b, rtol=0, atol=1e-9)


def _rpn_model(offset: float, min_size: int = 8):
    from sppdet.proposals.rpn import RPNModel, RPNSettings

    torch.manual_seed(4)
    s = RPNSettings(channels=8, stride=16, offset=offset, scale=320, sizes=[24.0, 48.0, 96.0], ratios=[0.5, 1.0, 2.0],
                    nms=0.7, pre_nms=400, max_boxes=60, min_size=min_size)
    model = RPNModel(s).eval()
    with torch.no_grad():  # random logits spread enough for NMS and top-k to matter
        for p in model.parameters():
            p.mul_(5)
    return model


class _RPNOnly(torch.nn.Module):
    def __init__(self, model, scale):
        super().__init__()
        self.g, self.scale = G.RPNGraph(model), scale

    def forward(self, fmap, scaled_hw, image_size):
        f = G.scale_factor(image_size, self.scale, 2000)
        return self.g(fmap, scaled_hw, image_size, f)


@pytest.mark.parametrize("offset,min_size", [(0.0, 8), (15.0, 8), (0.0, 100000)])
def test_rpn_graph_proposes_what_rpn_proposer_does(offset, min_size):
    from sppdet.features import ScaleMap, pyramid_sizes
    from sppdet.proposals.rpn import RPNProposer

    model = _rpn_model(offset, min_size)
    prop = RPNProposer(model, [320])
    torch.manual_seed(5)
    cases = []
    for H, W in ((240, 320), (500, 375), (100, 900)):
        (f, h, w), = pyramid_sizes(H, W, [320], 2000)
        fmap = torch.randn(1, 8, -(-h // 16), -(-w // 16)).half()
        ref = prop.propose("x", None, lambda: [ScaleMap(f, fmap[0])], (W, H))
        cases.append((fmap.float(), np.array([h, w]), np.array([H, W]), ref))
    mod = _RPNOnly(model, 320)
    for fmap, hw, HW, ref in cases:  # eager: the same windows, in the same order
        with torch.no_grad():
            got = mod(fmap, torch.from_numpy(hw), torch.from_numpy(HW)).numpy()
        np.testing.assert_array_equal(got, ref)
    c0 = cases[0]
    outs = run_onnx(mod, (c0[0], torch.from_numpy(c0[1]), torch.from_numpy(c0[2])), ["fmap", "hw", "size"],
                    {"fmap": {2: "h", 3: "w"}}, [{"fmap": c[0].numpy(), "hw": c[1], "size": c[2]} for c in cases])
    for (got,), (_, _, HW, ref) in zip(outs, cases):
        assert got.shape == ref.shape and len(ref) >= 1
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)  # exp of float32 may differ in its last bit
        if min_size > 1000:  # nothing is left: the whole image, as the proposer gives it
            np.testing.assert_array_equal(got, [[0, 0, HW[1] - 1, HW[0] - 1]])
