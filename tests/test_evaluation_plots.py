"""sppdet.evaluation.plots: one precision-recall PNG per class, named as the comp4 files name
the class, for curves that are empty or NaN too."""
import os

import numpy as np
from PIL import Image

from sppdet.evaluation.plots import plot_pr_curves
from sppdet.evaluation.voc import class_file_part


def test_one_png_per_class_of_the_figure_s_size(tmp_path):
    result = {"metric": "voc07", "AP": {"cat": 0.5, "red cell": None, "dog": 0.0},
              "curves": {"cat": (np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.5])),
                         "red cell": (np.array([]), np.array([])),  # no objects and no detections
                         "dog": (np.array([np.nan]), np.array([np.nan]))}}
    paths = plot_pr_curves(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["pr_cat.png", f"pr_{class_file_part('red cell')}.png", "pr_dog.png"]
    assert "/" not in paths[1].name and " " not in paths[1].name
    assert sorted(os.listdir(tmp_path / "plots")) == sorted(p.name for p in paths)  # no temporaries
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (450, 400)  # 4.5 x 4 inches at 100 dpi
    # a curve is drawn where there is one: the cat's plot has more ink than the empty one's
    ink = [(np.asarray(Image.open(p).convert("L")) < 128).sum() for p in paths]
    assert ink[0] > ink[1]
