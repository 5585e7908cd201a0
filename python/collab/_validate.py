"""Checks for numeric and choice arguments at the Python boundary of collab.

Every public function validates its arguments once, here, and raises
`collab.errors.InvalidArgument` (a ValueError) naming the argument and the allowed range.
The native core checks again only as a safety net for C callers, so a bad value never
reaches it as a pybind11 TypeError or an overflowed C integer.

    sparsity = check_float("sparsity", sparsity, lo=0.0, hi=1.0, hi_open=True)
    seed = check_int("seed", seed, lo=0, hi=2**64 - 1)
    mode = check_choice("mode", mode, ("fast", "exact"))
"""
from __future__ import annotations

import math
import numbers

from .errors import InvalidArgument

__all__ = ["check_int", "check_float", "check_choice", "check_int_seq"]


def _interval(lo, hi, lo_open=False, hi_open=False) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def _show(value) -> str:
    """repr of a rejected value, shortened (a 400-digit int makes an unreadable message)."""
    r = repr(value)
    return r if len(r) <= 40 else r[:18] + "..." + r[-18:]


def _is_int(value) -> bool:
    # bool is an int subclass, but True as a block count is a bug, not a number.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """value as a Python int in [lo, hi] (either bound may be None); any integer type."""
    if not _is_int(value):
        raise InvalidArgument(f"{name} must be an integer in {_interval(lo, hi)}, got {_show(value)}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgument(f"{name} must be an integer in {_interval(lo, hi)}, got {_show(v)}")
    return v


def check_float(name: str, value, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """value as a finite Python float in the interval; ints and numpy scalars accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a number in {_interval(lo, hi, lo_open, hi_open)}, "
                              f"got {_show(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int too large for a double
        v = math.inf if value > 0 else -math.inf
    ok = math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        raise InvalidArgument(f"{name} must be a finite number in {_interval(lo, hi, lo_open, hi_open)}, "
                              f"got {_show(value)}")
    return v


def check_choice(name: str, value, choices):
    """value itself when it is one of choices (compared with ==, types must match too)."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    raise InvalidArgument(f"{name} must be one of {list(choices)!r}, got {_show(value)}")


def check_int_seq(name: str, value, *, lo: int | None = None, hi: int | None = None,
                  min_len: int = 0, max_len: int | None = None, scalar_ok: bool = False) -> tuple:
    """A sequence of integers (each in [lo, hi]) of min_len..max_len items, as a tuple.

    scalar_ok: a single integer is accepted as a one-item sequence.
    """
    if scalar_ok and _is_int(value):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or not hasattr(value, "__len__"):
        raise InvalidArgument(f"{name} must be a sequence of integers, got {_show(value)}")
    n = len(value)
    if n < min_len or (max_len is not None and n > max_len):
        count = f"{min_len}" if max_len == min_len else f"{min_len}..{'' if max_len is None else max_len}"
        raise InvalidArgument(f"{name} must hold {count} integers, got {n}")
    return tuple(check_int(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(value))
