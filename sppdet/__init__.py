"""sppdet: SPP-net object detection (He et al., 2014) on torchvision trunks.

>>> import sppdet
>>> det = sppdet.load("runs/bccd")
>>> r = det("photo.jpg")          # r.boxes, r.scores, r.labels, r.names, r.to_dict(), r.plot()

``sppdet.train``, ``sppdet.evaluate``, ``sppdet.detect``, ``sppdet.proposal_recall`` and
``sppdet.bench`` are what the ``sppdet`` command runs.
"""

from .version import __version__  # noqa: E402

from .api import bench, detect, evaluate, load, load_data, make_config, proposal_recall, train  # noqa: E402
from .errors import UserError  # noqa: E402

__all__ = ["Detector", "Detections", "UserError", "__version__", "bench", "detect", "evaluate", "load",
           "load_data", "make_config", "proposal_recall", "train"]


def __getattr__(name: str):
    # The detector pulls in torch and torchvision: loaded on first use, so `import sppdet` is quick.
    if name in ("Detector", "Detections"):
        from . import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'sppdet' has no attribute {name!r}")
