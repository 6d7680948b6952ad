"""sppdet.proposals.registry and base: proposals.method to its proposer, auto's choice at its
boundary (and never rpn for R-CNN), and the whole-image window."""
import numpy as np
import pytest

from sppdet.config import ProposalConfig
from sppdet.errors import UserError
from sppdet.proposals.base import Proposer, whole_image
from sppdet.proposals.external import External
from sppdet.proposals.registry import PROPOSERS, choose_method, make_proposer
from sppdet.proposals.selective_search import SelectiveSearch


def test_auto_chooses_rpn_from_rpn_min_objects_on():
    cfg = ProposalConfig(method="auto", rpn_min_objects=500)
    assert choose_method(cfg, 499)[0] == "selective_search" and choose_method(cfg, 500)[0] == "rpn"
    assert choose_method(cfg, 10 ** 6)[0] == "rpn"
    assert "499 training objects < proposals.rpn_min_objects=500" in choose_method(cfg, 499)[1]
    assert "500 training objects >= proposals.rpn_min_objects=500" in choose_method(cfg, 500)[1]
    method, why = choose_method(cfg, 10 ** 6, detector_method="rcnn")
    assert method == "selective_search" and "rcnn" in why


@pytest.mark.parametrize("method", ["selective_search", "external", "rpn"])
def test_a_configured_method_is_kept_whatever_the_data(method):
    assert choose_method(ProposalConfig(method=method), 0) == (method, "configured")
    assert choose_method(ProposalConfig(method=method), 10 ** 6, "rcnn") == (method, "configured")


def test_make_proposer():
    assert set(PROPOSERS) == {"selective_search", "external"}
    ss = make_proposer(ProposalConfig(method="selective_search"))
    assert type(ss) is SelectiveSearch and isinstance(ss, Proposer)
    auto = make_proposer(ProposalConfig(method="auto"))
    # auto before a training has chosen: selective search, keyed as selective search (one cache)
    assert type(auto) is SelectiveSearch and auto.cache_id() == ss.cache_id()
    assert type(make_proposer(ProposalConfig(method="external", external_dir="/x"))) is External
    with pytest.raises(UserError, match="needs a trained proposal network"):
        make_proposer(ProposalConfig(method="rpn"))
    bogus = ProposalConfig(method="edges")  # not validated here: the registry still refuses it
    with pytest.raises(UserError, match="unknown proposals.method 'edges'; use one of selective_search, "
                                        "external, rpn"):
        make_proposer(bogus)


def test_a_proposer_proposes_for_new_images_itself_and_the_whole_image():
    ss = make_proposer(ProposalConfig(method="selective_search"))
    assert ss.for_new_images() is ss
    w = whole_image(30, 20)
    assert w.dtype == np.float32 and w.tolist() == [[0, 0, 29, 19]]  # inclusive: the last pixel
