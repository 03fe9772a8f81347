"""Argument checks shared across subpackages (user input raises `ValueError` naming the value)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


def check_positive_int(name: str, value: object) -> None:
    """Raise `ValueError` naming `name` and `value` unless `value` is an `int` ≥ 1 (a `bool` is
    not: `batch_size=True` is a mistake, not 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


EXCERPT_CHARS = 40
"""How much of a user's value an error message quotes."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`repr(text)`, cut to about `limit` characters (naming the full length) when longer."""
    head = text[: limit + 2]  # never repr a whole long string just to cut it
    quoted = repr(head)
    if len(head) == len(text) and len(quoted) <= limit + 2:
        return quoted
    return f"{quoted[:limit]}… ({len(text)} chars)"


def choice(kind: type[E], value: object, what: str) -> E:
    """The member of the closed choice `kind` named `value` (a member passes through).

    Raises:
        ValueError: `value` names no member: `unknown <what> <value>; valid: <names>`.
    """
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass  # reported below, with the valid names
    shown = excerpt(value) if isinstance(value, str) else repr(value)
    valid = ", ".join(m.value for m in kind)
    raise ValueError(f"unknown {what} {shown}; valid: {valid}")
