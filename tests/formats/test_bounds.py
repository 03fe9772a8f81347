"""Every number a format string carries is bounded at parse time: a huge value is refused in
microseconds with a short message naming the field and its limit (issue 15)."""

from __future__ import annotations

import time

import pytest

from quarch.formats import Format
from quarch.formats._grammar import EXCERPT_CHARS, FIELD_LIMITS, GRAMMAR_HELP

HUGE = "9" * 10
# (format string, field it overflows)
OVERSIZED = [
    (f"e{HUGE}m2", "exponent width"),
    (f"e4m{HUGE}", "mantissa width"),
    (f"int{HUGE}", "integer bits"),
    (f"bfp{HUGE}", "integer bits"),
    (f"pot{HUGE}", "power-of-two bits"),
    (f"e4m3_bias{HUGE}", "exponent bias"),
    (f"int4_g{HUGE}", "group size"),
    (f"int4_b{HUGE}x4", "2-D block size"),
    (f"int4_b4x-{HUGE}", "2-D block size"),
    (f"int4_a{HUGE}", "axis"),
    (f"int4_sr{HUGE}", "random bits"),
    (f"mxfp4_sr8_seed{HUGE}", "seed"),
    ("int4_g" + "9" * 4000, "group size"),  # near Python's int() digit limit
]


def _message(text: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        Format.parse(text)
    return str(info.value), time.perf_counter() - t0


@pytest.mark.parametrize(("text", "field"), OVERSIZED)
def test_oversized_fields_are_refused_fast_naming_field_and_limit(text: str, field: str) -> None:
    msg, seconds = _message(text)
    lo, hi = FIELD_LIMITS[field]
    assert field in msg and f"{lo}..{hi}" in msg, msg
    assert seconds < 0.05, f"{text[:30]!r} took {seconds:.3f} s to refuse"
    assert len(msg) - len(GRAMMAR_HELP) < 3 * EXCERPT_CHARS + 120, msg


@pytest.mark.parametrize(
    "text", ["int4_g1", "int4_g2147483647", "int4_b2147483647x1", "mxfp4_sr24_seed4294967295"]
)
def test_field_limits_are_inclusive(text: str) -> None:
    assert Format.parse(str(Format.parse(text))) == Format.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 100_000,
        "int4_" + "g1_" * 2000 + "g1",
        "cb[" + ",".join(str(i) for i in range(300)) + "]",
        "cb[1," + "y" * 3000 + "]",
        "int4_" + "q" * 3000,
        "int4_s" + "q" * 3000,
    ],
)
def test_long_strings_are_refused_with_a_short_excerpt(text: str) -> None:
    msg, seconds = _message(text)
    assert seconds < 0.05
    assert len(msg) - len(GRAMMAR_HELP) < 3 * EXCERPT_CHARS + 120, msg[:300]
