"""The rule language of the configuration: a :class:`Rule` says which values one field allows,
and :func:`ruled` declares a field with its rule (kept in the field's metadata, so no key exists
without one). Its own module so that ``config.py`` holds only the sections and their loading."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


@dataclass(frozen=True)
class Rule:
    """Allowed values of one config field.

    ``kind``: ``int``, ``float`` (finite), ``bool``, ``str``, ``choice``, ``ints`` (non-empty
    list of ints), ``strs`` (list of non-empty, distinct strings) or ``list`` (any list, its
    items checked elsewhere). ``interval`` is written as
    in the error message, e.g. ``"(0, 1]"`` or ``"[1, inf)"``; ``optional`` allows ``None``.
    """

    kind: str
    interval: str = ""
    choices: tuple = ()
    optional: bool = False

    def _in_range(self, v: float) -> bool:
        if not self.interval:
            return True
        lo_s, hi_s = (x.strip() for x in self.interval[1:-1].split(","))
        lo, hi = float(lo_s), float(hi_s)
        ok_lo = v > lo if self.interval[0] == "(" else v >= lo
        ok_hi = v < hi if self.interval[-1] == ")" else v <= hi
        return ok_lo and ok_hi

    def _number_ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.kind in ("int", "ints") and not isinstance(v, int):
            return False
        return math.isfinite(v) and self._in_range(v)

    def describe(self) -> str:
        where = f" in {self.interval}" if self.interval else ""
        return {"int": f"an integer{where}", "float": f"a finite number{where}", "bool": "true or false",
                "str": "a non-empty string", "choice": "one of " + ", ".join(map(repr, self.choices)),
                "ints": f"a non-empty list of integers{where}",
                "strs": "a list of distinct non-empty strings", "list": "a list"}[self.kind] + (" (or null)" if self.optional else "")

    def check(self, key: str, v: Any, where: str = "config") -> None:
        if v is None and self.optional:
            return
        k = self.kind
        if k in ("int", "float"):
            if not isinstance(v, bool) and isinstance(v, int if k == "int" else (int, float)):
                if not math.isfinite(v):  # NaN compares false with every bound: test it first
                    raise UserError(f"{where}: {key} must be {self.describe()}, got {_show(v)}")
                if not self._in_range(v):
                    raise UserError(f"{where}: {key} must be in {self.interval}, got {_show(v)}")
                return
            ok = False
        elif k == "bool":
            ok = isinstance(v, bool)
        elif k == "str":
            ok = isinstance(v, str) and bool(v.strip())
        elif k == "choice":
            ok = isinstance(v, str) and v in self.choices
        elif k == "list":
            ok = isinstance(v, list)
        elif k == "ints":
            ok = isinstance(v, list) and bool(v) and all(self._number_ok(x) for x in v)
        else:  # strs
            ok = (isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)
                  and len(set(v)) == len(v))
        if not ok:
            raise UserError(f"{where}: {key} must be {self.describe()}, got {_show(v)}")


_ANY = ""  # any finite number
_POS = "(0, inf)"
_FRAC = "[0, 1]"


def ruled(rule: Rule, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its validation rule (kept in the field's metadata, so that no key
    exists without one: :func:`rules_of` refuses a field that lacks it)."""
    return field(default=default, default_factory=factory, metadata={"rule": rule})
