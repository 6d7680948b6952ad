"""The interface every proposal method implements, so that caching, training, detection and
evaluation never ask which method they hold."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class Proposer:
    """A proposal method: class-independent windows for one image.

    ``needs_maps``: the method reads the detector's conv maps (it runs after the trunk, where
    the maps are) instead of the pixels. ``cache_id()`` is what makes its windows: the name of
    its cache folder is derived from it, so a changed setting or model never reuses old windows.
    """

    name = ""
    needs_maps = False

    def propose(self, image_id: str, image: Callable[[], np.ndarray] | None,
                maps: Callable[[], Sequence] | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """``[K, 4]`` float32 boxes ``(x1, y1, x2, y2)`` in 0-based inclusive pixels of the
        original image, best first. ``image()`` decodes the RGB image, ``maps()`` gives its conv
        maps (:class:`sppdet.features.ScaleMap` per scale), ``size`` is ``(width, height)``;
        a method calls only what it needs."""
        raise NotImplementedError

    def cache_id(self) -> list:
        raise NotImplementedError

    def for_new_images(self) -> "Proposer":
        """The method that proposes on images outside the data set (``detect``): itself, unless
        it only knows the data set's images (external files)."""
        return self


def whole_image(width: int, height: int) -> np.ndarray:
    """The one window left when a method finds none: the whole image."""
    return np.array([[0, 0, width - 1, height - 1]], dtype=np.float32)
