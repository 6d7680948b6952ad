"""Evaluation: Pascal VOC AP as the devkit computes it, COCO metrics via pycocotools, plots."""
from .voc import evaluate_voc, voc_ap, write_comp4

__all__ = ["evaluate_voc", "voc_ap", "write_comp4"]
