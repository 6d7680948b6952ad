"""The proposal registry: ``proposals.method`` → its :class:`~.base.Proposer`, and ``auto``'s
choice. Its own module so that the cache can build a proposer without importing the package."""
from __future__ import annotations

import dataclasses

from ..config import ProposalConfig
from ..errors import UserError
from .base import Proposer
from .external import External
from .selective_search import SelectiveSearch

# proposals.method → the class; the ones that need a trained model take it as ``model``
PROPOSERS: dict[str, type[Proposer]] = {"selective_search": SelectiveSearch, "external": External}


def choose_method(cfg: ProposalConfig, n_objects: int, detector_method: str = "spp") -> tuple[str, str]:
    """The method a training uses, and why: ``auto`` becomes ``rpn`` when the training split
    has at least ``rpn_min_objects`` objects (a proposal network needs many examples: on
    200-object sets it lost to selective search, on BCCD's 4,000 it won; README), else
    ``selective_search``; R-CNN never gets ``rpn`` (it computes no map of the whole image)."""
    if cfg.method != "auto":
        return cfg.method, "configured"
    if detector_method == "rcnn":
        return "selective_search", "auto: method=rcnn computes no conv map of the whole image for a network to read"
    if n_objects >= cfg.rpn_min_objects:
        return "rpn", f"auto: {n_objects} training objects >= proposals.rpn_min_objects={cfg.rpn_min_objects}"
    return "selective_search", (f"auto: {n_objects} training objects < proposals.rpn_min_objects="
                                f"{cfg.rpn_min_objects}, too few to learn proposals from")


def make_proposer(cfg: ProposalConfig, scales=None, model=None) -> Proposer:
    """The configured method; ``rpn`` needs its trained network (``model``) and the pyramid
    ``scales`` of the maps it reads. ``auto`` before a training has chosen is selective search
    (what ``sppdet proposals`` can measure without a run)."""
    if cfg.method == "auto":  # keyed as selective_search: one cache folder for the same windows
        return SelectiveSearch(dataclasses.replace(cfg, method="selective_search"))
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
