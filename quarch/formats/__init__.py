"""Number formats, bit-exact: element codecs, scaling, rounding, and the string grammar.

>>> from quarch.formats import Format, quantize
>>> fmt = Format.parse("mxfp4")
>>> fmt.bits_per_element
4.25
"""

from quarch.formats._api import Encoded, cast_element, compute_scales, quantize
from quarch.formats._codes import decode, encode
from quarch.formats._compare import FormatError, compare_formats
from quarch.formats._gguf_pack import (
    decode_gguf_bytes,
    encode_gguf_bytes,
    gguf_fallback,
    gguf_type_of,
)
from quarch.formats._grammar import GRAMMAR_HELP
from quarch.formats._presets import ALL_FORMATS, GGUF_FORMATS, PRESETS
from quarch.formats._scaling import Scales
from quarch.formats._spec import (
    Codebook,
    Format,
    GgufBlock,
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
    "GGUF_FORMATS",
    "GRAMMAR_HELP",
    "PRESETS",
    "Codebook",
    "Encoded",
    "Format",
    "FormatError",
    "GgufBlock",
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
    "decode_gguf_bytes",
    "encode",
    "encode_gguf_bytes",
    "gguf_fallback",
    "gguf_type_of",
    "parse",
    "quantize",
]
