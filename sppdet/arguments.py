"""Checks of the Python API's arguments: a wrong type or value is a :class:`UserError` that
names the argument, never an internal error deep inside (``sppdet.load(123)``, ``out=None``,
``gallery="3"``, ``overrides="k=v"`` split into characters)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .errors import UserError


def is_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def path_arg(name: str, value: Any) -> Path:
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return Path(value)
    raise UserError(f"{name} must be a path (a non-empty str or pathlib.Path), not {value!r}")


def overrides_list(overrides: Any) -> list[str]:
    """``"key=value"`` strings; a bare string is one override (never split into characters)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not is_seq(overrides) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"overrides must be a list of 'key=value' strings, not {overrides!r}")
    return list(overrides)


def check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, not {value!r}")


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be a whole number of at least {low}, not {value!r}")


def check_split(name: str, value: Any) -> None:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise UserError(f"{name} must be a split name or a list file, not {value!r}")


def check_parallel(workers: Any, ray: Any) -> None:
    if workers is not None:
        check_int("workers", workers, 1)
    if ray is not None and not (isinstance(ray, str) and ray.strip()):
        raise UserError(f"ray must be 'auto', 'local' or a cluster address, not {ray!r}")
