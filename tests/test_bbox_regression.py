import numpy as np

from sppdet.bbox_regression import BoxRegressor, ExampleReservoir, apply_deltas, box_targets


def test_targets_hand_worked():
    p = np.array([[0, 0, 9, 9]])  # 10x10, centre (5, 5)
    np.testing.assert_allclose(box_targets(p, np.array([[5, 0, 14, 9]])), [[0.5, 0, 0, 0]])
    # 20x20 box at the origin: centre (10, 10) → shift 0.5, log size ratio log 2
    np.testing.assert_allclose(box_targets(p, np.array([[0, 0, 19, 19]])), [[0.5, 0.5, np.log(2), np.log(2)]])


def test_apply_inverts_targets():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (50, 2))
    p = np.concatenate([p, p + rng.uniform(5, 80, (50, 2))], 1)
    g = p + rng.uniform(-2, 2, p.shape)  # widths stay positive (boxes are >= 6 px)
    np.testing.assert_allclose(apply_deltas(p, box_targets(p, g)), g, atol=1e-9)
    np.testing.assert_allclose(apply_deltas(p, np.zeros((50, 4))), p, atol=1e-9)


def test_ridge_recovers_a_linear_map_and_untrained_classes_are_identity():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 6))
    A = rng.normal(size=(6, 4)) * 0.1
    res = ExampleReservoir(num_classes=2, cap=1000)
    res.add(0, X, X @ A + 0.05)
    reg = BoxRegressor(2, 6, alpha=1e-6)
    reg.fit(res)
    np.testing.assert_allclose(reg.W[0], A, atol=1e-3)
    np.testing.assert_allclose(reg.b[0], 0.05, atol=1e-3)
    boxes = np.array([[1.0, 2.0, 30.0, 40.0]])
    np.testing.assert_array_equal(reg.predict(boxes, X[:1], 1), boxes)


def test_reservoir_is_capped_and_uniform():
    res = ExampleReservoir(1, cap=100, seed=0)
    res.add(0, np.arange(10000, dtype=np.float64)[:, None], np.zeros((10000, 4)))
    kept = np.array([x[0] for x in res.X[0]], dtype=np.float64)
    assert len(kept) == 100 and res.seen[0] == 10000
    assert 3000 < kept.mean() < 7000  # not just the first or last examples
