"""sppdet.config_rules, the rule language of the configuration, rule by rule on hand-picked values:
open and closed interval ends, NaN and infinities, booleans that are not numbers, lists, choices,
``optional``, the messages, and :func:`ruled`'s field."""
import dataclasses
import math

import pytest

from sppdet.config_rules import Rule, ruled
from sppdet.errors import UserError


def ok(rule: Rule, value) -> bool:
    try:
        rule.check("k", value)
    except UserError:
        return False
    return True


@pytest.mark.parametrize("interval, inside, outside", [
    ("(0, 1]", [1e-9, 0.5, 1], [0, -0.1, 1.0000001]),
    ("[0, 1)", [0, 0.999], [1, -1e-9]),
    ("[0, 1]", [0, 1], [-1e-12, 1 + 1e-12]),
    ("(0, inf)", [1e-300, 1e300], [0, -1]),
    ("[-inf, inf]", [-1e308, 0, 1e308], []),
])
def test_interval_ends_open_and_closed(interval, inside, outside):
    rule = Rule("float", interval)
    assert [ok(rule, v) for v in inside] == [True] * len(inside)
    assert [ok(rule, v) for v in outside] == [False] * len(outside)


def test_float_refuses_nan_and_infinities_even_without_an_interval():
    rule = Rule("float")
    assert ok(rule, -1e300) and ok(rule, 3)  # an int is a number too
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(UserError, match=r"config: k must be a finite number, got "):
            rule.check("k", bad)
    # NaN is refused as not finite, not as outside the range (every comparison with NaN is false)
    with pytest.raises(UserError, match=r"must be a finite number in \(0, 1\], got nan"):
        Rule("float", "(0, 1]").check("k", math.nan)


def test_int_refuses_floats_and_booleans():
    rule = Rule("int", "[1, inf)")
    assert ok(rule, 1) and ok(rule, 10 ** 12)
    assert not ok(rule, 0) and not ok(rule, 2.0) and not ok(rule, True) and not ok(rule, "3")
    assert not ok(Rule("float"), True)  # a bool is never a number
    with pytest.raises(UserError, match=r"^sec: n must be in \[1, inf\), got 0$"):
        rule.check("n", 0, where="sec")
    with pytest.raises(UserError, match=r"^config: n must be an integer in \[1, inf\), got 2.5$"):
        rule.check("n", 2.5)


def test_bool_str_choice_and_list():
    assert ok(Rule("bool"), False) and not ok(Rule("bool"), 0) and not ok(Rule("bool"), "true")
    assert ok(Rule("str"), "a") and not ok(Rule("str"), "  ") and not ok(Rule("str"), "") and not ok(Rule("str"), 3)
    choice = Rule("choice", choices=("fast", "quality"))
    assert ok(choice, "fast") and not ok(choice, "Fast") and not ok(choice, ["fast"])
    with pytest.raises(UserError, match=r"must be one of 'fast', 'quality', got 'slow'"):
        choice.check("mode", "slow")
    assert ok(Rule("list"), []) and ok(Rule("list"), [1, "a"]) and not ok(Rule("list"), (1,))


def test_ints_and_strs():
    ints = Rule("ints", "[1, 64]")
    assert ok(ints, [1, 64]) and ok(ints, [6, 3, 2, 1])
    for bad in ([], [0], [65], [2.0], [True], "1", [1, None]):
        assert not ok(ints, bad), bad
    with pytest.raises(UserError, match=r"must be a non-empty list of integers in \[1, 64\], got \[6, 0\]"):
        ints.check("levels", [6, 0])
    strs = Rule("strs")
    assert ok(strs, []) and ok(strs, ["cat", "dog"])
    for bad in (["cat", "cat"], ["cat", ""], ["cat", " "], [1], "cat", None):
        assert not ok(strs, bad), bad


def test_optional_allows_none_and_says_so():
    assert ok(Rule("bool", optional=True), None) and not ok(Rule("bool"), None)
    assert Rule("bool", optional=True).describe() == "true or false (or null)"
    with pytest.raises(UserError, match=r"must be a finite number in \[0, 1\] \(or null\), got 'x'"):
        Rule("float", "[0, 1]", optional=True).check("k", "x")


def test_ruled_keeps_the_rule_in_the_field_s_metadata():
    rule = Rule("int", "[1, inf)")

    @dataclasses.dataclass
    class Section:
        n: int = ruled(rule, 3)
        sizes: list = ruled(Rule("ints", "[1, inf)"), factory=lambda: [224])

    a, b = Section(), Section()
    assert (a.n, a.sizes) == (3, [224]) and a.sizes is not b.sizes  # a fresh list per instance
    fields = {f.name: f for f in dataclasses.fields(Section)}
    assert fields["n"].metadata["rule"] is rule and fields["sizes"].metadata["rule"].kind == "ints"
