"""The command line's argument types: each bad value is refused with a message naming the option
or the value, and the parser's usage errors are one line with exit status 2."""
from __future__ import annotations

import argparse
import math

import pytest

from sppdet.cli_args import Parser, finite, positive, threshold


@pytest.mark.parametrize("text, value", [("1", 1), ("7", 7), (" 3 ", 3)])
def test_positive_takes_whole_numbers_from_one(text, value):
    assert positive("--workers")(text) == value


@pytest.mark.parametrize("text, words", [("0", "at least 1, got 0"), ("-2", "at least 1, got -2"),
                                         ("1.5", "whole number, got '1.5'"), ("two", "whole number")])
def test_positive_refuses_with_the_option_name(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match="--workers") as exc:
        positive("--workers")(text)
    assert words in str(exc.value)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "x", ""])
def test_finite_refuses_what_is_not_a_finite_number(text):
    with pytest.raises(argparse.ArgumentTypeError):
        finite(text)


def test_finite_takes_numbers():
    assert finite("0.25") == 0.25 and finite("-1e-3") == -0.001 and math.isfinite(finite("1e300"))


def test_threshold_takes_a_number_or_per_class_values():
    assert threshold("0.5") == 0.5
    assert threshold("RBC=0.4,WBC=0.7") == {"RBC": 0.4, "WBC": 0.7}


@pytest.mark.parametrize("text", ["RBC=", "=0.3", "RBC=x", "nan"])
def test_threshold_refusals_are_argument_errors_not_tracebacks(text):
    with pytest.raises(argparse.ArgumentTypeError):
        threshold(text)


def test_the_parser_ends_a_usage_error_with_one_line_and_exit_2(capsys):
    p = Parser(prog="sppdet x")
    p.add_argument("--n", type=positive("--n"))
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--n", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sppdet: error: ") and err.count("\n") == 1
    assert "--n must be at least 1, got 0" in err and "(see 'sppdet x --help')" in err
