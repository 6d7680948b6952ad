"""The detector as one traceable torch module, for ONNX export (:mod:`sppdet.onnx_export`).

Every stage of :class:`sppdet.detector.Detector` is written again here with tensor operations
only, so that ``torch.onnx.export`` traces one graph from a resized image to the final
detections, with the image size, the window count and the detection count all dynamic:

- the trunk, its map rounded to fp16 as the detector keeps it;
- the proposal network (:class:`RPNGraph`): torchvision's RPN inference (anchors, box decoding,
  top-k, NMS) on tensors whose sizes come from the map, since torchvision's own
  ``filter_proposals`` takes the image size as Python ints (a trace would freeze them);
- the per-window part, a :class:`WindowHead` (the SPP layer, fc6/fc7, SVMs, Platt calibration
  and box regression for SVM runs, :class:`SVMHead`); a new kind of head is one builder in
  :data:`HEAD_BUILDERS`;
- per-class NMS, the score threshold and the per-image cap (:class:`Postprocess`).

The window→cell mapping and the sigmoid are computed in float64, as :mod:`sppdet.ops` and
:mod:`sppdet.calibration` compute them in numpy, so that every window lands on the same cells.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
import torchvision  # noqa: F401 - registers torch.ops.torchvision and its ONNX symbolics

from .calibration import MARGIN_FLOOR, TAIL
from .errors import UserError

# Graph inputs, in the order the traced forward takes them.
IMAGE, IMAGE_SIZE, WINDOWS = "image", "image_size", "windows"
SCORE_THRESHOLD, NMS_THRESHOLD, MAX_DETECTIONS, BOX_REGRESSION = (
    "score_threshold", "nms_threshold", "max_detections", "box_regression")
SETTINGS = (SCORE_THRESHOLD, NMS_THRESHOLD, MAX_DETECTIONS, BOX_REGRESSION)  # defaults from the run
OUTPUTS = ("boxes", "scores", "labels", "margins")


class _ClassNMS(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` over a class axis: ``boxes`` ``[1, N, 4]`` float32 (continuous
    coordinates), ``scores`` ``[1, C, N]`` float32, ``iou`` a float32 scalar → ``[M, 3]`` rows
    ``(0, class, box)``, class by class, each class by decreasing score. Only scores above
    ``-FLT_MAX`` take part (``-inf`` marks a box that is not of that class). The eager forward is
    the same algorithm (torchvision's NMS per class), so the module runs in torch too."""

    @staticmethod
    def forward(ctx, boxes, scores, iou):  # noqa: D401 - autograd API
        import warnings

        from torchvision.ops import nms

        rows = []
        with warnings.catch_warnings():  # a trace records the symbolic below, not these steps
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            for c in range(scores.shape[1]):
                idx = torch.nonzero(scores[0, c] > torch.finfo(torch.float32).min).flatten()
                keep = idx[nms(boxes[0, idx], scores[0, c, idx], float(iou))]
                rows.append(torch.stack([torch.zeros_like(keep), torch.full_like(keep, c), keep], 1))
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, iou):
        big = g.op("Constant", value_t=torch.tensor([2 ** 62], dtype=torch.int64))
        iou1 = g.op("Reshape", iou, g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64)))
        low = g.op("Constant", value_t=torch.tensor([torch.finfo(torch.float32).min], dtype=torch.float32))
        return g.op("NonMaxSuppression", boxes, scores, big, iou1, low)


class _FirstTwin(torch.autograd.Function):
    """``keys`` ``[K]`` int64 → ``[K]``: for each, the index of the first equal key (ONNX
    ``Unique``'s first-occurrence indices, gathered by its inverse), as
    :func:`sppdet.ops.first_twins` finds them."""

    @staticmethod
    def forward(ctx, keys):  # noqa: D401 - autograd API
        _, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        n = keys.shape[0]
        first = torch.full((n,), n, dtype=torch.int64).scatter_reduce(0, inverse, torch.arange(n), "amin")
        return first[inverse]

    @staticmethod
    def symbolic(g, keys):
        _, first, inverse, _ = g.op("Unique", keys, sorted_i=1, outputs=4)
        return g.op("Gather", first, inverse, axis_i=0)


def first_twin(cells: torch.Tensor, map_h: torch.Tensor, map_w: torch.Tensor) -> torch.Tensor:
    """Windows on the same cells of one map (``[K, 4]`` int64 ``x1, y1, x2, y2``): each one's
    first twin. The cells as one number: ``((x1·H + y1)·W + x2)·H + y2``."""
    h, w = map_h.to(torch.int64), map_w.to(torch.int64)
    return _FirstTwin.apply(((cells[:, 0] * h + cells[:, 1]) * w + cells[:, 2]) * h + cells[:, 3])


def class_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, n_classes: int,
              iou: torch.Tensor) -> torch.Tensor:
    """Indices of the boxes per-class NMS keeps (``[M]``, class by class): boxes ``[N, 4]``
    continuous, ``scores`` ``[N]``, ``classes`` ``[N]`` int64."""
    by_class = torch.where(classes[None, :] == torch.arange(n_classes)[:, None], scores[None, :],
                           torch.tensor(float("-inf")))
    return _ClassNMS.apply(boxes[None], by_class[None], iou)[:, 2]


def _topk_count(n: torch.Tensor, k) -> torch.Tensor:
    """``min(n, k)`` as a tensor, so a trace keeps it dynamic."""
    k = k if isinstance(k, torch.Tensor) else torch.tensor(int(k), dtype=torch.int64)
    return torch.minimum(n, k.to(torch.int64)).reshape(())


def _count(x: torch.Tensor) -> torch.Tensor:
    return torch._shape_as_tensor(x)[0]


def scale_factor(image_size: torch.Tensor, scale: int, max_size: int) -> torch.Tensor:
    """:func:`sppdet.features.scale_factors` for one scale, in float64: ``image_size`` is the
    original ``(height, width)`` (int64)."""
    hw = image_size.to(torch.float64)
    short, long_ = torch.min(hw), torch.max(hw)
    # on a [2] tensor: the exporter divides 0-d tensors in float32, and a factor rounded to
    # float32 moves windows that end exactly on a cell boundary onto the next cell
    ratios = torch.tensor([float(scale), float(max_size)], dtype=torch.float64) / torch.stack([short, long_])
    return torch.min(ratios)


def window_cells(windows: torch.Tensor, factor: torch.Tensor, stride: int, offset: float,
                 map_h: torch.Tensor, map_w: torch.Tensor) -> torch.Tensor:
    """:func:`sppdet.ops.map_windows` on float64 tensors, operation for operation:
    ``windows`` ``[K, 4]`` in original-image inclusive pixels → ``[K, 4]`` int64 cells."""
    b = windows * factor
    o, s = float(offset), float(stride)
    x1 = torch.floor((b[:, 0] - o) / s) + 1
    y1 = torch.floor((b[:, 1] - o) / s) + 1
    x2 = torch.ceil((b[:, 2] - o) / s) - 1
    y2 = torch.ceil((b[:, 3] - o) / s) - 1
    cx = torch.floor(((b[:, 0] + b[:, 2]) / 2 - o) / s + 0.5)
    cy = torch.floor(((b[:, 1] + b[:, 3]) / 2 - o) / s + 0.5)
    nx, ny = x2 < x1, y2 < y1
    x1, x2 = torch.where(nx, cx, x1), torch.where(nx, cx, x2)
    y1, y2 = torch.where(ny, cy, y1), torch.where(ny, cy, y2)
    zero = torch.zeros((), dtype=torch.float64)
    mw, mh = (map_w - 1).to(torch.float64), (map_h - 1).to(torch.float64)
    out = torch.stack([torch.minimum(torch.maximum(x1, zero), mw), torch.minimum(torch.maximum(y1, zero), mh),
                       torch.minimum(torch.maximum(x2, zero), mw), torch.minimum(torch.maximum(y2, zero), mh)], 1)
    return out.to(torch.int64)


def spp_layer(fmap: torch.Tensor, cells: torch.Tensor, levels: Sequence[int], channels_last: bool) -> torch.Tensor:
    """:func:`sppdet.ops.spp_pool` as graph operations: ``fmap`` ``[1, C, h, w]`` float32,
    ``cells`` ``[K, 4]`` int64 inclusive cells → ``[K, C * sum(n*n)]``. The finest levels are
    ``roi_pool`` (ONNX ``MaxRoiPool``, the same bins on integer boxes at scale 1), a level that
    divides a finer one is a max pool of its bins, as spp_pool derives it."""
    levels = [int(n) for n in levels]
    rois = torch.cat([torch.zeros_like(cells[:, :1]), cells], 1).to(torch.float32)
    order = sorted(set(levels), reverse=True)
    pooled: dict[int, torch.Tensor] = {}  # [K, C, n, n]
    for i, n in enumerate(order):
        src = next((m for m in reversed(order[:i]) if m % n == 0), None)
        if src is None:
            # torchvision's op itself: roi_pool's shape check would turn a traced size into a bool
            pooled[n] = torch.ops.torchvision.roi_pool(fmap, rois, 1.0, n, n)[0]
        else:
            k = src // n
            pooled[n] = nn.functional.max_pool2d(pooled[src], k, k)
    flat = [(pooled[n].permute(0, 2, 3, 1) if channels_last else pooled[n]).flatten(1) for n in levels]
    return torch.cat(flat, 1)


def apply_deltas(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """:func:`sppdet.bbox_regression.apply_deltas` in float64 over ``[..., 4]``."""
    w = boxes[..., 2] - boxes[..., 0] + 1
    h = boxes[..., 3] - boxes[..., 1] + 1
    px, py = boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h
    cx, cy = deltas[..., 0] * w + px, deltas[..., 1] * h + py
    nw = torch.exp(torch.clamp(deltas[..., 2], -4, 4)) * w
    nh = torch.exp(torch.clamp(deltas[..., 3], -4, 4)) * h
    return torch.stack([cx - 0.5 * nw, cy - 0.5 * nh, cx + 0.5 * nw - 1, cy + 0.5 * nh - 1], -1)


def platt(margins: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """:func:`sppdet.calibration.sigmoid` in float64: ``margins`` ``[K, C]``, ``ab`` ``[C, 2]``."""
    z = margins.to(torch.float64) * ab[:, 0] + ab[:, 1]
    tail = 1.0 - torch.exp(torch.tensor(-TAIL, dtype=torch.float64)) / (1.0 + (z - TAIL))
    return torch.where(z > TAIL, tail, torch.sigmoid(z))


class WindowHead(nn.Module):
    """The per-window part of the graph. ``forward(fmap, windows, factor, box_regression)``:
    ``fmap`` ``[1, C, h, w]`` float32 (the trunk's map), ``windows`` ``[K, 4]`` float64 in the
    original image's inclusive pixels, ``factor`` the float64 scale of the map's image,
    ``box_regression`` a bool scalar → ``(margins [K, n] float32, scores [K, n] float64,
    boxes [K, n, 4] float64)``: the raw scores NMS ranks by, the calibrated scores (``-inf``
    where a window can never be a detection of the class), and each class's box for each window
    (original pixels, not yet clipped)."""

    def __init__(self, stride: int, offset: float):
        super().__init__()
        self.stride, self.offset = int(stride), float(offset)

    def cells(self, fmap: torch.Tensor, windows: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        shape = torch._shape_as_tensor(fmap)
        return window_cells(windows, factor, self.stride, self.offset, shape[2], shape[3])


class SVMHead(WindowHead):
    """SPP-net's head (:meth:`Detector.detect_maps`/``postprocess``): SPP vectors → (fc7) → SVM
    margins (``-inf`` for classes that never trained) → Platt's sigmoid, candidates above the
    margin floor; ridge box regression on pool5 for the classes that have a regressor."""

    def __init__(self, det):
        ext = det.extractor
        super().__init__(ext.trunk.stride, ext.trunk.offset)
        self.levels, self.channels_last = list(ext.levels), bool(ext.channels_last)
        self.fc = None
        if det.head is not None:
            self.fc = nn.Sequential(det.head.fc6, nn.ReLU(), det.head.fc7, nn.ReLU())
        self.feat_scale, self.pool5_scale = float(det.feat_scale), float(det.pool5_scale)
        self.register_buffer("W", det.svm_W.float().clone())
        self.register_buffer("b", det.svm_b.float().clone())
        self.register_buffer("untrained", torch.as_tensor(det.untrained, dtype=torch.bool))
        self.register_buffer("ab", torch.as_tensor(det.platt, dtype=torch.float64))
        self.regress = det.bbox is not None
        if self.regress:
            n, dim = det.bbox.W.shape[:2]
            self.register_buffer("bW", torch.as_tensor(det.bbox.W).permute(1, 0, 2).reshape(dim, n * 4).float())
            self.register_buffer("bb", torch.as_tensor(det.bbox.b).reshape(n * 4).float())
            self.register_buffer("trained", torch.as_tensor(det.bbox.trained, dtype=torch.bool))

    def forward(self, fmap, windows, factor, box_regression):
        cells = self.cells(fmap, windows, factor)
        pool5 = spp_layer(fmap, cells, self.levels, self.channels_last)
        feats = (self.fc(pool5) if self.fc is not None else pool5) * self.feat_scale
        margins = torch.where(self.untrained, torch.tensor(float("-inf")), feats @ self.W + self.b)
        shape = torch._shape_as_tensor(fmap)
        margins = margins[first_twin(cells, shape[2], shape[3])]  # twins take one score, as in Detector
        scores = torch.where(margins > MARGIN_FLOOR, platt(margins, self.ab), torch.tensor(float("-inf"),
                                                                                            dtype=torch.float64))
        n = self.W.shape[1]
        boxes = windows[:, None, :].expand(-1, n, 4)
        if self.regress:
            deltas = ((pool5 * self.pool5_scale) @ self.bW + self.bb).reshape(-1, n, 4)
            moved = apply_deltas(boxes, deltas.to(torch.float64))
            boxes = torch.where((self.trained & box_regression)[None, :, None], moved, boxes)
        return margins, scores, boxes


# What builds the per-window part of a detector's graph, by its kind of head (``det.head_kind``;
# detectors without one are SVM runs). A new head: a WindowHead subclass and one entry here.
HEAD_BUILDERS: dict[str, Callable[..., WindowHead]] = {"svm": SVMHead}


def head_kind(det) -> str:
    return getattr(det, "head_kind", "svm")


def clip_to_image(boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Inclusive float64 boxes ``[K, 4]`` clipped to ``[0, W-1] x [0, H-1]`` of ``image_size``
    ``[H, W]`` (max then min: :func:`sppdet.boxes.clip`, which the detector uses)."""
    H, W = image_size[0].to(torch.float64), image_size[1].to(torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    return torch.stack([torch.minimum(torch.maximum(boxes[:, 0], zero), W - 1),
                        torch.minimum(torch.maximum(boxes[:, 1], zero), H - 1),
                        torch.minimum(torch.maximum(boxes[:, 2], zero), W - 1),
                        torch.minimum(torch.maximum(boxes[:, 3], zero), H - 1)], 1)


class RPNGraph(nn.Module):
    """:class:`sppdet.proposals.rpn.RPNProposer` on tensors: the trained RPN's head, its anchors,
    torchvision's box decoding, the top-k, clipping, small-box removal and NMS of
    ``RegionProposalNetwork.filter_proposals`` (one image, one level), then the proposer's own
    steps (back to the original image's inclusive pixels, clipped, windows under ``min_size``
    dropped, the whole image when none is left; float32 as it returns them)."""

    def __init__(self, model):
        super().__init__()
        s = model.settings
        rpn = model.rpn
        self.head = rpn.head
        self.box_coder = rpn.box_coder
        self.stride, self.offset = int(s.stride), float(s.offset)
        self.register_buffer("cell_anchors", rpn.anchor_generator.cell_anchors[0].float().clone())
        self.pre_nms, self.post_nms = int(rpn._pre_nms_top_n["testing"]), int(rpn._post_nms_top_n["testing"])
        self.nms, self.box_min, self.score_thresh = float(rpn.nms_thresh), float(rpn.min_size), float(rpn.score_thresh)
        self.min_size = float(s.min_size)

    def anchors(self, map_h: torch.Tensor, map_w: torch.Tensor) -> torch.Tensor:
        """torchvision's grid anchors (location-major, anchor-minor) moved onto the trunk's cells."""
        sx = torch.arange(map_w, dtype=torch.int64) * self.stride
        sy = torch.arange(map_h, dtype=torch.int64) * self.stride
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack((xx, yy, xx, yy), 1)
        return (shifts.view(-1, 1, 4) + self.cell_anchors.view(1, -1, 4)).reshape(-1, 4) + self.offset

    def forward(self, fmap: torch.Tensor, scaled_hw: torch.Tensor, image_size: torch.Tensor,
                factor: torch.Tensor) -> torch.Tensor:
        objectness, deltas = self.head([fmap])
        obj, reg = objectness[0], deltas[0]
        shape = torch._shape_as_tensor(fmap)
        mh, mw = shape[2], shape[3]
        a = self.cell_anchors.shape[0]
        obj = obj.permute(0, 2, 3, 1).reshape(-1)
        reg = reg.view(1, a, 4, mh, mw).permute(0, 3, 4, 1, 2).reshape(-1, 4)
        anchors = self.anchors(mh, mw)
        _, top = obj.topk(_topk_count(_count(obj), self.pre_nms))
        boxes = self.box_coder.decode_single(reg[top], anchors[top])
        prob = torch.sigmoid(obj[top])
        h, w = scaled_hw[0].to(torch.float32), scaled_hw[1].to(torch.float32)
        zero = torch.zeros(())
        boxes = torch.stack([torch.minimum(torch.maximum(boxes[:, 0], zero), w),
                             torch.minimum(torch.maximum(boxes[:, 1], zero), h),
                             torch.minimum(torch.maximum(boxes[:, 2], zero), w),
                             torch.minimum(torch.maximum(boxes[:, 3], zero), h)], 1)
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = torch.nonzero((bw >= self.box_min) & (bh >= self.box_min) & (prob >= self.score_thresh)).flatten()
        boxes, prob = boxes[keep], prob[keep]
        # ranked by objectness, equal ones by anchor index (ONNX TopK is stable), as _StableRPN ranks them
        position = -torch.arange(_count(prob), dtype=torch.int64).to(torch.float32)
        keep = class_nms(boxes, position, torch.zeros_like(keep), 1, torch.tensor(self.nms))
        keep = keep[:_topk_count(_count(keep), self.post_nms)]
        out = boxes[keep].to(torch.float64) / factor - torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
        out = clip_to_image(out, image_size)
        big = (out[:, 2] - out[:, 0] + 1 >= self.min_size) & (out[:, 3] - out[:, 1] + 1 >= self.min_size)
        out = out[torch.nonzero(big).flatten()]
        H, W = image_size[0].to(torch.float64), image_size[1].to(torch.float64)
        zero = torch.zeros((), dtype=torch.float64)
        whole = torch.stack([zero, zero, W - 1, H - 1])[None]
        # the whole image when nothing is left: the first max(K, 1) rows of [windows; whole]
        n = torch.maximum(_count(out), torch.ones((), dtype=torch.int64))
        return torch.cat([out, whole])[:n].to(torch.float32).to(torch.float64)


class Postprocess(nn.Module):
    """:meth:`Detector.postprocess` after the head: candidates above the threshold, their boxes
    clipped to the image, per-class NMS ranked by the margins, then the best ``max_detections``
    by score (ties by margin)."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = int(n_classes)

    def forward(self, margins, scores, boxes, image_size, threshold, nms_iou, max_detections):
        cand = torch.nonzero(scores > threshold)
        ks, cs = cand[:, 0], cand[:, 1]
        b = boxes[ks, cs]
        b = clip_to_image(b, image_size)
        m, s = margins[ks, cs], scores[ks, cs]
        # ranked by margin, equal margins (windows on the same cells) in window order as the
        # detector ranks them: NMS sees each candidate's position in that order (ONNX TopK is stable)
        _, rank = m.topk(_count(m))
        ks, cs, b, m, s = ks[rank], cs[rank], b[rank], m[rank], s[rank]
        cont = (b + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)).to(torch.float32)
        position = -torch.arange(_count(m), dtype=torch.int64).to(torch.float32)
        keep = class_nms(cont, position, cs, self.n_classes, nms_iou.to(torch.float32))
        # lexsort((-margin, -score)): by margin, then (ties in order) by score
        _, o = m[keep].topk(_count(keep))
        keep = keep[o]
        _, o = s[keep].topk(_topk_count(_count(keep), max_detections))
        keep = keep[o]
        return b[keep], s[keep], cs[keep], m[keep]


class DetectionGraph(nn.Module):
    """The traced module: inputs as :data:`IMAGE` … :data:`BOX_REGRESSION` (and :data:`WINDOWS`
    for runs whose windows come from the pixels), outputs :data:`OUTPUTS`."""

    def __init__(self, det):
        super().__init__()
        ext = det.extractor
        self.body = ext.trunk.body
        self.register_buffer("mean", ext.trunk.mean.clone())
        self.register_buffer("std", ext.trunk.std.clone())
        self.scale, self.max_size = int(ext.scales[0]), int(ext.max_size)
        self.rpn = RPNGraph(det.rpn) if det.rpn is not None else None
        kind = head_kind(det)
        if kind not in HEAD_BUILDERS:
            raise UserError(f"cannot export a detector with a {kind!r} head: no graph builder for it "
                            f"(known: {', '.join(HEAD_BUILDERS)})")
        self.head = HEAD_BUILDERS[kind](det)
        self.post = Postprocess(len(det.classes))

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ``[h, w, 3]`` uint8 RGB → the trunk's ``[1, C, h', w']`` map, rounded to fp16
        as :meth:`FeatureExtractor.compute` keeps it."""
        x = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0
        return self.body((x - self.mean) / self.std).to(torch.float16).to(torch.float32)

    def forward(self, image, image_size, score_threshold, nms_threshold, max_detections, box_regression,
                windows=None):
        fmap = self.feature_map(image)
        factor = scale_factor(image_size, self.scale, self.max_size)
        if self.rpn is not None:
            windows = self.rpn(fmap, torch._shape_as_tensor(image)[:2], image_size, factor)
        margins, scores, boxes = self.head(fmap, windows, factor, box_regression)
        return self.post(margins, scores, boxes, image_size, score_threshold, nms_threshold, max_detections)
