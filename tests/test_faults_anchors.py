"""The fault corpus's anchors derived from degenerate training boxes (all tiny, all the whole
image, all one shape, one extreme shape; unusable sides): the proposal network still trains and
proposes boxes inside the image. Split from test_faults_rpn.py: these need no trained run."""
import numpy as np
import pytest

from sppdet.proposals.rpn import derive_anchors, train_rpn

from rpn_items import maps_with_boxes


# -- anchors derived from degenerate boxes ---------------------------------------------------------
class _Trunk:  # what rpn_settings reads of a trunk
    stride, offset, channels = 16, 0.0, 8


@pytest.mark.parametrize("case,boxes,sizes,ratios", [
    # all tiny (3 x 4 px): one anchor, lifted to half the stride; ratio 4/3
    ("tiny", np.array([[10, 10, 12, 13], [100, 50, 102, 53]]), [8.0], [1.333]),
    # all huge (the whole 320 x 320 image): one anchor of the image's side
    ("huge", np.array([[0, 0, 319, 319]]), [320.0], [1.0]),
    # all one shape, no spread (40 x 20, as tall as half its width): one size sqrt(800), one ratio
    ("one shape", np.array([[0, 0, 39, 19], [100, 100, 139, 119], [200, 50, 239, 69]]), [28.3], [0.5]),
    # one extreme shape (200 x 4): its ratio clipped to 1/4
    ("thin", np.array([[0, 0, 199, 3], [10, 200, 209, 203]]), [28.3], [0.25]),
])
def test_anchor_derivation_with_zero_spread_trains_and_proposes(case, boxes, sizes, ratios):
    from sppdet.config import ProposalConfig
    from sppdet.proposals.rpn import RPNProposer, rpn_settings

    items = maps_with_boxes(boxes)
    s, note = rpn_settings(ProposalConfig(method="rpn"), _Trunk, [320], 2000, items)
    assert (s.sizes, s.ratios) == (sizes, ratios), case
    assert note["anchors"] == "derived from the training boxes"
    model, log = train_rpn(s, items, [320], epochs=1, lr=0.01, val_fraction=0.0, seed=0)
    assert all(np.isfinite(e["train_loss"]) for e in log["epochs"])
    p = RPNProposer(model, [320]).propose("x", None, items[0].maps, (320, 320))
    assert len(p) >= 1 and np.isfinite(p).all() and (p >= 0).all() and (p <= 319).all()
    assert (p[:, 2] >= p[:, 0]).all() and (p[:, 3] >= p[:, 1]).all()


def test_derive_anchors_ignores_unusable_sides():
    # NaN, infinite, zero and negative sides or aspects are left out; the rest decides
    sides = np.array([np.nan, np.inf, 0.0, -5.0, 64.0, 64.0])
    aspects = np.array([1.0, 1.0, 1.0, 1.0, np.nan, 2.0])
    assert derive_anchors(sides, aspects, 16) == ([64.0], [2.0])
