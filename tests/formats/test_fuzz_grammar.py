"""Property-based fuzzing of the format-string grammar (issue 15): any string either parses to a
format that prints back to itself and quantizes a small tensor, or raises a short one-line
ValueError, and never takes long."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quarch.formats import PRESETS, Format, quantize
from quarch.formats._grammar import GRAMMAR_HELP

NUMBERS = st.one_of(
    st.integers(-3, 40),
    st.integers(-(10**30), 10**30),
    st.sampled_from([2**31 - 1, 2**31, 2**32 - 1, 2**32, 10**4000]),
).map(str)
WORDS = st.sampled_from(
    [
        *PRESETS,
        *["e", "m", "g", "b", "x", "a", "s", "t", "c"],
        *["int", "pot", "bfp", "cb", "bias", "sr", "seed"],
        *[
            "fn",
            "fnuz",
            "fin",
            "nosub",
            "sat",
            "full",
            "asym",
            "raw",
            "ts",
            "amax",
            "mse",
            "mean",
            "floor",
            "ceil",
            "near",
        ],
        *[
            "rne",
            "away",
            "rz",
            "rd",
            "ru",
            "e8m0",
            "e4m3",
            "ue5m3",
            "fp32",
            "bf16",
            "fp16",
            "ternary",
            "nf4",
        ],
        "cb[",
        "]",
        ",",
        "-",
        "[/x]",
        "\x00",
        "é",
    ]
)
TOKENS = st.lists(st.one_of(WORDS, NUMBERS), min_size=1, max_size=4).map("".join)
FORMAT_TEXT = st.one_of(
    st.lists(TOKENS, min_size=1, max_size=6).map("_".join),
    st.text(max_size=40),
)
X = torch.randn(4, 24, generator=torch.Generator().manual_seed(0))


def _check(text: str) -> None:
    try:
        fmt = Format.parse(text)
    except ValueError as error:
        msg = str(error)
        assert "\n" not in msg, msg
        assert len(msg) - len(GRAMMAR_HELP) < 300, msg[:400]
        return
    assert Format.parse(str(fmt)) == fmt, text
    try:
        y = quantize(fmt, X)
    except ValueError:  # a shape this format cannot take (e.g. an axis past the tensor's dims)
        return
    assert y.shape == X.shape and y.dtype == X.dtype


@settings(
    max_examples=int(os.environ.get("QUARCH_FUZZ_EXAMPLES", "300")),  # more for a long campaign
    deadline=timedelta(seconds=2),  # generous for a loaded machine; the bugs took minutes
    suppress_health_check=[HealthCheck.too_slow],
)
@given(FORMAT_TEXT)
@example(f"e{'9' * 10}m2")
@example("int8_g40000000")
@example("mxfp4_sr8_seed" + "9" * 30)
@example("cb[" + ",".join(["1"] * 5000) + "]")
def test_fuzzed_format_strings(text: str) -> None:
    _check(text)
