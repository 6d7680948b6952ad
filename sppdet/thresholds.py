"""Score thresholds, one per class: ``0.3``, ``{"RBC": 0.4, "WBC": 0.2}``, or ``"RBC=0.4,WBC=0.2"``
on the command line.

A class a dict does not name keeps the run's default (``test.score_thresh``). The thresholds
become one vector over the detector's classes, which is what :meth:`Detector.postprocess`
compares each window's score with: classes are rarely equally easy, and one number either
floods the easy class with false positives or starves the hard one.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import numpy as np

from .errors import UserError

Threshold = Union[float, Mapping[str, float]]


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{what} must be a number, got {text.strip()!r}") from None
    if not math.isfinite(v):
        raise UserError(f"{what} must be a finite number, got {text.strip()!r}")
    return v


def parse_threshold(text: str) -> float | dict[str, float]:
    """``--threshold``'s text: a number (every class), or ``CLASS=T,CLASS=T`` (those classes;
    the others keep the run's default), optionally with one bare number among them, the
    default for the classes not named (``0.3,WBC=0.2``)."""
    text = text.strip()
    if "=" not in text and "," not in text:
        return _number(text, "--threshold")
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            raise UserError(f"--threshold {text!r} has an empty entry; write CLASS=T,CLASS=T")
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq:
            if "*" in out:
                raise UserError(f"--threshold {text!r} gives two defaults; give one bare number at most")
            out["*"] = _number(part, "--threshold")
            continue
        if not name:
            raise UserError(f"--threshold {text!r}: {part.strip()!r} names no class; write CLASS=T")
        if name in out:
            raise UserError(f"--threshold {text!r} gives class {name!r} twice")
        out[name] = _number(value, f"--threshold for {name}")
    return out


def class_thresholds(threshold: Threshold | None, classes: Sequence[str], default: float,
                     calibrated: bool) -> np.ndarray:
    """The least score kept per class, ``[C]`` float64, from a number, a dict of class name →
    number (key ``"*"``: the default for the others) or None (``default`` for all).

    Unknown class names are refused with the known ones listed; on a calibrated run (scores are
    probabilities) a value outside [0, 1] is refused, since no score could ever pass it (or all
    would). A run before 0.4 scores SVM margins, so any finite number goes there.
    """
    classes = list(classes)
    default_name = "threshold"
    if threshold is None:
        values: dict[str, float] = {}
        default_name = "test.score_thresh (the run's default threshold)"
    elif isinstance(threshold, Mapping):
        values = dict(threshold)
        if not all(isinstance(k, str) for k in values):
            raise UserError(f"threshold's keys must be class names, not {list(values)!r}")
        unknown = [k for k in values if k not in classes and k != "*"]
        if unknown:
            raise UserError(f"threshold names class{'es' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))} the run does not have; its classes are "
                            f"{', '.join(classes)}")
        if "*" in values:
            default = values.pop("*")
        else:
            default_name = "test.score_thresh (the default for the classes not named)"
    else:
        values, default = {}, threshold
    for name, v in [(default_name, default)] + [(f"threshold for {k}", v) for k, v in values.items()]:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
            raise UserError(f"{name} must be a finite number, not {v!r}")
        if calibrated and not 0 <= v <= 1:
            raise UserError(f"{name} is {v:g}, but this run's scores are probabilities: give a value in [0, 1]")
    return np.array([float(values.get(c, default)) for c in classes], dtype=np.float64)


def describe(thresholds: np.ndarray, classes: Sequence[str]) -> str:
    """``0.25`` when every class has the same threshold, else ``RBC=0.4, WBC=0.2, Platelets=0.25``."""
    if len(thresholds) and np.all(thresholds == thresholds[0]):
        return f"{thresholds[0]:g}"
    return ", ".join(f"{c}={t:g}" for c, t in zip(classes, thresholds))
