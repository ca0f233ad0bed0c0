"""Declarative parameter checks with one message template.

"The 'x' parameter of Y must be <constraint>. Got <value>."
"""

from __future__ import annotations

import math
from typing import Any

from agescan.errors import InputError


def _fail(name: str, owner: str, constraint: str, value: Any) -> InputError:
    return InputError(f"The {name!r} parameter of {owner} must be {constraint}. Got {value!r}.")


def check_number(value: Any, name: str, owner: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> float:
    """Return ``value`` if it is a real number inside the bounds, else raise :class:`InputError`."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise _fail(name, owner, kind, value)
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    rng = f"{'an integer' if integer else 'a number'} in {left}{'-inf' if lo is None else lo}, " \
          f"{'inf' if hi is None else hi}{right}"
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise _fail(name, owner, rng, value)
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise _fail(name, owner, rng, value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: tuple | list) -> Any:
    if value not in choices:
        raise _fail(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)
    return value
