"""encode / decode: the integer codes a device would store, and the values they stand for."""

from __future__ import annotations

import math

import torch

from quarch.formats import _elements, _gguf, _minifloat
from quarch.formats._api import (
    Encoded,
    _check_input,
    _element,
    _scaled,
    _scales_for,
    cast_element,
)
from quarch.formats._blocks import from_blocks, grid_shape, to_blocks
from quarch.formats._scaling import Scales, fixed_point_shift
from quarch.formats._spec import Format, GgufBlock, Pow2Scale, ScalingKind


def _scale_codes(fmt: Format, s: torch.Tensor) -> torch.Tensor:
    sf = fmt.scaling.scale_format
    if isinstance(sf, Pow2Scale):
        nan = torch.isnan(s)
        e = torch.frexp(torch.where(nan, torch.ones_like(s), s))[1] - 1
        e = e + fixed_point_shift(fmt)
        return torch.where(nan, 2**sf.exp_bits - 1, e + sf.bias).to(torch.int32)
    return _minifloat.encode(sf, s).to(torch.int32)


def _scale_values(fmt: Format, codes: torch.Tensor) -> torch.Tensor:
    sf = fmt.scaling.scale_format
    if isinstance(sf, Pow2Scale):
        c = codes.to(torch.int64)
        vals = torch.pow(2.0, (c - sf.bias - fixed_point_shift(fmt)).double()).to(torch.float32)
        return torch.where(c == 2**sf.exp_bits - 1, float("nan"), vals)
    return _minifloat.decode(sf, codes)


def encode(fmt: Format, x: torch.Tensor) -> Encoded:
    """Element codes, scale codes, zero-points and tensor scale of `x` in `fmt`."""
    _check_input(fmt, x)
    shape, xf = tuple(x.shape), x.detach().to(torch.float32)
    if isinstance(fmt.element, GgufBlock):
        return _encode_gguf(fmt.element, xf, x.dtype)
    grid = grid_shape(fmt.scaling, shape)  # raises ValueError for shapes the scaling can't take
    if xf.numel() == 0:
        scaled = fmt.scaling.kind is not ScalingKind.NONE
        return Encoded(
            codes=torch.zeros(shape, dtype=torch.int32),
            scale_codes=torch.zeros(grid, dtype=torch.int32) if scaled else None,
            zero_points=None,
            tensor_scale=None,
            shape=shape,
            dtype=x.dtype,
        )
    if fmt.scaling.kind is ScalingKind.NONE:
        codes = _elements.encode(_element(fmt), cast_element(fmt, xf))
        return Encoded(
            codes=codes.to(torch.int32),
            scale_codes=None,
            zero_points=None,
            tensor_scale=None,
            shape=shape,
            dtype=x.dtype,
        )
    xb = to_blocks(fmt.scaling, xf)
    s = _scales_for(fmt, xf, xb, None)
    v, _ = _scaled(xb, s)
    if s.zero_point is not None:
        v = v + s.zero_point.unsqueeze(-1)
    qb = cast_element(fmt, v)
    codes = from_blocks(fmt.scaling, _elements.encode(_element(fmt), qb), shape)
    zp = None if s.zero_point is None else torch.nan_to_num(s.zero_point).to(torch.int32)
    return Encoded(
        codes=codes.to(torch.int32),
        scale_codes=_scale_codes(fmt, s.block),
        zero_points=zp,
        tensor_scale=s.tensor,
        shape=shape,
        dtype=x.dtype,
    )


def decode(fmt: Format, enc: Encoded) -> torch.Tensor:
    """The tensor `enc` stands for: equal to `quantize(fmt, x)` for `enc = encode(fmt, x)`."""
    if isinstance(fmt.element, GgufBlock):
        return _decode_gguf(fmt.element, enc)
    if math.prod(enc.shape) == 0:
        return torch.zeros(enc.shape, dtype=enc.dtype)
    vals = _elements.decode(_element(fmt), enc.codes)
    if fmt.scaling.kind is ScalingKind.NONE:
        return vals.reshape(enc.shape).to(enc.dtype)
    if enc.scale_codes is None:
        raise ValueError(f"format {fmt} needs scale codes to decode")
    s = Scales(
        block=_scale_values(fmt, enc.scale_codes),
        zero_point=None if enc.zero_points is None else enc.zero_points.to(torch.float32),
        tensor=enc.tensor_scale,
    )
    qb = to_blocks(fmt.scaling, vals)
    mult = s.block.unsqueeze(-1) if s.tensor is None else s.tensor * s.block.unsqueeze(-1)
    if s.zero_point is not None:
        qb = qb - s.zero_point.unsqueeze(-1)
    return from_blocks(fmt.scaling, qb * mult, enc.shape).to(enc.dtype)


def _encode_gguf(el: GgufBlock, xf: torch.Tensor, dtype: torch.dtype) -> Encoded:
    c = _gguf.gguf_codes(el, xf)

    def bits(h: torch.Tensor | None) -> torch.Tensor | None:
        return None if h is None else h.view(torch.int16).to(torch.int32) & 0xFFFF

    d_bits = bits(c.d)
    assert d_bits is not None
    return Encoded(
        codes=c.q.reshape(xf.shape),
        scale_codes=d_bits,
        zero_points=None,
        tensor_scale=None,
        shape=tuple(xf.shape),
        dtype=dtype,
        mins=bits(c.dmin),
        sub_scales=c.sc,
        sub_mins=c.mn,
    )


def _decode_gguf(el: GgufBlock, enc: Encoded) -> torch.Tensor:
    if enc.scale_codes is None:
        raise ValueError(f"GGUF type {el.name} needs scale codes to decode")

    def half(b: torch.Tensor | None) -> torch.Tensor | None:
        return None if b is None else b.to(torch.int16).view(torch.float16)

    d = half(enc.scale_codes)
    assert d is not None
    t = _gguf.gguf_type(el)
    codes = _gguf.to_blocks(t, enc.codes) if math.prod(enc.shape) else enc.codes
    c = _gguf.GgufCodes(q=codes, d=d, dmin=half(enc.mins), sc=enc.sub_scales, mn=enc.sub_mins)
    if math.prod(enc.shape) == 0:
        return torch.zeros(enc.shape, dtype=enc.dtype)
    return _gguf.gguf_values(el, c).reshape(enc.shape).to(enc.dtype)


__all__ = ["decode", "encode"]
