"""The shared argument checks of quarch/_checks.py."""

from __future__ import annotations

from enum import StrEnum

import pytest

from quarch._checks import choice


class _Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


def test_choice_by_name_or_member() -> None:
    assert choice(_Colour, "red", "colour") is _Colour.RED
    assert choice(_Colour, _Colour.BLUE, "colour") is _Colour.BLUE


@pytest.mark.parametrize("bad", ["green", "", 3, None])
def test_choice_names_the_value_and_the_valid_ones(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"unknown colour {bad!r}; valid: red, blue$"):
        choice(_Colour, bad, "colour")


def test_choice_quotes_only_an_excerpt_of_a_long_value() -> None:
    with pytest.raises(ValueError, match=r"\(500 chars\); valid: red, blue"):
        choice(_Colour, "x" * 500, "colour")
