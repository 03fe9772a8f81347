"""Named formats with their published definitions, and ALL_FORMATS that every test runs over."""

from __future__ import annotations

import dataclasses

from quarch.formats._elements import NF4, TERNARY
from quarch.formats._gguf_types import GGUF_TYPES
from quarch.formats._grammar import minifloat
from quarch.formats._spec import (
    Element,
    Format,
    GgufBlock,
    IntElement,
    IntGrid,
    Minifloat,
    Pow2Scale,
    ScaleFormat,
    ScaleRule,
    Scaling,
    ScalingKind,
    Specials,
)

_FP32 = minifloat(8, 23)
E8M0 = Pow2Scale()
E4M3_SCALE = minifloat(4, 3, Specials.FN)

FP32 = Format(element=_FP32)
BF16 = Format(element=minifloat(8, 7))
FP16 = Format(element=minifloat(5, 10))
# OCP 8-bit Floating Point Specification (OFP8) rev 1.0: E4M3 has no inf and a single NaN
# pattern per sign (max 448), E5M2 is IEEE-like (max 57344).
FP8_E4M3 = Format(element=minifloat(4, 3, Specials.FN))
FP8_E5M2 = Format(element=minifloat(5, 2))
# OCP Microscaling Formats (MX) v1.0 §5.3: FP6 and FP4 elements have no inf or NaN.
FP6_E3M2 = Format(element=minifloat(3, 2, Specials.FINITE))
FP6_E2M3 = Format(element=minifloat(2, 3, Specials.FINITE))
FP4_E2M1 = Format(element=minifloat(2, 1, Specials.FINITE))


def _scaled(
    el: Element,
    kind: ScalingKind,
    block: tuple[int, ...],
    sf: ScaleFormat,
    rule: ScaleRule,
    ts: bool = False,
) -> Format:
    if isinstance(el, Minifloat):
        el = dataclasses.replace(el, saturate=True)  # scaled minifloats always saturate
    return Format(
        element=el,
        scaling=Scaling(kind=kind, block=block, scale_format=sf, rule=rule, tensor_scale=ts),
    )


def mx(el: Element) -> Format:
    """OCP MX v1.0: blocks of 32 along the reduction dim, an e8m0 scale, the floor rule."""
    return _scaled(el, ScalingKind.GROUP, (32,), E8M0, ScaleRule.FLOOR)


def integer(bits: int, grid: IntGrid = IntGrid.RESTRICTED) -> Format:
    return _scaled(IntElement(bits=bits, grid=grid), ScalingKind.CHANNEL, (), _FP32, ScaleRule.AMAX)


def _el(f: Format) -> Minifloat:
    assert isinstance(f.element, Minifloat)
    return f.element


PRESETS: dict[str, Format] = {
    "fp32": FP32,
    "bf16": BF16,
    "fp16": FP16,
    "fp8_e4m3": FP8_E4M3,
    "fp8_e5m2": FP8_E5M2,
    "fp6_e3m2": FP6_E3M2,
    "fp6_e2m3": FP6_E2M3,
    "fp4_e2m1": FP4_E2M1,
    "mxfp8_e4m3": mx(_el(FP8_E4M3)),
    "mxfp8_e5m2": mx(_el(FP8_E5M2)),
    "mxfp6_e3m2": mx(_el(FP6_E3M2)),
    "mxfp6_e2m3": mx(_el(FP6_E2M3)),
    "mxfp4": mx(_el(FP4_E2M1)),
    # OCP MX v1.0 §5.3.2: MXINT8 elements are 8-bit two's complement with an implicit scale of
    # 2^-6 (value = 2^X · int8 / 64), so the full grid [-128, 127].
    "mxint8": mx(IntElement(bits=8, grid=IntGrid.FULL)),
    # NVFP4 (NVIDIA Blackwell): e2m1 in blocks of 16, e4m3 block scales, an fp32 tensor scale.
    "nvfp4": _scaled(_el(FP4_E2M1), ScalingKind.GROUP, (16,), E4M3_SCALE, ScaleRule.AMAX, ts=True),
    "int8": integer(8),
    "int4": integer(4),
    "int3": integer(3),
    "int2": integer(2),
    # QLoRA (arXiv:2305.14314): NF4 with absmax scales over blocks of 64.
    "nf4": _scaled(NF4, ScalingKind.GROUP, (64,), _FP32, ScaleRule.AMAX),
    # BitNet b1.58 (arXiv:2402.17764): ternary weights with one absmean scale per tensor.
    "ternary": _scaled(TERNARY, ScalingKind.TENSOR, (), _FP32, ScaleRule.MEAN),
}


def gguf(name: str) -> Format:
    """A llama.cpp GGUF block type as a format: blocks along the reduction dim (32 elements, or
    256 for K-quants) with fp16 scales; the numerics are llama.cpp's (`_gguf.py`)."""
    el = GgufBlock(name=name)
    return Format(
        element=el,
        scaling=Scaling(kind=ScalingKind.GROUP, block=(el.block,), scale_format=minifloat(5, 10)),
    )


GGUF_FORMATS: dict[str, Format] = {name: gguf(name) for name in GGUF_TYPES}

_BY_FORMAT = {f: name for name, f in [*PRESETS.items(), *GGUF_FORMATS.items()]}


def preset_name(fmt: Format) -> str | None:
    return _BY_FORMAT.get(fmt)


def _extra() -> list[Format]:
    from quarch.formats._grammar import parse_format

    return [
        parse_format(s)
        for s in (
            "int4_g128",
            "int4_g128_asym",
            "int8_full_g64",
            "int8_t",
            "fp8_e4m3_t",
            "fp8_e4m3_c",
            "e4m3fnuz",
            "e5m2fnuz",
            "e3m4",
            "e4m3",
            "bfp8_g16",
            "bfp4_g16",
            "pot4",
            "int4_g32_sbf16",
            "int4_g64_mse",
            "fp8_e4m3_b128x128",
            "e2m1fin_g32_sue5m3",
            "cb[-1,-0.5,0,0.5,1]",
            "int4_g128_sr8_seed1",
            "mxfp4_away",
            "e3m2fin_nosub",
        )
    ]


ALL_FORMATS: list[Format] = [*PRESETS.values(), *_extra(), *GGUF_FORMATS.values()]
