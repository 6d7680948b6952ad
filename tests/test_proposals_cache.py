"""sppdet.proposals.cache.ProposalCache with a counting stub proposer: computed once per key and
read back equal, the name external files use, what it counts, and files that are refused
(empty, non-finite, wrong shape: recomputed, never used). Damage byte by byte is in
bad_inputs/test_cache_inputs.py."""
import numpy as np
import pytest

from sppdet.fileio import load_checked_arrays, save_checked_arrays
from sppdet.proposals.base import Proposer
from sppdet.proposals.cache import ProposalCache
from sppdet.proposals.selective_search import SelectiveSearch


class Counting(Proposer):
    name = "counting"

    def __init__(self):
        self.calls = []

    def cache_id(self):
        return ["counting"]

    def propose(self, image_id, image, maps=None, size=None):
        self.calls.append((image_id, size))
        return np.array([[0, 0, 9, 9], [1.5, 2, 3, 4]], np.float64)  # float64: stored as float32


def test_computed_once_and_read_back_equal(tmp_path):
    prop = Counting()
    cache = ProposalCache(tmp_path / "p", prop)
    assert not cache.has("k-abc")
    first = cache.get("k-abc", lambda: None, image_id="img7", size=(40, 30))
    assert prop.calls == [("img7", (40, 30))]  # external files are named by the id, not the key
    assert first.dtype == np.float32 and first.tolist() == [[0, 0, 9, 9], [1.5, 2, 3, 4]]
    again = ProposalCache(tmp_path / "p", prop).get("k-abc", lambda: None)
    assert np.array_equal(again, first) and len(prop.calls) == 1 and cache.has("k-abc")
    stored = load_checked_arrays(tmp_path / "p" / "k-abc.npz", ("boxes",))["boxes"]
    assert np.array_equal(stored, first)
    assert cache.computed == 1 and cache.busy_s >= 0
    cache.get("other", lambda: None)
    assert prop.calls[-1] == ("other", None) and cache.computed == 2


@pytest.mark.parametrize("bad", [np.zeros((0, 4), np.float32), np.array([[0, 0, np.inf, 1]], np.float32),
                                 np.zeros((2, 5), np.float32), np.zeros(4, np.float32)])
def test_stored_boxes_that_cannot_be_windows_are_recomputed(tmp_path, bad):
    prop = Counting()
    cache = ProposalCache(tmp_path / "p", prop)
    save_checked_arrays(cache.path("k"), {"boxes": bad})  # a valid file holding unusable boxes
    assert not cache.has("k")
    assert cache.get("k", lambda: None).shape == (2, 4) and len(prop.calls) == 1


def test_a_proposal_config_stands_for_its_pixel_method(tmp_path):
    from sppdet.config import ProposalConfig

    cache = ProposalCache(tmp_path / "p", ProposalConfig(method="selective_search"))
    assert isinstance(cache.proposer, SelectiveSearch)
