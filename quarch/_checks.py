"""Argument checks shared across subpackages (user input raises `ValueError` naming the value)."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> None:
    """Raise `ValueError` naming `name` and `value` unless `value` is an `int` ≥ 1 (a `bool` is
    not: `batch_size=True` is a mistake, not 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
