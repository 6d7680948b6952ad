"""The command line's argument types and parser class: refusals as one ``sppdet: error:`` line
naming the option, so that a bad value never reaches the library as a traceback."""
from __future__ import annotations

import argparse
import math

from .errors import UserError


def positive(name: str):
    """argparse type: an int ≥ 1, refused with the option's name otherwise."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {v}")
        return v
    return parse


def finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def threshold(text: str):
    """argparse type of --threshold: a number or CLASS=T,... (:func:`sppdet.thresholds.parse_threshold`)."""
    from .thresholds import parse_threshold

    try:
        return parse_threshold(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Parser(argparse.ArgumentParser):
    """Usage errors as one ``sppdet: error: …`` line, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"sppdet: error: {message} (see '{self.prog} --help')\n")
