"""Which quarch formats a compressed-tensors checkpoint can hold, as the library's own arguments.

compressed-tensors (the checkpoint format of vLLM and of transformers' `CompressedTensorsConfig`)
describes a layer's weights by `QuantizationArgs`: an integer or float element of `num_bits`, a
scale per tensor, per output channel, per group of `group_size` inputs or per 2-D block, and
symmetric or with a zero-point. It dequantizes as `(q - zero_point) * scale` in the scale's dtype
(`compressed_tensors.quantization.lifecycle.forward_helpers._dequantize`), the same arithmetic as
`quarch.formats.decode` for these formats, so with float32 scales the round trip is bit-exact.

Mapped here: integer elements of 2-8 bits (restricted or full grid: symmetric; `asym`: with a
zero-point) and the OCP e4m3 float element (float8_e4m3fn: the only 8-bit float the library
stores), scaled per tensor, per channel along the input, per group along the input or per 2-D
block, with scales a float32 can hold exactly; and MXFP4 (e2m1 in groups of 32 with e8m0
scales: code times a power of two, exact in any order). An unscaled e4m3 cast is a per-tensor
scheme with scale 1.0. Everything else is refused with the nearest format that maps: codebooks
(nf4), ternary, power-of-two elements, e5m2, fp6 and other fp4 groupings, and NVFP4, whose
two-level scale the library applies as `code * (block_scale / global_scale)` where quarch
computes `code * (tensor_scale * block_scale)`, so the two differ in the last bit.
"""

from __future__ import annotations

from typing import Any

from quarch.formats import (
    Format,
    IntElement,
    IntGrid,
    Minifloat,
    Pow2Scale,
    ScalingKind,
    Specials,
)

_E4M3 = Minifloat(exp_bits=4, man_bits=3, bias=7, specials=Specials.FN)


def _is_e4m3(el: object) -> bool:
    return isinstance(el, Minifloat) and (
        el.exp_bits,
        el.man_bits,
        el.bias,
        el.specials,
        el.subnormals,
        el.signed,
    ) == (_E4M3.exp_bits, _E4M3.man_bits, _E4M3.bias, _E4M3.specials, True, True)


def _is_mxfp4(fmt: Format) -> bool:
    """OCP MX v1.0 MXFP4: e2m1 elements in groups of 32 along the input, an e8m0 scale each
    (the library's `mxfp4-pack-quantized`: scales stored as biased exponents, bias 127)."""
    el, sc = fmt.element, fmt.scaling
    return (
        isinstance(el, Minifloat)
        and (el.exp_bits, el.man_bits, el.bias, el.specials) == (2, 1, 1, Specials.FINITE)
        and sc.kind is ScalingKind.GROUP
        and sc.block == (32,)
        and sc.axis == -1
        and sc.scale_format == Pow2Scale()
        and not sc.tensor_scale
    )


def nearest_supported(fmt: Format) -> str:
    """The format name closest to `fmt` that a compressed-tensors checkpoint can hold."""
    sc = fmt.scaling
    group = sc.block[0] if sc.kind is ScalingKind.GROUP and sc.block else 128
    bits = fmt.element_bits
    if isinstance(fmt.element, Minifloat) and bits > 4:
        return "fp8_e4m3_c"  # an 8-bit float per channel
    if bits <= 2:
        return "int2"  # {-1, 0, 1} per output channel: ternary with one scale per row
    if bits <= 4:
        return f"int4_g{group}"
    return "int8"


def _refuse(fmt: Format, why: str, where: str) -> ValueError:
    return ValueError(
        f"{where}: format {fmt} has no compressed-tensors equivalent ({why}); "
        f"nearest supported: {nearest_supported(fmt)}"
    )


def _scale_fits_fp32(fmt: Format) -> bool:
    sf = fmt.scaling.scale_format
    if isinstance(sf, Pow2Scale):
        return sf.min_exp >= -149 and sf.max_exp <= 127  # fp32 holds 2^-149 ... 2^127 exactly
    return sf.exp_bits <= 8 and sf.man_bits <= 23 and sf.bias <= 127


def _strategy(fmt: Format, where: str) -> dict[str, Any]:
    sc = fmt.scaling
    if sc.tensor_scale:
        raise _refuse(fmt, "a second, per-tensor scale over the block scales", where)
    if sc.kind in (ScalingKind.CHANNEL, ScalingKind.GROUP) and sc.axis not in (-1, 1):
        raise _refuse(fmt, f"scales along axis {sc.axis}, not along the input dimension", where)
    if sc.kind is not ScalingKind.NONE and not _scale_fits_fp32(fmt):
        raise _refuse(fmt, f"scale format {sc.scale_format} is not exact in float32", where)
    match sc.kind:
        case ScalingKind.NONE:
            return {"strategy": "tensor"}  # stored with scale 1.0
        case ScalingKind.TENSOR:
            return {"strategy": "tensor"}
        case ScalingKind.CHANNEL:
            return {"strategy": "channel"}
        case ScalingKind.GROUP:
            return {"strategy": "group", "group_size": sc.block[0]}
        case ScalingKind.BLOCK2D:
            return {"strategy": "block", "block_structure": list(sc.block)}


def _element_reason(fmt: Format) -> str:
    """Why the element of `fmt` has no compressed-tensors layout, in a few words."""
    el = fmt.element
    if isinstance(el, Minifloat) and el.bits == 4 and fmt.scaling.tensor_scale:
        return (
            "its two-level scale: the library dequantizes NVFP4 as code * (block_scale / "
            "global_scale) in bfloat16, not as quarch's code * (tensor_scale * block_scale)"
        )
    if isinstance(el, Minifloat):
        kind = "" if el.specials is Specials.IEEE else str(el.specials)
        return (
            f"e{el.exp_bits}m{el.man_bits}{kind} elements: the library stores OCP e4m3fn floats, "
            "and e2m1 only as MXFP4 (groups of 32, e8m0 scales)"
        )
    return f"{type(el).__name__.lower()} elements: the library stores integers and floats only"


def weight_args(fmt: Format, *, where: str = "weight") -> Any:
    """The `QuantizationArgs` of a weight stored in `fmt`; ValueError naming the nearest
    supported format when compressed-tensors cannot hold it."""
    from compressed_tensors.quantization import QuantizationArgs

    el = fmt.element
    bits: int
    if isinstance(el, IntElement):
        bits = el.bits
        if not 2 <= el.bits <= 8:
            raise _refuse(fmt, f"{el.bits}-bit integers (the library packs 1-8 bits)", where)
        if fmt.scaling.kind is ScalingKind.NONE:
            raise _refuse(fmt, "an integer element without a scale", where)
        kind, sym = "int", el.grid is not IntGrid.ASYM
    elif _is_e4m3(el):
        kind, sym, bits = "float", True, 8
    elif _is_mxfp4(fmt):
        return QuantizationArgs(
            num_bits=4, type="float", symmetric=True, strategy="group", group_size=32
        )
    else:
        raise _refuse(fmt, _element_reason(fmt), where)
    return QuantizationArgs(
        num_bits=bits, type=kind, symmetric=sym, dynamic=False, **_strategy(fmt, where)
    )


def input_args(fmt: Format, *, where: str = "input") -> Any:
    """The `QuantizationArgs` of a linear input quantized at run time in `fmt`.

    quarch's per-channel activation scales are one per token, computed on the fly: the library's
    dynamic per-token scheme. An unscaled e4m3 cast is a static per-tensor scheme with scale 1.0.
    The engine picks each token's scale itself (`amax / qmax`, as quarch's amax rule), so the
    activation numerics are the engine's, not bit-for-bit quarch's.
    """
    from compressed_tensors.quantization import QuantizationArgs

    el, sc = fmt.element, fmt.scaling
    if isinstance(el, IntElement) and el.bits == 8 and el.grid is not IntGrid.ASYM:
        kind = "int"
    elif _is_e4m3(el):
        kind = "float"
    else:
        raise ValueError(
            f"{where}: activation format {fmt} has no compressed-tensors equivalent (engines "
            "quantize activations to int8 or fp8_e4m3 only); nearest supported: "
            f"{'fp8_e4m3_c' if isinstance(el, Minifloat) else 'int8'}"
        )
    if sc.kind is ScalingKind.CHANNEL and sc.axis in (-1,) and not sc.tensor_scale:
        return QuantizationArgs(
            num_bits=8, type=kind, symmetric=True, strategy="token", dynamic=True
        )
    if sc.kind is ScalingKind.NONE and kind == "float":
        return QuantizationArgs(
            num_bits=8, type=kind, symmetric=True, strategy="tensor", dynamic=False
        )
    raise ValueError(
        f"{where}: activation format {fmt} has no compressed-tensors equivalent (engines scale "
        "activations per token, dynamically); nearest supported: "
        f"{'fp8_e4m3_c' if kind == 'float' else 'int8'}"
    )


def kv_args(fmt: Format, *, where: str = "kv cache") -> Any:
    """The `kv_cache_scheme` of a KV cache in `fmt`: only an unscaled e4m3 cast maps (a static
    per-tensor fp8 cache with k_scale = v_scale = 1.0, which vLLM's fp8 cache computes too)."""
    from compressed_tensors.quantization import QuantizationArgs

    if _is_e4m3(fmt.element) and fmt.scaling.kind is ScalingKind.NONE:
        return QuantizationArgs(
            num_bits=8, type="float", symmetric=True, strategy="tensor", dynamic=False
        )
    raise ValueError(
        f"{where}: KV-cache format {fmt} has no compressed-tensors equivalent (serving engines "
        "keep one static scale per tensor); nearest supported: fp8_e4m3"
    )
