"""Progress bars: live on a terminal, a line every ~30 s in logs (CI, nohup)."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs):
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
