"""Region proposals: one module per method, each a :class:`~sppdet.proposals.base.Proposer`.

- ``selective_search`` (:mod:`.selective_search`): OpenCV's selective search on the pixels (the paper's);
- ``external`` (:mod:`.external`): the user's per-image files or R-CNN's ``selective_search_data`` .mat;
- ``rpn`` (:mod:`.rpn`): a region proposal network on the detector's own conv map, trained by
  ``sppdet train`` before the SVMs.

A new method is one new module with a Proposer subclass and one line in :data:`.registry.PROPOSERS`;
:class:`~sppdet.proposals.cache.ProposalCache` caches any of them.
"""
from __future__ import annotations

from .base import Proposer, whole_image
from .cache import ProposalCache
from .registry import PROPOSERS, choose_method, make_proposer
from .external import External, checked_boxes, load_external, load_rcnn_mat
from .selective_search import SelectiveSearch, selective_search, selective_search_cfg


__all__ = ["PROPOSERS", "choose_method", "External", "ProposalCache", "Proposer", "SelectiveSearch", "checked_boxes",
           "load_external", "load_rcnn_mat", "make_proposer", "selective_search", "selective_search_cfg",
           "whole_image"]
