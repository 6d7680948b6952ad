"""One linear SVM per class with hard-negative mining, streamed image by image (R-CNN/SPP-net).

Positives are the ground-truth windows; negatives are windows overlapping every positive of
the class by less than 0.3 IoU. Images are visited once per epoch; a negative scoring above
``hard_thresh`` joins the class's cache, the class is retrained after ``retrain_limit`` new
hard negatives, and cached negatives scoring below ``evict_thresh`` are dropped. Only the
positives and the bounded fp16 cache of hard negatives are ever in memory.
Training is liblinear's L2-regularised hinge-loss SVM (``sklearn.svm.LinearSVC``, the
``-s 3`` R-CNN used) with C, positive weight and a bias multiplier as in R-CNN.
"""
from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .config import SVMConfig

log = logging.getLogger(__name__)


class HardNegativeSVMs:
    def __init__(self, cfg: SVMConfig, num_classes: int, dim: int, seed: int = 0):
        self.cfg = cfg
        self.num_classes = num_classes
        self.dim = dim
        self.seed = seed
        self.W = np.zeros((dim, num_classes), dtype=np.float32)
        self.b = np.zeros(num_classes, dtype=np.float32)
        self.positives: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.pos_images: list[list[int]] = [[] for _ in range(num_classes)]  # image of each positives array
        self.neg: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float16) for _ in range(num_classes)]
        self.neg_keys: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(num_classes)]
        self.new_since: list[int] = [0] * num_classes
        self.retrains = [0] * num_classes
        self.peak_negatives = [0] * num_classes  # the most negatives a class's cache ever held

    def add_positives(self, c: int, feats: np.ndarray, image_index: int = -1) -> None:
        if len(feats):
            self.positives[c].append(np.asarray(feats, dtype=np.float32))
            self.pos_images[c].append(int(image_index))

    def scores(self, feats: np.ndarray) -> np.ndarray:
        return feats @ self.W + self.b

    def mine(self, image_index: int, feats: np.ndarray, neg_mask: np.ndarray,
             classes: Sequence[int] | None = None) -> None:
        """Offer one image's (scaled) window features; ``neg_mask[k, c]``: window k may be a
        negative of class c. Window keys are ``image_index * 2**20 + k`` (dedup across epochs).

        ``classes``: mine only these (default all). Each class's state is its own, and its
        scores are a column of the same full-width product, so mining classes one per task
        gives the same bits as mining them together."""
        scores = self.scores(feats)
        keys = image_index * (1 << 20) + np.arange(len(feats), dtype=np.int64)
        for c in range(self.num_classes) if classes is None else classes:
            hard = neg_mask[:, c] & (scores[:, c] > self.cfg.hard_thresh)
            if not hard.any():
                continue
            hard &= ~np.isin(keys, self.neg_keys[c])
            n = int(hard.sum())
            if n == 0:
                continue
            self.neg[c] = np.concatenate([self.neg[c], feats[hard].astype(np.float16)])
            self.neg_keys[c] = np.concatenate([self.neg_keys[c], keys[hard]])
            self.new_since[c] += n
            if self.new_since[c] >= self.cfg.retrain_limit:
                self.train(c)
            elif len(self.neg[c]) > self.cfg.max_negatives:
                self.evict(c)  # over the cap before the next retrain: bound it with the current SVM
            self.peak_negatives[c] = max(self.peak_negatives[c], len(self.neg[c]))

    def train(self, c: int) -> None:
        pos = np.concatenate(self.positives[c]) if self.positives[c] else np.zeros((0, self.dim), np.float32)
        neg = self.neg[c].astype(np.float32)
        self.new_since[c] = 0
        if len(pos) == 0 or len(neg) == 0:
            self.evict(c)  # no SVM to fit (yet), but the cap holds on this path too
            return
        self.W[:, c], self.b[c] = self.fit(pos, neg)
        self.retrains[c] += 1
        self.evict(c, neg)

    def fit(self, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, float]:
        """One linear SVM, positives against negatives: ``(w, b)``."""
        X = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
        svm = LinearSVC(C=self.cfg.C, loss="hinge", dual=True, class_weight={1: self.cfg.pos_weight, -1: 1.0},
                        intercept_scaling=self.cfg.bias_mult, fit_intercept=True, tol=1e-3,
                        max_iter=self.cfg.max_iter, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(X, y)
        return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])

    def refit_without(self, c: int, held_out: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Class ``c``'s SVM refitted on its positives and cached negatives from images *not*
        in ``held_out`` (a bool mask over image indices), for scores on images it never saw;
        None when nothing of one side is left."""
        pos = [p for p, i in zip(self.positives[c], self.pos_images[c]) if i < 0 or not held_out[i]]
        neg = self.neg[c][~held_out[self.neg_keys[c] >> 20]]
        if not pos or len(neg) == 0:
            return None
        return self.fit(np.concatenate(pos), neg.astype(np.float32))

    def evict(self, c: int, neg: np.ndarray | None = None) -> None:
        """Drop class ``c``'s easy negatives (scoring below ``evict_thresh``) and keep at most
        ``max_negatives``, the hardest, to bound memory. Scores are the class's current SVM's
        (all equal for a class never trained: the oldest are kept)."""
        neg = self.neg[c].astype(np.float32) if neg is None else neg
        s = neg @ self.W[:, c] + self.b[c]
        keep = s >= self.cfg.evict_thresh
        if keep.sum() > self.cfg.max_negatives:
            keep = np.zeros(len(s), dtype=bool)
            keep[np.argsort(-s, kind="stable")[: self.cfg.max_negatives]] = True
        self.neg[c] = self.neg[c][keep]
        self.neg_keys[c] = self.neg_keys[c][keep]

    def finish(self, classes: Sequence[int] | None = None) -> None:
        for c in range(self.num_classes) if classes is None else classes:
            self.train(c)
