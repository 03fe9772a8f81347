"""The public operations: quantize, compute_scales, encode, decode.

quantize(fmt, x) = decode(fmt, encode(fmt, x)), computed without materialising codes. With a
scale, x is divided by its block's scale (NVFP4-style two-level scales multiply by
(1 / tensor_scale) / block_scale, the numerics of NVIDIA's kernels that torchao reproduces),
rounded onto the element grid (scaled minifloats saturate, as OCP MX v1.0 §6.3 prescribes), and
multiplied back. A non-finite element makes its whole block's scale, and so the block, NaN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from quarch.formats import _elements, _fast, _gguf, _minifloat
from quarch.formats._blocks import block_counts, from_blocks, grid_shape, to_blocks
from quarch.formats._scaling import (
    MSE_RATIOS,
    Scales,
    abs_max,
    asym_scales,
    block_stat,
    scales_from_stat,
    tensor_scale,
)
from quarch.formats._spec import (
    Element,
    Format,
    GgufBlock,
    IntElement,
    Minifloat,
    Pow2Scale,
    RoundMode,
    ScaleRule,
    ScalingKind,
)

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True, kw_only=True)
class Encoded:
    """What hardware stores: element codes, scale codes, zero-points and a tensor scale.

    codes: int32 element bit patterns (two's complement K-bit for integers, table index for
    codebooks), shape of the input. scale_codes: int32 codes of the scale format (e8m0: biased
    exponent, 0xFF = NaN), shape = block grid. zero_points: int32, same grid, or None.
    tensor_scale: 0-d float32, or None.

    GGUF block types (`q4_k` ...): codes are the stored unsigned codes (Q8_0: int8 values),
    scale_codes the fp16 bit patterns of each block's (super-block's) scale d, `mins` those of
    its minimum (Q4_1, Q5_1: m; K-quants: dmin) or None, `sub_scales` / `sub_mins` the K-quants'
    quantized sub-block scales and minimums, int32 [..., blocks, sub-blocks], or None.
    """

    codes: torch.Tensor
    scale_codes: torch.Tensor | None
    zero_points: torch.Tensor | None
    tensor_scale: torch.Tensor | None
    shape: tuple[int, ...]
    dtype: torch.dtype
    mins: torch.Tensor | None = None
    sub_scales: torch.Tensor | None = None
    sub_mins: torch.Tensor | None = None


def _check_input(fmt: Format, x: torch.Tensor) -> None:
    if not isinstance(fmt, Format):
        raise TypeError(f"expected a quarch Format, got {type(fmt).__name__}; use Format.parse")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"expected a float32, bfloat16 or float16 tensor, got {x.dtype}")


def _element(fmt: Format) -> Element:
    el = fmt.element
    if isinstance(el, Minifloat) and fmt.scaling.kind is not ScalingKind.NONE:
        return dataclasses.replace(el, saturate=True)
    return el


def cast_element(fmt: Format, v: torch.Tensor) -> torch.Tensor:
    """Round float32 values (already divided by their scale) onto the element grid."""
    _refuse_gguf(fmt, "cast_element")
    return _elements.cast(_element(fmt), v, fmt.rounding)


def _refuse_gguf(fmt: Format, what: str) -> None:
    if isinstance(fmt.element, GgufBlock):
        raise ValueError(
            f"{what} does not apply to the GGUF block type {fmt}: its codes, scales and minimums "
            "are chosen jointly per block; use quantize or encode"
        )


def _compute_block_scales(
    fmt: Format, xb: torch.Tensor, shape: tuple[int, ...], ts: torch.Tensor | None
) -> Scales:
    if fmt.zero_point_bits:  # asymmetric integers: a scale and a zero-point per block
        if fmt.scaling.rule is ScaleRule.MSE:
            return _mse_search(fmt, xb, ts, asym=True)
        s, zp = asym_scales(fmt, xb)
        return Scales(block=s, zero_point=zp)
    if fmt.scaling.rule is ScaleRule.MSE:
        return _mse_search(fmt, xb, ts, asym=False)
    counts = block_counts(fmt.scaling, shape) if fmt.scaling.rule is ScaleRule.MEAN else None
    return Scales(block=scales_from_stat(fmt, block_stat(fmt, xb, counts), ts), tensor=ts)


def _mse_search(fmt: Format, xb: torch.Tensor, ts: torch.Tensor | None, *, asym: bool) -> Scales:
    """Per block, the clipping ratio in MSE_RATIOS whose quantization error is smallest."""
    base = dataclasses.replace(fmt, scaling=dataclasses.replace(fmt.scaling, rule=_base_rule(fmt)))
    amax = abs_max(xb)
    best_err = torch.full(xb.shape[:-1], float("inf"))
    best: Scales | None = None
    for ratio in MSE_RATIOS:
        if asym:
            s, zp = asym_scales(base, xb * ratio)
            cand = Scales(block=s, zero_point=zp)
        else:
            cand = Scales(block=scales_from_stat(base, amax * ratio, ts), tensor=ts)
        err = (_quantize_blocks(base, xb, cand) - xb).square().sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        if best is None:
            best = cand
        else:
            zp_best = best.zero_point
            best = Scales(
                block=torch.where(better, cand.block, best.block),
                zero_point=None
                if zp_best is None or cand.zero_point is None
                else torch.where(better, cand.zero_point, zp_best),
                tensor=ts,
            )
    assert best is not None
    return best


def _base_rule(fmt: Format) -> ScaleRule:
    return ScaleRule.FLOOR if isinstance(fmt.scaling.scale_format, Pow2Scale) else ScaleRule.AMAX


def compute_scales(
    fmt: Format, x: torch.Tensor, *, tensor_scale: torch.Tensor | float | None = None
) -> Scales:
    """The scales `quantize(fmt, x)` would use; `tensor_scale` fixes a `ts` format's fp32 scale."""
    _check_input(fmt, x)
    _refuse_gguf(fmt, "compute_scales")
    if fmt.scaling.kind is ScalingKind.NONE:
        raise ValueError(f"format {fmt} has no scales")
    xf = x.detach().to(torch.float32)
    return _scales_for(fmt, xf, to_blocks(fmt.scaling, xf), tensor_scale)


def _scales_for(
    fmt: Format, xf: torch.Tensor, xb: torch.Tensor, ts_in: torch.Tensor | float | None
) -> Scales:
    ts = None
    if fmt.scaling.tensor_scale:
        ts = (
            tensor_scale(fmt, xf)
            if ts_in is None
            else torch.as_tensor(ts_in, dtype=torch.float32).reshape(())
        )
    return _compute_block_scales(fmt, xb, tuple(xf.shape), ts)


def _scaled(xb: torch.Tensor, s: Scales) -> tuple[torch.Tensor, torch.Tensor]:
    """(x divided by its scale, the multiplier that dequantizes)."""
    sb = s.block.unsqueeze(-1)
    if s.tensor is not None:
        return xb * ((1.0 / s.tensor) / sb), s.tensor * sb
    return xb / sb, sb


def _cast_owned(fmt: Format, v: torch.Tensor) -> torch.Tensor:
    """`cast_element(fmt, v)` for a `v` the caller owns: the common nearest-even casts run in
    place (no full-size temporaries), the rest through `cast_element`. Same bits either way."""
    el = _element(fmt)
    if fmt.rounding.mode is RoundMode.RNE:
        if isinstance(el, IntElement):
            return v.round_().clamp_(el.qmin, el.qmax).add_(0.0)  # as cast_int, in place
        if isinstance(el, Minifloat) and _minifloat.rne_add_inplace_ok(el):
            lo, hi = torch.aminmax(v)  # one pass; NaN propagates
            if bool(torch.isfinite(lo)) and bool(torch.isfinite(hi)):
                return _minifloat.cast_rne_add_(el, v)
    return cast_element(fmt, v)


def _quantize_blocks(fmt: Format, xb: torch.Tensor, s: Scales) -> torch.Tensor:
    v, mult = _scaled(xb, s)  # a new tensor: ours to overwrite
    if s.zero_point is not None:
        zp = s.zero_point.unsqueeze(-1)
        return _cast_owned(fmt, v.add_(zp)).sub_(zp).mul_(mult)
    return _cast_owned(fmt, v).mul_(mult)


def _check_scales(fmt: Format, s: Scales, shape: tuple[int, ...]) -> None:
    want = grid_shape(fmt.scaling, shape)
    if tuple(s.block.shape) != tuple(want):
        raise ValueError(
            f"scales of shape {tuple(s.block.shape)} do not match the block grid {want} of a "
            f"{shape} tensor in format {fmt}"
        )


def _check_out(x: torch.Tensor, out: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected x's shape {tuple(x.shape)}")
    if out.dtype != x.dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected x's dtype {x.dtype}")
    if out.device != x.device:
        raise ValueError(f"out is on device {out.device}, expected x's device {x.device}")


def quantize(
    fmt: Format,
    x: torch.Tensor,
    *,
    scales: Scales | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Quantize and dequantize `x`: same shape and dtype, every value on `fmt`'s grid.

    Args:
        fmt: the format (`Format.parse("mxfp4")`).
        x: a float32, bfloat16 or float16 tensor of any shape.
        scales: fixed scales from `compute_scales` (their grid must match x's), else computed.
        out: a tensor of x's shape, dtype and device to write the result into (`out=x`
            quantizes in place); it is returned. With it, large float32 tensors whose scales
            run along the last dim take a chunked path (`_fast.py`) with the same bits.
    Raises:
        TypeError: x is not a floating tensor of a supported dtype; out's dtype is not x's.
        ValueError: `scales` does not fit x; out's shape or device is not x's; for a GGUF block
            type, x's last dim is not a multiple of the block size (32, or 256 for K-quants) or
            `scales` is given.
    """
    _check_input(fmt, x)
    if out is None:
        return _quantize(fmt, x, scales)
    _check_out(x, out)
    if (
        scales is None
        and out.is_contiguous()
        and (_same_layout(out, x) or not _shares_memory(out, x))
        and _fast.applicable(fmt, x)
    ):
        grid_shape(fmt.scaling, tuple(x.shape))
        _fast.quantize_into(fmt, x.detach(), out.detach(), _quantize_blocks, _compute_block_scales)
        return out
    y = _quantize(fmt, x, scales)  # fully computed before out (which may alias x) is written
    return out.copy_(y)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _quantize(fmt: Format, x: torch.Tensor, scales: Scales | None) -> torch.Tensor:
    if isinstance(fmt.element, GgufBlock):
        if scales is not None:
            _refuse_gguf(fmt, "quantize with fixed scales")
        xg = x.detach().to(torch.float32)
        return _gguf.gguf_quantize(fmt.element, xg).to(x.dtype)
    grid_shape(fmt.scaling, tuple(x.shape))  # raises ValueError for shapes the scaling can't take
    if x.numel() == 0:
        return x.clone()
    xf = x.detach().to(torch.float32)
    if fmt.scaling.kind is ScalingKind.NONE:
        return cast_element(fmt, xf).to(x.dtype)
    xb = to_blocks(fmt.scaling, xf)
    if scales is None:
        scales = _scales_for(fmt, xf, xb, None)
    else:
        _check_scales(fmt, scales, tuple(x.shape))
    yb = _quantize_blocks(fmt, xb, scales)
    return from_blocks(fmt.scaling, yb, tuple(x.shape)).to(x.dtype)


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.stride() == b.stride()
