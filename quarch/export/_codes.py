"""One layer's codes and scales as compressed-tensors stores them, exactly quarch's.

`layer_tensors` gives the dense `weight`, float32 `weight_scale` and (asymmetric integers) int8
`weight_zero_point` that the library's compressors take, plus quarch's codes under `CODES` so the
caller can check what the library packed. Every candidate is checked to dequantize, as
`(q - zero_point) * scale` in float32 (the library's arithmetic), to the layer's weight bit for
bit; a layer for which no candidate does is refused.

Where the scales come from, in order:

1. the float weight the layer was quantized from: a round-to-nearest layer's codes are then
   exactly `quarch.formats.encode(fmt, float weight)`;
2. the quantized weight itself (`encode` of it): a method such as GPTQ moved the weights and chose
   its scales on the way; re-encoding recovers them wherever a block reaches the largest code;
3. for symmetric integers, per block the scale `amax / m` for the largest code magnitude `m` that
   makes every weight of the block an integer multiple (GPTQ blocks whose largest code is below
   the grid's maximum). The codes are then `weight / scale`: the same dequantized weights, and
   the codes GPTQ chose wherever the block's largest code is `m`.
"""

from __future__ import annotations

import torch

from quarch.export._collect import ExportLayer
from quarch.formats import (
    Format,
    IntElement,
    IntGrid,
    Minifloat,
    ScalingKind,
    cast_element,
    compute_scales,
    encode,
    quantize,
)

CODES = "_quarch_codes"  # quarch's codes, kept beside the tensors to check what the library stores


def layer_tensors(layer: ExportLayer) -> dict[str, torch.Tensor]:
    """weight, weight_scale (float32) and, for asymmetric integers, weight_zero_point (int8):
    quarch's codes and scales, checked to dequantize to the layer's weight bit for bit.

    The scales are found as the module docstring says (float weight, quantized weight, then
    per-block recovery).
    """
    fmt = layer.weight_format
    assert fmt is not None
    w = layer.weight.to(torch.float32)
    if fmt.scaling.kind is ScalingKind.NONE:  # an unscaled e4m3 cast: scale 1.0
        codes = encode(fmt, w).codes
        if not torch.equal(_fp8_values(codes), w):
            raise ValueError(f"layer {layer.name}: weight is not on the grid of {fmt}")
        return {"weight": w, "weight_scale": torch.ones(1, dtype=torch.float32), CODES: codes}
    sources = [] if layer.original is None else [layer.original.to(torch.float32)]
    for source in [*sources, w]:
        out = _tensors_from(fmt, w, source)
        if out is not None:
            return out
    out = _recovered(fmt, w)
    if out is not None:
        return out
    raise ValueError(
        f"layer {layer.name}: its {fmt} weights do not re-encode exactly with quarch's scales "
        f"(method {layer.method!r} chose scales that neither the float nor the quantized "
        f"weight gives back); nearest exportable: {fmt} with method rtn, or method "
        f"{layer.method!r} on a symmetric integer format"
    )


def _tensors_from(
    fmt: Format, w: torch.Tensor, source: torch.Tensor
) -> dict[str, torch.Tensor] | None:
    """The stored tensors of weight `w` with the scales quarch computes from `source`, or None
    when `(q - zp) * s` does not give `w` back exactly."""
    scales = compute_scales(fmt, source)
    s = scales.block.to(torch.float32)
    zp = None if scales.zero_point is None else scales.zero_point.to(torch.float32)
    if torch.equal(quantize(fmt, source), w):  # w is `source` rounded: quarch's own codes
        values = _element_values(fmt, encode(fmt, source).codes)
    else:
        v = w / _expand(fmt, s, w.shape)
        values = cast_element(fmt, v if zp is None else v + _expand(fmt, zp, w.shape))
    deq = values if zp is None else values - _expand(fmt, zp, w.shape)
    if not torch.equal(deq * _expand(fmt, s, w.shape), w):
        return None
    out = {"weight": w, "weight_scale": s, CODES: _stored_codes(fmt, values)}
    if zp is not None:
        assert isinstance(fmt.element, IntElement)
        out["weight_zero_point"] = (zp - (1 << (fmt.element.bits - 1))).to(torch.int8)
    return out


def _stored_codes(fmt: Format, values: torch.Tensor) -> torch.Tensor:
    """What compressed-tensors stores for element values: signed integers (asymmetric grids
    shifted by 2^(K-1), as their zero-points), float8 e4m3 bit patterns, or (fp4, packed two
    to a byte) the element values themselves."""
    el = fmt.element
    if isinstance(el, IntElement):
        shift = (1 << (el.bits - 1)) if el.grid is IntGrid.ASYM else 0
        return values.to(torch.int64) - shift
    if isinstance(el, Minifloat) and el.bits == 4:
        return values
    return values.to(torch.float8_e4m3fn).view(torch.uint8).to(torch.int64)


def _element_values(fmt: Format, codes: torch.Tensor) -> torch.Tensor:
    """Element values of quarch's codes (asymmetric integers keep their zero-point offset)."""
    el = fmt.element
    if isinstance(el, IntElement):
        c = codes.to(torch.int64)
        if el.grid is IntGrid.ASYM:
            return c.to(torch.float32)
        return torch.where(c >= 1 << (el.bits - 1), c - (1 << el.bits), c).to(torch.float32)
    if isinstance(el, Minifloat) and el.bits == 4:
        return _E2M1[codes.to(torch.int64)]
    return _fp8_values(codes)


# OCP MX v1.0 §5.3.3, Table 5 (FP4 E2M1): codes 0-7 are +0, 0.5, 1, 1.5, 2, 3, 4, 6; the top bit
# is the sign.
_E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def _fp8_values(codes: torch.Tensor) -> torch.Tensor:
    return codes.to(torch.uint8).view(torch.float8_e4m3fn).to(torch.float32)


def _expand(fmt: Format, grid: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A [grid] tensor of per-block values broadcast to the weight's [out, in] shape."""
    sc = fmt.scaling
    match sc.kind:
        case ScalingKind.TENSOR:
            return grid.reshape(1, 1).expand(shape)
        case ScalingKind.CHANNEL:
            return grid.reshape(shape[0], 1).expand(shape)
        case ScalingKind.GROUP:
            return grid.repeat_interleave(sc.block[0], dim=1)[:, : shape[1]]
        case ScalingKind.BLOCK2D:
            r, c = sc.block
            full = grid.repeat_interleave(r, dim=0).repeat_interleave(c, dim=1)
            return full[: shape[0], : shape[1]]
    raise AssertionError(sc.kind)


def _block_amax(fmt: Format, w: torch.Tensor) -> torch.Tensor:
    """Per-block max |w| on the scale grid (the shapes `_check_shape` admits)."""
    a, sc = w.abs(), fmt.scaling
    rows, cols = w.shape
    match sc.kind:
        case ScalingKind.TENSOR:
            return a.max().reshape(1)
        case ScalingKind.CHANNEL:
            return a.amax(dim=1, keepdim=True)
        case ScalingKind.GROUP:
            return a.reshape(rows, cols // sc.block[0], sc.block[0]).amax(-1)
        case ScalingKind.BLOCK2D:
            r, c = sc.block
            return a.reshape(rows // r, r, cols // c, c).amax(dim=(1, 3))
    raise AssertionError(sc.kind)


def _block_all(fmt: Format, ok: torch.Tensor) -> torch.Tensor:
    """Per block: whether `ok` ([out, in] bool) holds for all its elements."""
    return _block_amax(fmt, (~ok).to(torch.float32)) == 0


def _recovered(fmt: Format, w: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Symmetric integers: per block, the scale amax / m for the largest code magnitude m
    (from the grid's maximum down) under which the block's weights are exact integer multiples;
    None when some block has none or the format is not a symmetric integer."""
    el = fmt.element
    if not isinstance(el, IntElement) or el.grid is IntGrid.ASYM:
        return None
    amax = _block_amax(fmt, w)
    scale = torch.where(amax > 0, torch.zeros_like(amax), torch.ones_like(amax))
    found = amax == 0
    inf = torch.full_like(amax, float("inf"))
    for m in range(el.qmax, 0, -1):
        near = amax / m  # amax = fl(m * s) only pins s to within an ulp of this
        for s in (near, torch.nextafter(near, inf), torch.nextafter(near, -inf)):
            q = torch.round(w / _expand(fmt, s, w.shape)).clamp(el.qmin, el.qmax)
            exact = _block_all(fmt, q * _expand(fmt, s, w.shape) == w)
            take = exact & ~found
            scale = torch.where(take, s, scale)
            found = found | exact
        if bool(found.all()):
            break
    if not bool(found.all()):
        return None
    values = torch.round(w / _expand(fmt, scale, w.shape))
    if not torch.equal(values * _expand(fmt, scale, w.shape), w):
        return None
    return {"weight": w, "weight_scale": scale, CODES: _stored_codes(fmt, values)}
