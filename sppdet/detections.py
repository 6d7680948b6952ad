"""One image's detections, the value ``detector(image)`` returns: a module of its own so that
the result type is apart from the model that computes it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .arguments import NUMBER, checked
from .boxes import to_continuous
from .errors import UserError


@dataclass
class Detections:
    """One image's detections (what ``detector(image)`` returns).

    ``boxes`` are ``[N, 4]`` ``(x1, y1, x2, y2)`` in 0-based *inclusive* pixels (a box covering
    the whole image is ``[0, 0, W-1, H-1]``), ``labels`` index ``names``. ``to_dict`` gives
    torchvision's continuous convention instead (``x2 + 1``), as its detection models return.
    """

    boxes: np.ndarray  # [N, 4] 0-based inclusive pixels
    # [N] the probability that each detection is right (calibrated runs), else the SVM margin
    scores: np.ndarray
    labels: np.ndarray  # [N] class index into ``names``
    timings: dict[str, float] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # the detector's classes
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB image, for plot()
    path: str | None = None  # the file it came from, when it came from one
    margins: np.ndarray | None = None  # [N] the raw SVM margins (what ``scores`` calibrates)
    calibrated: bool = True  # False for runs before 0.4: ``scores`` are then the margins

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection."""
        return [self.names[int(c)] for c in self.labels]

    def to_dict(self) -> dict[str, torch.Tensor]:
        """torchvision's detection output: ``boxes`` float32 ``[N, 4]`` (continuous
        coordinates), ``scores`` float32 ``[N]``, ``labels`` int64 ``[N]``."""
        boxes = torch.as_tensor(np.asarray(self.boxes, dtype=np.float32)).reshape(-1, 4)
        return {"boxes": to_continuous(boxes),
                "scores": torch.as_tensor(np.asarray(self.scores, dtype=np.float32)),
                "labels": torch.as_tensor(np.asarray(self.labels, dtype=np.int64))}

    def to_list(self, image: str | None = None) -> list[dict]:
        """Rows of ``detections.json``: ``{"image", "label", "score", "bbox", "margin"}``."""
        name = image if image is not None else self.path
        margins = self.margins if self.margins is not None else self.scores
        return [{"image": name, "label": lab, "score": float(s), "bbox": [float(v) for v in b], "margin": float(m)}
                for b, s, lab, m in zip(self.boxes, self.scores, self.class_names, margins)]

    @checked(min_score=NUMBER.or_none())
    def plot(self, min_score: float | None = None) -> np.ndarray:
        """The image with the detections painted on it (``[H, W, 3]`` uint8); with
        ``min_score``, only those scoring at least that (e.g. 0.5: the likelier right than
        wrong; the detections themselves were already cut at the threshold they were made with)."""
        from .viz import draw

        if self.image is None:
            raise UserError("these detections carry no image to paint on (they were not made by detector(image))")
        keep = np.ones(len(self), bool) if min_score is None else self.scores >= min_score
        return draw(self.image, self.boxes[keep], [n for n, k in zip(self.class_names, keep) if k],
                    self.scores[keep], self.names)
