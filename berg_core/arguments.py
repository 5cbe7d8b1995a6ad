"""Checks of the arguments callers pass to the API, before anything is loaded.

Each check returns the value in its canonical form or raises
:class:`~berg_core.errors.InvalidParameterError` naming the parameter, the value given (through
:func:`~berg_core.errors.describe_value`) and what is allowed. Only exact types are accepted where
another type would be silently reinterpreted: ``True`` is not the integer 1, ``1.0`` is not a
subject, a string is not a list of names.
"""

from __future__ import annotations

import math
import os
import re
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import InvalidParameterError, describe_value

__all__ = [
    "DEVICES",
    "require_device",
    "require_flag",
    "require_int",
    "require_name",
    "require_names",
    "require_path",
    "require_real",
    "scalar_value",
]

#: The devices a model can run on, as messages and ``describe()`` list them.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,4})?", re.ASCII)


def require_flag(value: Any, name: str) -> bool:
    """*value* as a ``bool``; only ``True``/``False`` (or a numpy bool) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidParameterError(
        f"{name} = {describe_value(value)} is not valid; expected True or False"
    )


def require_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """*value* as an ``int`` (Python or numpy integer, not a bool), at least *minimum*."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected an integer"
        )
    number = int(value)
    if minimum is not None and number < minimum:
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected an integer >= {minimum}"
        )
    return number


def require_real(value: Any, name: str, *, positive: bool = False) -> float:
    """*value* as a finite ``float`` (int or float, not bool); ``> 0`` if *positive*, else ``>= 0``.

    Raises
    ------
    InvalidParameterError
        Another type, NaN, infinity or a value out of range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected a number"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected a finite number {bound}"
        )
    return number


def require_name(value: Any, name: str, what: str) -> str:
    """*value* as a non-empty ``str`` without NUL characters; *what* says what it names."""
    if isinstance(value, np.str_):
        value = str(value)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected {what} (a non-empty string)"
        )
    return value


def require_names(value: Any, name: str, what: str) -> list[str]:
    """One name or a list/tuple of names (see :func:`require_name`), as a list."""
    if isinstance(value, (str, np.str_)):
        return [require_name(value, name, what)]
    if not isinstance(value, (list, tuple)):
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected {what} or a list of them"
        )
    return [require_name(item, f"{name}[{i}]", what) for i, item in enumerate(value)]


def require_path(value: Any, name: str) -> Path:
    """*value* (a ``str`` or :class:`os.PathLike` of ``str``) as an expanded :class:`Path`."""
    text = value
    if isinstance(value, os.PathLike):
        try:
            text = os.fspath(value)
        except TypeError:
            text = None
    if not isinstance(text, str) or not text or "\x00" in text:
        raise InvalidParameterError(
            f"{name} = {describe_value(value)} is not valid; expected a folder path "
            f"(a non-empty str or pathlib.Path)"
        )
    return Path(text).expanduser()


def require_device(value: Any) -> str:
    """*value* if it names a device (:data:`DEVICES`; ``N`` a CUDA device number)."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        expected = ", ".join(repr(d) for d in DEVICES[:-1]) + f" or {DEVICES[-1]!r}"
        raise InvalidParameterError(
            f"device = {describe_value(value)} is not valid; expected {expected}"
        )
    return value


def scalar_value(value: Any) -> Any:
    """*value* with a numpy scalar or 0-d array (numpy, torch ...) replaced by its Python value.

    Returns
    -------
    object
        The Python scalar, or *value* unchanged when it is not array-like.

    Raises
    ------
    ValueError
        *value* is an array with one or more dimensions (even of one element).
    """
    if isinstance(value, np.generic):
        return value.item()
    ndim = getattr(value, "ndim", None)
    if ndim is None or not callable(getattr(value, "item", None)) or isinstance(value, str):
        return value
    if ndim != 0:
        raise ValueError("an array, not a single value")
    try:
        return value.item()
    except Exception as exc:  # a foreign array type failing in its own way
        raise ValueError(f"its item() failed: {exc}") from None
