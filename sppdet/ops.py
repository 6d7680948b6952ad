"""The SPP layer, the image→feature-map window mapping, and best-scale selection.

Conventions: image boxes are ``(x1, y1, x2, y2)`` in 0-based, inclusive pixel indices
(py-faster-rcnn's; VOC's 1-based files are shifted on reading). Feature boxes are
inclusive integer cell indices.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.ops import roi_pool

from .boxes import area as box_area, extent


def spp_dim(channels: int, levels: Sequence[int] = (6, 3, 2, 1)) -> int:
    """Length of one pooled vector: ``C * sum(n*n)``."""
    return channels * sum(int(n) * int(n) for n in levels)


def spp_pool(
    feature_map: torch.Tensor,
    boxes: torch.Tensor | np.ndarray | None = None,
    levels: Sequence[int] = (6, 3, 2, 1),
    impl: str = "auto",
    chunk: int = 512,
    out: torch.Tensor | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Spatial pyramid max pooling of windows of one feature map (or of whole maps).

    ``feature_map``: ``[C, H, W]`` or ``[1, C, H, W]``; ``boxes``: ``[K, 4]`` inclusive
    integer cells ``(x1, y1, x2, y2)`` inside the map. Returns ``[K, C * sum(n*n)]``,
    level by level in the given order, each level the flattening of ``[C, n, n]``.
    Bin ``i`` of ``n`` over a window of width ``w`` starting at ``x1`` covers cells
    ``x1 + floor(i*w/n) … x1 + ceil((i+1)*w/n) - 1`` (paper, Appendix A), which is
    exactly what ``roi_pool`` does on integer boxes at scale 1, so no bin is empty.

    With ``boxes=None`` the whole map of every image in ``[N, C, H, W]`` is pooled
    (classification on any input size) → ``[N, C * sum(n*n)]``.

    A level ``n`` that divides an already computed finer level ``m`` is derived from it
    by a max over ``m/n × m/n`` groups of bins: bin ``i`` of ``n`` is exactly the union of
    bins ``ki … ki+k-1`` of ``m = kn`` (their starts and ends coincide), so {6,3,2,1}
    costs one ``roi_pool`` instead of four.

    ``impl``: ``"roi_pool"`` (torchvision, used on GPU), ``"table"`` (an exact range-max
    sparse table, about 4× faster than CPU ``roi_pool`` for thousands of windows), or
    ``"auto"`` (the table on CPU for 64+ windows). Both give identical results.

    ``out``: an optional ``[K, C * sum(n*n)]`` tensor to write into (a reused buffer avoids
    paging in a fresh output for every image, which costs as much as the pooling on CPU).

    ``channels_last=True`` flattens each level as ``[n, n, C]`` instead: the same numbers in
    another order, which the detector uses because the table gathers all channels of a bin at
    once, and transposing 2,000 windows' bins to ``[C, n, n]`` on CPU costs a third of the
    pooling time.
    """
    levels = [int(n) for n in levels]
    if feature_map.dim() == 3:
        feature_map = feature_map.unsqueeze(0)
    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must be [C,H,W] or [N,C,H,W], got {tuple(feature_map.shape)}")
    n_img, _, height, width = feature_map.shape
    if impl not in ("auto", "table", "roi_pool"):
        raise ValueError(f"impl must be auto, table or roi_pool, not {impl!r}")
    # Output is float32 for fp16/bf16/integer input (max pooling is exact, so only the
    # storage type changes); float64 input stays float64.
    out_dtype = feature_map.dtype if feature_map.dtype in (torch.float32, torch.float64) else torch.float32
    if boxes is None:
        cells = torch.tensor([[0, 0, width - 1, height - 1]] * n_img, device=feature_map.device)
    else:
        if n_img != 1:
            raise ValueError("with boxes, feature_map must hold a single image")
        b = torch.as_tensor(boxes, device=feature_map.device)
        if b.numel() == 0:
            return feature_map.new_zeros((0, spp_dim(feature_map.shape[1], levels)), dtype=out_dtype)
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes must be [K, 4], got {tuple(b.shape)}")
        if b.is_floating_point() and not torch.equal(b, b.round()):
            raise ValueError("boxes must hold integer feature-map cells")
        cells = b.long()
        bad = (cells[:, 0] < 0) | (cells[:, 1] < 0) | (cells[:, 2] >= width) | (cells[:, 3] >= height) \
            | (cells[:, 2] < cells[:, 0]) | (cells[:, 3] < cells[:, 1])
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} boxes are empty or outside the {width}x{height} map")
    use_table = boxes is not None and (impl == "table" or (
        impl == "auto" and feature_map.device.type == "cpu" and len(cells) >= 64))
    if use_table:
        # The table keeps fp16 maps in fp16: maxima are exact in any float type, and half the
        # bytes make the gathers about twice as fast on CPU.
        if feature_map.dtype not in (torch.float16, torch.float32, torch.float64):
            feature_map = feature_map.to(out_dtype)
    else:
        feature_map = feature_map.to(out_dtype)
        batch = torch.arange(len(cells), device=cells.device) if boxes is None else cells.new_zeros(len(cells))
        rois = torch.cat([batch[:, None], cells], 1).to(out_dtype)
    order = sorted(set(levels), reverse=True)
    # A level n is derived from the smallest computed finer level m with m % n == 0.
    source = {}
    for i, n in enumerate(order):
        source[n] = next((m for m in reversed(order[:i]) if m % n == 0), None)
    direct = [n for n in order if source[n] is None]
    if use_table:
        lg = _floor_log2(max(height, width) + 1, cells.device)
        bins = {n: _bins(cells, n) for n in direct}
        n_a = max(int(lg[extent(xs, xe)].max()) for xs, xe, _, _ in bins.values()) + 1
        n_b = max(int(lg[extent(ys, ye)].max()) for _, _, ys, ye in bins.values()) + 1
        table = _sparse_table(feature_map[0], n_a, n_b)

    n_rois, channels = len(cells), feature_map.shape[1]
    shape = (n_rois, spp_dim(channels, levels))
    if out is None:
        out = feature_map.new_empty(shape, dtype=out_dtype)
    elif tuple(out.shape) != shape or out.dtype != out_dtype or out.device != feature_map.device:
        raise ValueError(f"out must be a {out_dtype} tensor of shape {shape} on {feature_map.device}")
    offsets, pos = {}, 0
    for n in levels:
        offsets[n] = pos
        pos += channels * n * n
    # Chunks keep the intermediate buffers small (cache-resident, reused by the allocator).
    for lo in range(0, n_rois, chunk):
        hi = min(lo + chunk, n_rois)
        pooled: dict[int, torch.Tensor] = {}  # channel-last [k, n, n, C]
        for n in order:
            if source[n] is not None:
                pooled[n] = _group_max(pooled[source[n]], source[n] // n)
            elif use_table:
                pooled[n] = _table_lookup(table, [b[lo:hi] for b in bins[n]], lg)
            else:
                pooled[n] = roi_pool(feature_map, rois[lo:hi], (n, n), spatial_scale=1.0).permute(0, 2, 3, 1)
        for n in levels:
            dst = out[lo:hi, offsets[n]:offsets[n] + channels * n * n]
            if channels_last:
                dst.view(hi - lo, n, n, channels).copy_(pooled[n])
            else:
                dst.view(hi - lo, channels, n, n).copy_(pooled[n].permute(0, 3, 1, 2))
    return out


def _group_max(level: torch.Tensor, k: int) -> torch.Tensor:
    """``[K, m, m, C]`` → ``[K, m/k, m/k, C]``, max over k×k groups of bins (elementwise
    maxima of strided slices: much faster on CPU than a multi-dim ``amax``)."""
    n_rois, m, _, c = level.shape
    v = level.reshape(n_rois, m // k, k, m // k, k, c)
    cols = v[:, :, :, :, 0]
    for j in range(1, k):
        cols = torch.maximum(cols, v[:, :, :, :, j])
    out = cols[:, :, 0]
    for j in range(1, k):
        out = torch.maximum(out, cols[:, :, j])
    return out


def _floor_log2(size: int, device: torch.device) -> torch.Tensor:
    """``floor(log2(v))`` for ``v = 0 .. size-1`` (0 for v = 0), exact integers."""
    return torch.tensor([max(v.bit_length() - 1, 0) for v in range(size)], device=device)


def _bins(cells: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """Inclusive bin bounds ``xs, xe, ys, ye`` (each ``[K, n]``) of the paper's formula."""
    x1, y1, x2, y2 = cells.unbind(1)
    bw, bh = extent(x1, x2), extent(y1, y2)
    i = torch.arange(n, device=cells.device)
    xs = x1[:, None] + torch.div(i * bw[:, None], n, rounding_mode="floor")
    xe = x1[:, None] - torch.div(-(i + 1) * bw[:, None], n, rounding_mode="floor") - 1
    ys = y1[:, None] + torch.div(i * bh[:, None], n, rounding_mode="floor")
    ye = y1[:, None] - torch.div(-(i + 1) * bh[:, None], n, rounding_mode="floor") - 1
    return xs, xe, ys, ye


def _sparse_table(fmap: torch.Tensor, n_a: int, n_b: int) -> torch.Tensor:
    """2-D range-max sparse table over a channel-last map:
    ``T[a, b, y, x] = max(F[:, y : y + 2**b, x : x + 2**a])`` (entries past the border are
    never read)."""
    c, h, w = fmap.shape
    table = fmap.new_empty((n_a, n_b, h, w, c))
    table[0, 0] = fmap.permute(1, 2, 0)
    for a in range(1, n_a):
        s = 1 << (a - 1)
        table[a, 0, :, w - s:] = table[a - 1, 0, :, w - s:]
        torch.maximum(table[a - 1, 0, :, : w - s], table[a - 1, 0, :, s:], out=table[a, 0, :, : w - s])
    for b in range(1, n_b):
        s = 1 << (b - 1)
        table[:, b, h - s:] = table[:, b - 1, h - s:]
        torch.maximum(table[:, b - 1, : h - s], table[:, b - 1, s:], out=table[:, b, : h - s])
    return table


def _table_lookup(table: torch.Tensor, bins: list[torch.Tensor], lg: torch.Tensor) -> torch.Tensor:
    """One pyramid level from the sparse table: a bin of width L and height M is the max of
    four table rows at its corners, of orders ``floor(log2 L)`` and ``floor(log2 M)``, each
    row a contiguous vector of all channels. (CPU ``roi_pool`` instead pays a per-bin,
    per-channel loop overhead that dominates for thousands of windows.) → ``[K, n, n, C]``."""
    _, n_b, h, w, c = table.shape
    xs, xe, ys, ye = bins
    ax, by = lg[extent(xs, xe)], lg[extent(ys, ye)]
    xb, yb = xe - (1 << ax) + 1, ye - (1 << by) + 1
    base = (ax[:, None, :] * n_b + by[:, :, None]) * h  # [K, row bin, column bin]
    flat = table.view(-1, c)

    def rows(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return ((base + yy[:, :, None]) * w + xx[:, None, :]).reshape(-1)

    out = flat.index_select(0, rows(ys, xs))
    for yy, xx in ((ys, xb), (yb, xs), (yb, xb)):
        torch.maximum(out, flat.index_select(0, rows(yy, xx)), out=out)
    n = xs.shape[1]
    return out.view(len(xs), n, n, c)


def map_windows(
    boxes: np.ndarray, stride: int, offset: float, map_h: int, map_w: int
) -> np.ndarray:
    """Project image-pixel boxes (already in the scaled image's pixels) onto feature cells.

    Appendix A: left/top ``floor((x - o)/S) + 1``, right/bottom ``ceil((x - o)/S) - 1``,
    i.e. the cells whose receptive-field centres ``S*i + o`` lie inside the window.
    A window too small to contain a centre collapses onto the cell whose centre is nearest
    its own; results are clamped to the map, so no window is ever empty.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.floor((b[:, 0] - offset) / stride) + 1
    y1 = np.floor((b[:, 1] - offset) / stride) + 1
    x2 = np.ceil((b[:, 2] - offset) / stride) - 1
    y2 = np.ceil((b[:, 3] - offset) / stride) - 1
    cx = np.floor(((b[:, 0] + b[:, 2]) / 2 - offset) / stride + 0.5)
    cy = np.floor(((b[:, 1] + b[:, 3]) / 2 - offset) / stride + 0.5)
    x1, x2 = np.where(x2 < x1, cx, x1), np.where(x2 < x1, cx, x2)
    y1, y2 = np.where(y2 < y1, cy, y1), np.where(y2 < y1, cy, y2)
    out = np.stack([np.clip(x1, 0, map_w - 1), np.clip(y1, 0, map_h - 1),
                    np.clip(x2, 0, map_w - 1), np.clip(y2, 0, map_h - 1)], 1)
    return out.astype(np.int64)


def first_twins(which: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """For each window, the index of the first window pooled at the same scale (``which``) on the
    same cells (``[K, 4]``): their SPP vectors are the same by construction, so their scores must
    be too, bit for bit, whichever engine computes them (a matrix product may round two equal rows
    differently, and NMS would then rank such twins by rounding)."""
    rows = np.concatenate([np.asarray(which, dtype=np.int64).reshape(-1, 1),
                           np.asarray(cells, dtype=np.int64).reshape(-1, 4)], 1)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)].astype(np.int64)


def best_scale(boxes: np.ndarray, factors: Sequence[float], target: float = 224.0) -> np.ndarray:
    """Index of the scale at which each window's area is closest to ``target``².

    ``factors`` are the resize factors (scaled size / original size) of the pyramid.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = box_area(b)
    f = np.asarray(factors, dtype=np.float64)
    scaled = area[:, None] * f[None, :] ** 2
    return np.abs(scaled - target * target).argmin(1)
