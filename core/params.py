"""One parser for numbers typed by users (URL parameters, widget values): finite, in range.

`parse_number("alpha", "1000", -3, 3)` raises ParamError("alpha must be a number from -3 to 3;
got '1000'"). inf, nan, values that overflow, and whole numbers given as fractions are refused
the same way, so a page can show the message as is and never a traceback.
"""

from __future__ import annotations

import math

MAX_TEXT = 40
"""Longest raw value quoted back in a message."""


class ParamError(ValueError):
    """A user-given number that is not a number, not finite, or out of its allowed range."""


def allowed(lo: float, hi: float, integer: bool = False) -> str:
    """'from -3 to 3' / 'a whole number from 1 to 256': the range as a message shows it."""
    kind = "a whole number" if integer else "a number"
    if math.isinf(lo) and math.isinf(hi):
        return f"{kind} (finite)"
    return f"{kind} from {_show(lo)} to {_show(hi)}"


def _show(x: float) -> str:
    """2147483647 in full, 0.05 as is, 1.0344827586 as 1.03448."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def parse_number(
    name: str, raw: str | float | int, lo: float, hi: float, integer: bool = False
) -> float:
    """`raw` (text or a number) as a float in [lo, hi]; an int-valued float when `integer`."""
    shown = repr(raw if not isinstance(raw, str) else raw[:MAX_TEXT])
    problem = f"{name} must be {allowed(lo, hi, integer)}; got {shown}"
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError, TypeError):
        raise ParamError(problem) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ParamError(problem)
    if integer and not value.is_integer():
        raise ParamError(problem)
    return value


def parse_int(name: str, raw: str | float | int, lo: int, hi: int) -> int:
    return int(parse_number(name, raw, lo, hi, integer=True))
