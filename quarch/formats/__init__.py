"""Number formats, bit-exact: element codecs, scaling, rounding, and the string grammar.

>>> from quarch.formats import Format, quantize
>>> fmt = Format.parse("mxfp4")
>>> fmt.bits_per_element
4.25
"""

from quarch.formats._api import Encoded, cast_element, compute_scales, quantize
from quarch.formats._codes import decode, encode
from quarch.formats._compare import FormatError, compare_formats
from quarch.formats._grammar import GRAMMAR_HELP
from quarch.formats._presets import ALL_FORMATS, PRESETS
from quarch.formats._scaling import Scales
from quarch.formats._spec import (
    Codebook,
    Format,
    IntElement,
    IntGrid,
    Minifloat,
    Pow2Scale,
    PowerOfTwo,
    Rounding,
    RoundMode,
    ScaleRule,
    Scaling,
    ScalingKind,
    Specials,
    Ternary,
)

parse = Format.parse

__all__ = [
    "ALL_FORMATS",
    "GRAMMAR_HELP",
    "PRESETS",
    "Codebook",
    "Encoded",
    "Format",
    "FormatError",
    "IntElement",
    "IntGrid",
    "Minifloat",
    "Pow2Scale",
    "PowerOfTwo",
    "RoundMode",
    "Rounding",
    "ScaleRule",
    "Scales",
    "Scaling",
    "ScalingKind",
    "Specials",
    "Ternary",
    "cast_element",
    "compare_formats",
    "compute_scales",
    "decode",
    "encode",
    "parse",
    "quantize",
]
