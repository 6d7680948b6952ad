"""Region proposals: one module per method, each a :class:`~sppdet.proposals.base.Proposer`.

- ``selective_search`` (:mod:`.selective_search`): OpenCV's selective search on the pixels (the paper's);
- ``external`` (:mod:`.external`): the user's per-image files or R-CNN's ``selective_search_data`` .mat;
- ``rpn`` (:mod:`.rpn`): a region proposal network on the detector's own conv map, trained by
  ``sppdet train`` before the SVMs.

A new method is one new module with a Proposer subclass and one line in :data:`PROPOSERS`;
:class:`~sppdet.proposals.cache.ProposalCache` caches any of them.
"""
from __future__ import annotations

from ..config import ProposalConfig
from ..errors import UserError
from .base import Proposer, whole_image
from .cache import ProposalCache
from .external import External, checked_boxes, load_external, load_rcnn_mat
from .selective_search import SelectiveSearch, selective_search, selective_search_cfg

# proposals.method → the class; the ones that need a trained model take it as ``model``
PROPOSERS: dict[str, type[Proposer]] = {"selective_search": SelectiveSearch, "external": External}


def make_proposer(cfg: ProposalConfig, scales=None, model=None) -> Proposer:
    """The configured method; ``rpn`` needs its trained network (``model``) and the pyramid
    ``scales`` of the maps it reads."""
    if cfg.method == "rpn":
        from .rpn import RPNProposer

        if model is None:
            raise UserError("proposals.method=rpn needs a trained proposal network: it is trained by "
                            "`sppdet train`, and runs load it from their folder")
        return RPNProposer(model, scales)
    if cfg.method not in PROPOSERS:
        raise UserError(f"unknown proposals.method {cfg.method!r}; use one of "
                        f"{', '.join([*PROPOSERS, 'rpn'])}")
    return PROPOSERS[cfg.method](cfg)


__all__ = ["PROPOSERS", "External", "ProposalCache", "Proposer", "SelectiveSearch", "checked_boxes",
           "load_external", "load_rcnn_mat", "make_proposer", "selective_search", "selective_search_cfg",
           "whole_image"]
