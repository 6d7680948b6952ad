"""A trained run made decisive for comparisons: a tiny run on a random trunk learns nothing, so
its scores are near-ties (every margin within 1e-3 of the floor) and which of them a threshold,
NMS or the per-image cap keeps turns on float32 rounding that varies with the engine, the
thread count and even the heap's layout in one process (two detections of one image in a
process that had imported onnxruntime differed in the 8th digit). Tests that compare two
detections of the same images use this copy instead."""
from __future__ import annotations

import copy

import numpy as np
import torch


def decisive(det, image: np.ndarray, seed: int = 0):
    """A copy of ``det`` whose SVMs, Platt sigmoids and box regressors are seeded random (the graph
    must compute the same function for any weights). The tiny run's own SVMs learn nothing from a
    random trunk: every margin sits within 1e-3 of the -1 floor, so which of those near-ties a
    threshold or NMS keeps is float32 rounding, in either engine. These margins spread over
    several units (scaled on ``image``'s windows), so scores are well apart and many pass 0.25."""
    rng = np.random.default_rng(seed)
    seen = []
    probe = copy.copy(det)
    probe.score = lambda feats: seen.append(feats) or det.score(feats)
    probe(image, None if det.proposer.needs_maps else det.propose(image, None, image.shape[1], image.shape[0]))
    feats = torch.cat(seen).double().numpy()
    n = len(det.classes)
    mu = feats.mean(0)
    W = rng.standard_normal((feats.shape[1], n))
    W -= np.outer(mu, mu @ W) / (mu @ mu)  # no large common offset to cancel in float32
    W *= 2.0 / (feats @ W).std(0)
    out = copy.copy(det)
    out.svm_W = torch.as_tensor(W, dtype=torch.float32)
    out.svm_b = torch.as_tensor(np.full(n, -0.5), dtype=torch.float32)
    out.untrained = np.zeros(n, dtype=bool)
    out.platt = np.stack([rng.uniform(1.0, 2.0, n), rng.uniform(-0.5, 0.5, n)], 1)
    if det.bbox is not None:
        bbox = copy.deepcopy(det.bbox)
        x = feats / det.feat_scale * det.pool5_scale  # what the regressors see (no fc head here)
        bbox.W = (rng.standard_normal(bbox.W.shape) * 0.1 / np.sqrt((x ** 2).sum(1).mean())).astype(np.float32)
        bbox.b = rng.normal(0, 0.05, bbox.b.shape).astype(np.float32)
        bbox.trained = np.ones(n, dtype=bool)
        out.bbox = bbox
    if det.rpn is not None:  # objectness spread the same way: the top-k and NMS see no near-ties
        rpn = copy.deepcopy(det.rpn)
        head = rpn.rpn.head
        fmap = det.extractor.compute(image)[0].fmap.float()[None]
        with torch.no_grad():
            t = head.conv(fmap)
            w = torch.as_tensor(rng.standard_normal(head.cls_logits.weight.shape), dtype=torch.float32)
            head.cls_logits.weight.copy_(w)
            head.cls_logits.bias.zero_()
            z = head.cls_logits(t)
            head.cls_logits.weight.mul_(3.0 / z.std())
            head.cls_logits.bias.copy_(-z.mean() * 3.0 / z.std())
        out.rpn = rpn
        out._proposer = None
    return out
