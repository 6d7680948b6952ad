"""Class-specific bounding-box regression on pool5 features (R-CNN, Appendix C): ridge
regression (λ = 1000) from a proposal's features to the offsets of the ground truth it
overlaps with IoU ≥ 0.6."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from .boxes import BoxCoder

# R-CNN's coding: unit weights, and a log size ratio bounded at ±4 when decoding
CODER = BoxCoder((1.0, 1.0, 1.0, 1.0), clip=(-4.0, 4.0))


def box_targets(proposals: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(dx, dy, dw, dh)``: centre shifts in units of the proposal size, log size ratios (float64)."""
    return CODER.encode_pixels(np.asarray(proposals, dtype=np.float64), np.asarray(gt, dtype=np.float64))


def apply_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`box_targets` (zero deltas give the boxes back, to float rounding),
    computed in float64."""
    return CODER.decode_pixels(np.asarray(boxes, dtype=np.float64), np.asarray(deltas, dtype=np.float64))


class ExampleReservoir:
    """At most ``cap`` (features, targets) pairs per class, uniformly sampled from a stream."""

    def __init__(self, num_classes: int, cap: int, seed: int = 0):
        self.cap = cap
        self.rng = np.random.default_rng(seed)
        self.X: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.Y: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.seen = [0] * num_classes

    def add(self, c: int, feats: np.ndarray, targets: np.ndarray) -> None:
        for x, y in zip(feats, targets):
            self.seen[c] += 1
            if len(self.X[c]) < self.cap:
                self.X[c].append(x.astype(np.float16))
                self.Y[c].append(y)
            else:
                j = self.rng.integers(0, self.seen[c])
                if j < self.cap:
                    self.X[c][j], self.Y[c][j] = x.astype(np.float16), y


class BoxRegressor:
    """Per class ``deltas = feats @ W[c] + b[c]``."""

    def __init__(self, num_classes: int, dim: int, alpha: float = 1000.0):
        self.alpha = alpha
        self.W = np.zeros((num_classes, dim, 4), dtype=np.float32)
        self.b = np.zeros((num_classes, 4), dtype=np.float32)
        self.trained = np.zeros(num_classes, dtype=bool)

    def fit(self, reservoir: ExampleReservoir, executor=None) -> None:
        """One ridge regression per class, in this process or as one task per class."""
        items = [(c, np.stack(reservoir.X[c]), np.stack(reservoir.Y[c])) for c in range(len(self.W))
                 if len(reservoir.X[c]) >= 2]  # fewer: identity (no regression) for the class
        if executor is None:
            fits = (fit_class(self.alpha, item) for item in items)
        else:
            fits = executor.map(fit_class, items, desc="bbox regression", unit="class", shared=self.alpha,
                                label=lambda item: f"class {item[0]}")
        for c, W, b in fits:
            self.W[c], self.b[c], self.trained[c] = W, b, True

    def predict(self, boxes: np.ndarray, feats: np.ndarray, c: int) -> np.ndarray:
        if not self.trained[c]:
            return np.asarray(boxes, dtype=np.float64)
        return apply_deltas(boxes, feats @ self.W[c] + self.b[c])


def fit_class(alpha: float, item: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Ridge fit of one class: ``(c, X fp16, Y)`` → ``(c, W [dim, 4], b [4])``.

    BLAS on one thread wherever it runs: its sums differ in the last bit between thread counts,
    and the regressors must not depend on whether a Ray task or the driver fitted them."""
    from .runtime import single_threaded

    c, X, Y = item
    with single_threaded():
        r = Ridge(alpha=alpha).fit(np.asarray(X, dtype=np.float32), Y)
    return c, r.coef_.T.astype(np.float32), r.intercept_.astype(np.float32)
