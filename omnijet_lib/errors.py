"""Exceptions raised on bad input, in one place.

Each names what was wrong, the nearest valid choices and where (file, object),
in the manner of uproot's ``KeyInFileError``.  They subclass built-ins so that
callers can catch them as ``KeyError`` / ``ValueError`` without importing us.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable


def _choices(name: str, available: Iterable[str]) -> str:
    available = sorted(available)
    close = difflib.get_close_matches(name, available, n=3)
    shown = close + [a for a in available if a not in close]
    return ", ".join(repr(a) for a in shown) or "(none)"


def is_int(value: object) -> bool:
    """A Python int but not a bool (which Python counts as one); numpy integers are not (they do not
    survive a checkpoint loaded with ``weights_only=True``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, name: str, *, minimum: int) -> None:
    """Refuse anything but an integer >= ``minimum``, naming the argument ``name``.

    Counts and sizes are checked before anything is written: a negative count
    otherwise slices from the end, and a zero step never advances.  ``True`` is
    not a count, though Python's bool is an int.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)


class SchemaError(KeyError):
    """A file lacks a key (HDF5 dataset, ROOT branch) that its format requires."""

    def __init__(self, missing: str, available: Iterable[str], *, file: str, obj: str = "/"):
        self.missing, self.file, self.obj = missing, file, obj
        # fmt: off
        self.message = (
            f"not found: {missing!r}\n"
            f"    Available keys: {_choices(missing, available)}\n"
            f"in file {file}, object {obj}"
        )
        # fmt: on
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return self.message


class BadDataError(ValueError):
    """Values that cannot be physics: NaN, infinities, jets without constituents, ..."""


class UnknownParameterError(KeyError):
    """A notebook was given a parameter its ``parameters`` cell does not define."""

    def __init__(self, unknown: Iterable[str], available: Iterable[str], *, notebook: str):
        available = list(available)
        lines = [f"unknown parameter {name!r}; did you mean one of: {_choices(name, available)}" for name in unknown]
        self.message = "\n".join(lines) + f"\nin notebook {notebook}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class BadParameterError(ValueError):
    """Notebook parameters whose values do not fit their defaults (type or range), all of them named."""

    def __init__(self, problems: Iterable[str], *, notebook: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) + f"\nin notebook {notebook}")
