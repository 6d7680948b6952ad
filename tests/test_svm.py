"""Hard-negative mining: easy negatives carry no hinge loss, so the mined SVM must agree with
one trained on every negative at once; the cache stays bounded."""
import numpy as np
from sklearn.svm import LinearSVC

from sppdet.config import SVMConfig
from sppdet.svm import HardNegativeSVMs


def toy(seed=0, n_images=30, per_image=200, dim=8):
    rng = np.random.default_rng(seed)
    mu = np.zeros(dim)
    mu[0] = 3.0
    pos = rng.normal(size=(60, dim)) + mu
    images = [rng.normal(size=(per_image, dim)) - 0.5 * mu for _ in range(n_images)]
    return pos, images


def test_mined_svm_matches_full_svm():
    pos, images = toy()
    cfg = SVMConfig(retrain_limit=300, max_negatives=100000, max_iter=20000)
    svms = HardNegativeSVMs(cfg, num_classes=1, dim=pos.shape[1])
    svms.add_positives(0, pos)
    for i, feats in enumerate(images):
        svms.mine(i, feats.astype(np.float32), np.ones((len(feats), 1), dtype=bool))
    svms.finish()
    cached = len(svms.neg[0])
    all_neg = np.concatenate(images)
    assert cached < len(all_neg) / 2, "mining should keep only a fraction of the negatives"
    X = np.concatenate([pos, all_neg])
    y = np.concatenate([np.ones(len(pos)), -np.ones(len(all_neg))])
    full = LinearSVC(C=cfg.C, loss="hinge", dual=True, class_weight={1: cfg.pos_weight, -1: 1.0},
                     intercept_scaling=cfg.bias_mult, tol=1e-5, max_iter=100000).fit(X, y)
    mined = X @ svms.W[:, 0] + svms.b[0]
    ref = full.decision_function(X)
    # Same decisions, and nearly the same scores (both solvers stop at a tolerance).
    assert np.mean(np.sign(mined) == np.sign(ref)) > 0.995
    assert np.corrcoef(mined, ref)[0, 1] > 0.99


def test_cache_is_bounded_and_never_holds_positives():
    pos, images = toy(1)
    cfg = SVMConfig(retrain_limit=100, max_negatives=150)
    svms = HardNegativeSVMs(cfg, num_classes=2, dim=pos.shape[1])
    svms.add_positives(0, pos)
    svms.add_positives(1, -pos)
    for i, feats in enumerate(images):
        mask = np.ones((len(feats), 2), dtype=bool)
        mask[:10, 1] = False  # these windows overlap a class-1 object: never class-1 negatives
        svms.mine(i, feats.astype(np.float32), mask)
        assert all(len(n) <= cfg.max_negatives + cfg.retrain_limit + len(feats) for n in svms.neg)
    svms.finish()
    assert all(len(n) <= cfg.max_negatives for n in svms.neg)
    window = svms.neg_keys[1] % (1 << 20)
    assert (window >= 10).all()
    assert svms.neg[0].dtype == np.float16


def test_cap_holds_for_a_class_without_positives_and_peak_is_reported():
    """A class with no positives never fits an SVM (w = 0, b = 0: every window is 'hard'); its
    cache must still stay under max_negatives after every image, as must a trained class's
    between two retrains (retrain_limit above the cap)."""
    pos, images = toy(2, n_images=12, per_image=200)
    cfg = SVMConfig(retrain_limit=5000, max_negatives=250)
    svms = HardNegativeSVMs(cfg, num_classes=2, dim=pos.shape[1])
    svms.add_positives(1, pos)  # class 0: no positives at all
    for i, feats in enumerate(images):
        svms.mine(i, feats.astype(np.float32), np.ones((len(feats), 2), dtype=bool))
        assert len(svms.neg[0]) <= cfg.max_negatives and len(svms.neg[1]) <= cfg.max_negatives
    svms.finish()
    assert all(len(n) <= cfg.max_negatives for n in svms.neg)
    # 12 x 200 windows were offered: without the cap class 0 would hold all 2,400
    assert svms.peak_negatives[0] == cfg.max_negatives
    assert 0 < svms.peak_negatives[1] <= cfg.max_negatives
    assert svms.retrains[0] == 0 and not svms.W[:, 0].any()
