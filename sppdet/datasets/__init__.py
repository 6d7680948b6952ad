"""Detection data sets: VOC devkit, labelImg flat folders, COCO JSON, and the synthetic set."""
from .common import DetectionDataset, ImageRecord, LoadReport, load_dataset

__all__ = ["DetectionDataset", "ImageRecord", "LoadReport", "load_dataset"]
