"""The Python API's argument checks, in one place: every public function declares what each of
its arguments takes with :func:`checked`, and a wrong type or value is a :class:`UserError`
that names the argument and what it takes, raised before any work starts, never an internal
error deep inside (``sppdet.load(123)``, ``out=None``, ``gallery="3"``, ``paint="no"``, which
would silently read as true). Where the meaning is plain the value is taken as meant: one
string is one override (``overrides="test.nms=0.4"``), one path is one input."""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from .errors import UserError


class Refused(Exception):
    """Raised by a :class:`Takes` converter: the value is not what the argument takes."""


@dataclass(frozen=True)
class Takes:
    """What one argument takes: ``what`` for the message, ``convert`` returns the value the
    function gets (raising :class:`Refused`, TypeError or ValueError to refuse it), ``None``
    passes through unchanged when ``optional``."""

    what: str
    convert: Callable[[Any], Any]
    optional: bool = False
    label: str | None = None  # the name in messages, when not the parameter's (e.g. "images (--images)")

    def or_none(self) -> "Takes":
        return replace(self, optional=True, what=f"{self.what}, or None")

    def named(self, label: str) -> "Takes":
        return replace(self, label=label)

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        try:
            return self.convert(value)
        except (Refused, TypeError, ValueError):
            raise UserError(f"{self.label or name} must be {self.what}, not {_shown(value)}") from None


def _shown(value: Any) -> str:
    text = " ".join(repr(value).split())  # one line, whatever the repr (arrays span several)
    return text if len(text) <= 80 else text[:77] + "..."


def checked(**takes: Takes):
    """Check every argument of the decorated function against ``takes`` before calling it.

    Every parameter (but ``self`` and ``**settings``) must have an entry, so that a new
    argument cannot go unchecked; calls with missing or unknown arguments are a UserError too."""
    def decorate(fn):
        sig = inspect.signature(fn)
        unchecked = [n for n, p in sig.parameters.items()
                     if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in takes]
        extra = set(takes) - set(sig.parameters)
        if unchecked or extra:
            raise TypeError(f"{fn.__qualname__}: arguments without a check {unchecked}, checks without an "
                            f"argument {sorted(extra)}")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise UserError(f"{fn.__name__}: {exc}") from None
            for name, value in bound.arguments.items():
                if name in takes:
                    bound.arguments[name] = takes[name].check(name, value)
            return fn(*bound.args, **bound.kwargs)

        wrapper.takes = takes
        return wrapper
    return decorate


# -- converters --------------------------------------------------------------------------
def _path(v: Any) -> Any:
    if isinstance(v, (str, os.PathLike)) and not isinstance(os.fspath(v), bytes) and str(v).strip():
        return v
    raise Refused


def _bool(v: Any) -> bool:
    if isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_")):
        return bool(v)  # numpy's too
    raise Refused


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise Refused
    return v


def _int_at_least(low: int) -> Callable[[Any], int]:
    def convert(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
            raise Refused
        return int(v)
    return convert


def _choice(*values: str) -> Callable[[Any], str]:
    def convert(v: Any) -> str:
        if isinstance(v, str) and v in values:
            return v
        raise Refused
    return convert


def _strings(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) and s.strip() for s in v):
        return list(v)
    raise Refused


def _overrides(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]  # one override, never its characters
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return list(v)
    raise Refused


def _paths(v: Any) -> list:
    if isinstance(v, (str, os.PathLike)):
        return [_path(v)]
    if isinstance(v, (list, tuple)):
        return [_path(p) for p in v]
    raise Refused


def _similar(v: Any) -> list[list[str]]:
    if isinstance(v, (list, tuple)):
        return [_strings(g) for g in v]
    raise Refused


def _device(v: Any) -> str:
    v = str(v) if type(v).__name__ == "device" else v  # a torch.device
    if isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        return v
    raise Refused


def _ray(v: Any) -> str:
    if isinstance(v, str) and re.fullmatch(r"auto|local|(ray://)?[\w.-]+:\d+", v.strip()):
        return v.strip()
    raise Refused


def _dict(v: Any) -> dict:
    if isinstance(v, dict):
        return v  # the caller's own object: it is filled in
    raise Refused


def _instance(module: str, *names: str) -> Callable[[Any], Any]:
    """An instance of sppdet classes imported only when needed (they pull in torch)."""
    def convert(v: Any) -> Any:
        import importlib

        mod = importlib.import_module(module, __package__)
        if isinstance(v, tuple(getattr(mod, n) for n in names)):
            return v
        raise Refused
    return convert


def _either(*converters: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        for c in converters:
            try:
                return c(v)
            except Refused:
                pass
        raise Refused
    return convert


def _config(v: Any) -> Any:
    if isinstance(v, dict):
        return v
    return _either(_path, _instance(".config", "Config"))(v)


def _runs(v: Any) -> list:
    one = _either(_path, _instance(".detector", "Detector"))
    if isinstance(v, (list, tuple)):
        return [one(r) for r in v]
    return [one(v)]  # one run


def _threshold(v: Any) -> Any:
    """A number, or per class: ``{"RBC": 0.4, "*": 0.2}`` or a ``[C]`` vector (names and
    lengths are checked against the run)."""
    if type(v).__name__ in ("ndarray", "Tensor") and getattr(v, "ndim", None) == 1:
        return v
    if isinstance(v, dict):
        if all(isinstance(k, str) and k.strip() for k in v):
            return {k: _number(x) for k, x in v.items()}
        raise Refused
    return _number(v)


def _sources(v: Any) -> list:
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if isinstance(v, (list, tuple)) and all(isinstance(s, (str, int)) and not isinstance(s, bool)
                                            and str(s).strip() for s in v):
        return list(v)
    raise Refused


def _loaded_onnx(v: Any) -> Any:
    """An onnxruntime detector (its module is loaded if one exists: no import of onnxruntime here)."""
    import sys

    mod = sys.modules.get(f"{__package__}.onnx_engine")
    if mod is not None and isinstance(v, mod.OnnxDetector):
        return v
    raise Refused


def _anything(v: Any) -> Any:
    return v


# -- what the API's arguments take ---------------------------------------------------------
PATH = Takes("a path (a non-empty str or pathlib.Path)", _path)
DATA = Takes("a path (a non-empty str or pathlib.Path) or a loaded data set",
             _either(_path, _instance(".datasets", "DetectionDataset")))
RUN = Takes("a run directory (a non-empty str or pathlib.Path) or a Detector",
            _either(_path, _instance(".detector", "Detector"), _loaded_onnx))
RUNS = Takes("a list of run directories or Detectors (or one)", _runs)
SPLIT = Takes("a split name or a list file (a non-empty str or pathlib.Path)", _path)
CONFIG = Takes("a YAML path, a shipped config's name, a dict or a Config", _config)
CFG = Takes("a Config (sppdet.make_config)", _instance(".config", "Config"))
OVERRIDES = Takes("a list of 'key=value' strings (or one such string)", _overrides)
INPUTS = Takes("a path or a list of paths (str or pathlib.Path)", _paths)
CLASSES = Takes("a list of class names (non-empty strings)", _strings)
SIMILAR = Takes("a list of lists of class names", _similar)
BOOL = Takes("True or False", _bool)
NUMBER = Takes("a finite number", _number)
THRESHOLD = Takes("a finite number or a dict of class name to number ('*': the others)", _threshold)
SOURCES = Takes("a list of camera indices or stream URLs/paths (or one)", _sources)
DEVICE = Takes("'auto', 'cpu', 'cuda' or 'cuda:N'", _device)
WORKERS = Takes("a whole number of at least 1", _int_at_least(1))
RAY = Takes("'auto', 'local' or a cluster address (host:port, ray://host:port)", _ray)
TIMINGS = Takes("a dict (filled in with each stage's seconds)", _dict)
EXECUTOR = Takes("an executor of sppdet.parallel (make_executor)", _instance(".parallel", "Executor"))
ENGINE = Takes("'torch' or 'onnxruntime'", _choice("torch", "onnxruntime"))
FORMAT = Takes("'onnx'", _choice("onnx"))
METRIC = Takes("'voc07' or 'voc12'", _choice("voc07", "voc12"))
ANYTHING = Takes("anything", _anything)  # checked where it is used, with its own message


def whole(low: int) -> Takes:
    return Takes(f"a whole number of at least {low}", _int_at_least(low))
