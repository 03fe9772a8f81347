"""GGUF block types (llama.cpp): quantize, encode, decode, and the exact GGUF byte layout.

Each type's reference quantizer is llama.cpp's `quantize_row_*_ref` (ggml/src/ggml-quants.c).
The legacy types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) follow the `gguf` Python package's numpy port of
them (gguf-py/gguf/quants.py), operation for operation in float32, so they agree bit for bit;
IQ4_NL (here) and the K-quants (`_gguf_k.py`), which gguf only dequantizes, follow the C code.
Dequantization repeats `gguf.quants.dequantize`'s float32 arithmetic for every type. Blocks run
along the last dimension, whose length must be a multiple of the block size (as GGUF requires).

A block whose input holds a NaN or an infinity dequantizes to NaN (its stored scale is NaN):
llama.cpp gives such blocks no meaning, and quarch keeps a non-finite input visible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from quarch.formats._gguf_k import K_DEQUANTIZERS, K_QUANTIZERS
from quarch.formats._gguf_types import (
    GGUF_TYPES,
    GROUP_MAX_EPS,
    GgufCodes,
    GgufType,
    sequential_sum,
)
from quarch.formats._spec import GgufBlock

# kvalues_iq4nl of ggml-common.h: the 16 non-uniform levels of IQ4_NL (ascending).
IQ4_NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def gguf_type(fmt_element: GgufBlock) -> GgufType:
    return GGUF_TYPES[fmt_element.name]


def to_blocks(t: GgufType, x: torch.Tensor) -> torch.Tensor:
    """[..., n] float32 → [..., n / block, block]; ValueError unless the block divides n."""
    n = x.shape[-1] if x.dim() else 1
    if x.dim() == 0 or n % t.block:
        raise ValueError(
            f"GGUF type {t.name} needs the last dimension to be a multiple of {t.block}, "
            f"got shape {tuple(x.shape)}"
        )
    return x.reshape(*x.shape[:-1], n // t.block, t.block)


def _signed_absmax(xb: torch.Tensor) -> torch.Tensor:
    """The value of largest magnitude per block, the first one on ties (numpy's argmax)."""
    idx = xb.abs().argmax(-1, keepdim=True)
    return xb.gather(-1, idx).squeeze(-1)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1 / d, and 0 where d is 0 (`np.where(d == 0, 0, 1 / d)` of gguf-py)."""
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / d)


def _round_away(v: torch.Tensor) -> torch.Tensor:
    """Nearest, ties away from zero, exactly as gguf-py's `np_roundf` computes it."""
    a = v.abs()
    f = a.floor()
    return v.sign() * (f + (2 * (a - f)).floor())


# ---- legacy types: one fp16 scale (and minimum) per block of 32 ---------------------------------


def _q8_0(xb: torch.Tensor) -> GgufCodes:
    d = xb.abs().amax(-1) / 127  # quantize_row_q8_0_ref
    q = _round_away(xb * _inverse(d).unsqueeze(-1))
    return GgufCodes(q=q.to(torch.int32), d=d.to(torch.float16))


def _symmetric(xb: torch.Tensor, levels: int) -> GgufCodes:
    """Q4_0 (levels 16) and Q5_0 (32): the signed max maps to code 0 (value -levels/2)."""
    half = levels // 2
    d = _signed_absmax(xb) / -half
    v = xb * _inverse(d).unsqueeze(-1) + (half + 0.5)
    q = v.trunc().clamp(0, levels - 1)
    return GgufCodes(q=q.to(torch.int32), d=d.to(torch.float16))


def _with_min(xb: torch.Tensor, levels: int) -> GgufCodes:
    """Q4_1 (levels 16) and Q5_1 (32): scale (max - min) / (levels - 1) and the min."""
    mx, mn = xb.amax(-1), xb.amin(-1)
    d = (mx - mn) / (levels - 1)
    v = (xb - mn.unsqueeze(-1)) * _inverse(d).unsqueeze(-1) + 0.5
    q = v.trunc().clamp(0, levels - 1)
    return GgufCodes(q=q.to(torch.int32), d=d.to(torch.float16), dmin=mn.to(torch.float16))


def best_index(values: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted `values`, ties to the upper one (`best_index_int8`)."""
    n = values.numel()
    mu = torch.searchsorted(values, v.contiguous(), right=True).clamp(1, n - 1)
    lo, hi = values[mu - 1], values[mu]
    idx = torch.where(v - lo < hi - v, mu - 1, mu)
    idx = torch.where(v <= values[0], 0, idx)
    return torch.where(v >= values[-1], n - 1, idx)


def _iq4_nl(xb: torch.Tensor) -> GgufCodes:
    """quantize_row_iq4_nl_ref: quantize_row_iq4_nl_impl with one block of 32, no importance
    weights and ntry = -1. Codes come from d = max / values[0] (max: the value of largest
    magnitude); the stored scale is the weighted least-squares fit sumqx / sumq2 with weights
    x², summed in float32 in C's order."""
    values = torch.tensor(IQ4_NL_VALUES, dtype=torch.float32, device=xb.device)
    mx = _signed_absmax(xb)
    d0 = mx / values[0]
    idx = best_index(values, (1.0 / d0).unsqueeze(-1) * xb)
    q = values[idx]
    w = xb * xb
    sumqx = sequential_sum(w * q * xb)
    sumq2 = sequential_sum(w * q * q)
    d = torch.where(sumq2 > 0, sumqx / sumq2, torch.zeros_like(sumqx))
    tiny = mx.abs() < GROUP_MAX_EPS
    d = torch.where(tiny, torch.zeros_like(d), d)
    idx = torch.where(tiny.unsqueeze(-1), torch.zeros_like(idx), idx)
    return GgufCodes(q=idx.to(torch.int32), d=d.to(torch.float16))


def _dequant_legacy(name: str, c: GgufCodes) -> torch.Tensor:
    """gguf.quants' dequantize_blocks, in its float32 order of operations."""
    d = c.d.to(torch.float32).unsqueeze(-1)
    q = c.q.to(torch.float32)
    match name:
        case "q8_0":
            return q * d
        case "q4_0":
            return d * (q - 8)
        case "q5_0":
            return d * (q - 16)
        case "q4_1" | "q5_1":
            assert c.dmin is not None
            return d * q + c.dmin.to(torch.float32).unsqueeze(-1)
        case "iq4_nl":
            values = torch.tensor(IQ4_NL_VALUES, dtype=torch.float32, device=c.q.device)
            return d * values[c.q.long()]
    raise AssertionError(name)


LEGACY = ("q8_0", "q4_0", "q5_0", "q4_1", "q5_1", "iq4_nl")
Quantizer = Callable[[torch.Tensor], GgufCodes]
Dequantizer = Callable[[GgufCodes], torch.Tensor]

QUANTIZERS: dict[str, Quantizer] = {
    "q8_0": _q8_0,
    "q4_0": lambda xb: _symmetric(xb, 16),
    "q5_0": lambda xb: _symmetric(xb, 32),
    "q4_1": lambda xb: _with_min(xb, 16),
    "q5_1": lambda xb: _with_min(xb, 32),
    "iq4_nl": _iq4_nl,
    **K_QUANTIZERS,
}
DEQUANTIZERS: dict[str, Dequantizer] = {
    **{name: functools.partial(_dequant_legacy, name) for name in QUANTIZERS if name in LEGACY},
    **K_DEQUANTIZERS,
}


def _poison(c: GgufCodes, bad: torch.Tensor) -> GgufCodes:
    """Blocks flagged `bad` ([..., nb]) get NaN scales, so they decode to NaN."""
    nan = torch.tensor(float("nan"), dtype=torch.float16, device=c.d.device)
    return GgufCodes(
        q=torch.where(bad.unsqueeze(-1), torch.zeros_like(c.q), c.q),
        d=torch.where(bad, nan, c.d),
        dmin=None if c.dmin is None else torch.where(bad, nan, c.dmin),
        sc=c.sc,
        mn=c.mn,
    )


def gguf_codes(el: GgufBlock, x: torch.Tensor) -> GgufCodes:
    """The stored blocks of float32 `x` ([..., n], n a multiple of the block size)."""
    t = gguf_type(el)
    xb = to_blocks(t, x)
    bad = ~torch.isfinite(xb).all(-1)
    clean = torch.where(bad.unsqueeze(-1), torch.zeros_like(xb), xb)
    codes = QUANTIZERS[t.name](clean)
    return _poison(codes, bad) if bool(bad.any()) else codes


def gguf_values(el: GgufBlock, c: GgufCodes) -> torch.Tensor:
    """float32 [..., nb, block]: what llama.cpp's dequantizer makes of the blocks."""
    return DEQUANTIZERS[el.name](c)


def gguf_quantize(el: GgufBlock, x: torch.Tensor) -> torch.Tensor:
    """quantize then dequantize float32 `x` ([..., n]); float32 of the same shape."""
    if x.numel() == 0:
        to_blocks(gguf_type(el), x)  # the shape must still be valid
        return x.clone()
    return gguf_values(el, gguf_codes(el, x)).reshape(x.shape)
