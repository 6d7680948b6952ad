"""sppdet's Python API: what a notebook, a service and the ``sppdet`` command all call.

>>> import sppdet
>>> det = sppdet.load("runs/bccd")                    # a trained run directory
>>> r = det("photo.jpg")                               # or a PIL image, an array, a tensor, a list
>>> r.boxes, r.scores, r.labels, r.names               # numpy arrays + the class names
>>> metrics = sppdet.evaluate("runs/bccd", data="VOCdevkit/VOC2007", split="test")

Every function checks its inputs and output folders before any long work and raises
:class:`~sppdet.errors.UserError` with a one-line fix-it message for bad input. Messages for
the user go to the ``sppdet`` logger (the CLI prints them on stderr).

One module per command: :mod:`.setup` (what they share), :mod:`.training`, :mod:`.evaluation`,
:mod:`.detection`, :mod:`.measure` (proposal recall, bench), :mod:`.export`, :mod:`.classifier`.
"""
from __future__ import annotations

from .setup import UserInterrupt, cache_dir, default_cache, is_other_data, load, load_data, make_config, make_executor, shipped_configs
from .evaluation import EVAL_OUTPUTS, eval_folder_name, evaluate
from .training import train
from .detection import DetectMedia, detect
from .measure import bench, proposal_recall, summarize_timings
from .export import export
from .classifier import classify, evaluate_classifier, train_classifier

__all__ = ['DetectMedia', 'EVAL_OUTPUTS', 'UserInterrupt', 'bench', 'cache_dir', 'classify', 'default_cache', 'detect', 'eval_folder_name', 'evaluate', 'evaluate_classifier', 'export', 'is_other_data', 'load', 'load_data', 'make_config', 'make_executor', 'proposal_recall', 'shipped_configs', 'summarize_timings', 'train', 'train_classifier']
