"""Minifloat `eXmY` codec: rounding onto the grid, codes, and values from codes.

Two implementations that tests hold bit-identical:
- `cast_generic`: integer operations on the float32 bits (`_round.round_to_quantum`); every mode.
- `cast_fast`: for formats of at most 8 bits, a sorted table of the format's magnitudes and
  `torch.bucketize` against the exact midpoints; for bf16 and fp16, torch's own casts (IEEE RNE).
"""

from __future__ import annotations

import functools

import torch

from quarch.formats._round import exponent_of, round_to_quantum
from quarch.formats._spec import Minifloat, Rounding, RoundMode, Specials


def _overflow_value(mf: Minifloat, x: torch.Tensor) -> torch.Tensor:
    """What an overflowing element of sign sign(x) becomes."""
    big = torch.full_like(x, mf.max)
    if mf.saturate or not (mf.has_inf or mf.has_nan):
        return torch.copysign(big, x)
    fill = float("inf") if mf.has_inf else float("nan")
    return torch.copysign(torch.full_like(x, fill), x)


def _special_inputs(mf: Minifloat, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Put ±inf and NaN inputs through the format's rules (ml_dtypes' conventions)."""
    inf = torch.isinf(x)
    nan = torch.isnan(x)
    if mf.has_inf and not mf.saturate:
        y = torch.where(inf, x, y)
    elif mf.has_nan and not mf.saturate:
        y = torch.where(inf, torch.copysign(torch.full_like(x, float("nan")), x), y)
    else:
        y = torch.where(inf, torch.copysign(torch.full_like(x, mf.max), x), y)
    if mf.has_nan:
        return torch.where(nan, x, y)
    # No NaN pattern at all. ml_dtypes (0.5, 0.6) writes a zero whose sign is the NaN's sign bit
    # inverted; we follow it so the two stay bit-identical on every input.
    flipped_zero = torch.where(torch.signbit(x), torch.zeros_like(x), torch.full_like(x, -0.0))
    return torch.where(nan, flipped_zero, y)


def _directed_saturates(mode: RoundMode, negative: torch.Tensor) -> torch.Tensor | None:
    """IEEE 754 §7.4: rounding toward zero (or toward the far infinity's opposite) never
    overflows to infinity; it stops at the largest finite value."""
    match mode:
        case RoundMode.RZ:
            return torch.ones_like(negative)
        case RoundMode.RD:
            return ~negative
        case RoundMode.RU:
            return negative
        case _:
            return None


def _finish(mf: Minifloat, x: torch.Tensor, y: torch.Tensor, rounding: Rounding) -> torch.Tensor:
    over = y.abs() > mf.max
    sat = _directed_saturates(rounding.mode, x < 0)
    ovf = _overflow_value(mf, x)
    if sat is not None:
        ovf = torch.where(sat, torch.copysign(torch.full_like(x, mf.max), x), ovf)
    y = torch.where(over, ovf, y)
    if mf.specials is Specials.FNUZ or not mf.signed:
        y = torch.where(y == 0, torch.zeros_like(y), y)  # no −0 pattern
    if not mf.signed:
        y = y.clamp(min=0.0)
    return _special_inputs(mf, x, y)


def cast_generic(
    mf: Minifloat, x: torch.Tensor, rounding: Rounding, *, stream: int = 0
) -> torch.Tensor:
    """Round float32 `x` onto `mf`'s grid with integer operations on the bits (all modes)."""
    finite = torch.isfinite(x) & (x != 0)
    safe = torch.where(finite, x, torch.ones_like(x))
    e = exponent_of(safe)
    if mf.subnormals:
        q = e.clamp(min=mf.emin) - mf.man_bits
    else:
        # Below the smallest normal the grid is {0, 2^emin}: a quantum of 2^emin.
        q = torch.where(e < mf.emin, mf.emin, e - mf.man_bits)
    y = round_to_quantum(safe, q, rounding, stream=stream)
    y = torch.where(finite, y, x)
    return _finish(mf, x, y, rounding)


@functools.lru_cache(maxsize=64)
def magnitude_table(mf: Minifloat) -> torch.Tensor:
    """Finite non-negative values of `mf` indexed by magnitude code (float64, ascending)."""
    codes = torch.arange(2 ** (mf.exp_bits + mf.man_bits), dtype=torch.int64)
    vals = decode_magnitudes(mf, codes)
    finite = torch.isfinite(vals)
    # Specials sit only at the top of the code range, so the finite ones form a prefix.
    return vals[finite]


@functools.lru_cache(maxsize=64)
def _midpoints(mf: Minifloat) -> tuple[torch.Tensor, torch.Tensor, float]:
    table = magnitude_table(mf)
    mids = (table[1:] + table[:-1]) / 2
    step_top = float(table[-1] - table[-2])
    # Midpoints of neighbours on a binary grid need one bit more than the grid: exact in fp32
    # for every format of at most 8 bits.
    assert torch.equal(mids.float().double(), mids)
    return table.float(), mids.float(), float(table[-1]) + step_top / 2


def cast_fast(mf: Minifloat, x: torch.Tensor, rounding: Rounding) -> torch.Tensor:
    """Table-driven rounding for formats of at most 8 bits, every mode except stochastic."""
    table, mids, threshold = _midpoints(mf)
    mag = x.abs()
    mode = rounding.mode
    match mode:
        case RoundMode.RNE | RoundMode.AWAY:
            lo = torch.bucketize(mag, mids, right=False)  # ties go to the smaller magnitude
            hi = torch.bucketize(mag, mids, right=True)  # ties go to the larger magnitude
            idx = hi if mode is RoundMode.AWAY else torch.where((lo & 1) == 0, lo, hi)
            top_even = (table.numel() - 1) % 2 == 0
            over = mag > threshold if (mode is RoundMode.RNE and top_even) else mag >= threshold
        case RoundMode.RZ | RoundMode.RD | RoundMode.RU:
            down = (torch.bucketize(mag, table, right=True) - 1).clamp(min=0)
            up = torch.bucketize(mag, table, right=False)
            neg = x < 0
            toward_zero = {
                RoundMode.RZ: torch.ones_like(neg),
                RoundMode.RD: ~neg,
                RoundMode.RU: neg,
            }[mode]
            idx = torch.where(toward_zero, down, up)
            over = (mag > table[-1]) & ~toward_zero
        case RoundMode.SR:
            raise ValueError("stochastic rounding goes through cast_generic")
    y = table[idx.clamp(max=table.numel() - 1)]
    y = torch.copysign(y, x)
    y = torch.where(over, torch.full_like(y, float("inf")), y)  # marks overflow for _finish
    return _finish(mf, x, y, rounding)


_TORCH_CASTS = {
    (8, 7, Specials.IEEE, 127): torch.bfloat16,
    (5, 10, Specials.IEEE, 15): torch.float16,
}
# torch's float8 casts round to nearest-even and saturate out-of-range values (unlike ml_dtypes,
# which overflows e4m3fn to NaN), so they serve the saturating variants after a clamp.
_TORCH_FP8 = {
    (4, 3, Specials.FN, 7): torch.float8_e4m3fn,
    (5, 2, Specials.IEEE, 15): torch.float8_e5m2,
    (4, 3, Specials.FNUZ, 8): torch.float8_e4m3fnuz,
    (5, 2, Specials.FNUZ, 16): torch.float8_e5m2fnuz,
}


def _fits_ieee_add(mf: Minifloat) -> bool:
    """Whether 2^(q+23) stays a float32 normal for every quantum exponent q of the format."""
    return mf.emax + 1 - mf.man_bits + 23 <= 127 and mf.emin - mf.man_bits + 23 >= -126


def cast_rne_add(mf: Minifloat, x: torch.Tensor) -> torch.Tensor:
    """Nearest-even rounding by one IEEE float32 addition per element.

    For |x| below 2^(q+24), the float32 sum |x| + 2^(q+23) has an ulp of exactly 2^q, so the
    hardware's own round-to-nearest-even addition rounds |x| to a multiple of 2^q, ties to even
    included; subtracting 2^(q+23) again is exact. q comes from the exponent bits, as in
    `cast_generic`, with which tests hold this bit-identical.
    """
    bits = x.view(torch.int32)
    absbits = bits & 0x7FFFFFFF
    mag = absbits.view(torch.float32)
    biased = (absbits >> 23).clamp(max=mf.emax + 1 + 127)  # larger values overflow anyway
    if mf.subnormals:
        qb = biased.clamp(min=mf.emin + 127) - mf.man_bits
    else:
        qb = torch.where(biased < mf.emin + 127, mf.emin + 127, biased - mf.man_bits)
    magic = ((qb + 23) << 23).view(torch.float32)
    r = (mag + magic) - magic  # inf stays inf, NaN stays NaN
    # Overflow and ±inf inputs alike become the format's overflow value (inf, NaN or ±max).
    if mf.saturate or not (mf.has_inf or mf.has_nan):
        r = r.clamp(max=mf.max)  # clamp keeps NaN
    else:
        r = torch.where(r > mf.max, float("inf") if mf.has_inf else float("nan"), r)
    negative = bits < 0
    if mf.specials is Specials.FNUZ or not mf.signed:
        negative = negative & (r != 0)  # no −0 pattern
    y = torch.where(negative, -r, r)
    if not mf.has_nan:
        # ml_dtypes (0.5, 0.6) turns NaN into a zero of the NaN's inverted sign; we follow it.
        y = torch.where(torch.isnan(mag), torch.where(negative, 0.0, -0.0), y)
    if not mf.signed:
        y = y.clamp(min=0.0)
    return y


_CHUNK = 1 << 18  # elements per chunk of the in-place paths: 1 MiB of float32 stays in cache


def rne_add_inplace_ok(mf: Minifloat) -> bool:
    """Whether `cast_rne_add_` serves `mf`: a signed, saturating format with subnormals, whose
    quanta fit `cast_rne_add`'s float32 addition. Every scaled OCP minifloat qualifies."""
    return (
        _fits_ieee_add(mf)
        and mf.signed
        and mf.subnormals
        and mf.specials is not Specials.FNUZ
        and (mf.saturate or not (mf.has_inf or mf.has_nan))
    )


def cast_rne_add_(mf: Minifloat, v: torch.Tensor) -> torch.Tensor:
    """`cast_rne_add` of finite float32 `v`, overwriting `v` (which the caller owns).

    Why a second implementation: on this library's CPU path each full-size temporary costs a
    fresh allocation whose pages the kernel must fault in — about as long as a copy of the
    tensor — and `cast_rne_add` makes a dozen. Here the only temporary is one cache-sized int32
    buffer, reused chunk by chunk; the arithmetic is the same IEEE operations, so the results are
    bit-identical (tests hold the two equal). The magic constant takes v's sign, so
    v + copysign(2^(q+23), v) - copysign(2^(q+23), v) rounds |v| to nearest-even symmetrically;
    the final copysign restores the sign of values that rounded to zero.

    Preconditions (checked by the caller): `rne_add_inplace_ok(mf)`, `v` finite.
    """
    if not v.is_contiguous():
        v = v.contiguous()
    flat = v.view(-1)
    n = flat.numel()
    scratch = torch.empty(min(n, _CHUNK), dtype=torch.int32)
    lo, hi = mf.emin + 127, mf.emax + 1 + 127
    for start in range(0, n, _CHUNK):
        c = flat[start : start + _CHUNK]
        t = scratch[: c.numel()]
        torch.bitwise_right_shift(c.view(torch.int32), 23, out=t)
        t.bitwise_and_(0xFF).clamp_(lo, hi).add_(23 - mf.man_bits).bitwise_left_shift_(23)
        magic = t.view(torch.float32).copysign_(c)
        c.add_(magic).sub_(magic).copysign_(magic).clamp_(-mf.max, mf.max)
    return v


def _torch_fp8_overflowing(mf: Minifloat, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """torch's saturating fp8 cast, with overflow turned into inf/NaN as the format says: a
    value overflows when nearest-even rounding on the grid extended by one step past max would
    leave the grid (max's code parity decides the tie at max + step/2)."""
    table, _, threshold = _midpoints(mf)
    top_even = (table.numel() - 1) % 2 == 0
    if x.numel():
        # Two cheap reductions first: when nothing overflows (the usual case) and nothing is
        # NaN (a NaN peak fails both tests), the cast alone is the answer.
        peak = float(torch.maximum(x.amax(), -x.amin()))
        if peak < threshold or (top_even and peak == threshold):
            return x.to(dtype).to(torch.float32)
    mag = x.abs()
    over = mag > threshold if top_even else mag >= threshold
    y = x.to(dtype).to(torch.float32)
    fill = float("inf") if mf.has_inf else float("nan")
    return torch.where(over & ~torch.isnan(x), torch.copysign(torch.full_like(x, fill), x), y)


def cast(mf: Minifloat, x: torch.Tensor, rounding: Rounding, *, stream: int = 0) -> torch.Tensor:
    """Round float32 `x` onto `mf`'s grid: the fast path where one exists, else generic."""
    key = (mf.exp_bits, mf.man_bits, mf.specials, mf.bias)
    if mf.exp_bits == 8 and mf.man_bits == 23 and mf.signed:
        return x  # float32 itself
    if rounding.mode is RoundMode.SR:
        return cast_generic(mf, x, rounding, stream=stream)
    dtype = _TORCH_CASTS.get(key)
    rne = rounding.mode is RoundMode.RNE
    if dtype is not None and rne and mf.signed and not mf.saturate and mf.subnormals:
        return x.to(dtype).to(torch.float32)  # IEEE RNE, overflow to inf: the same grid
    fp8 = _TORCH_FP8.get(key)
    if fp8 is not None and rne and mf.signed and mf.subnormals:
        if mf.saturate:
            return x.clamp(-mf.max, mf.max).to(fp8).to(torch.float32)  # clamp keeps NaN
        return _torch_fp8_overflowing(mf, x, fp8)
    if rne and _fits_ieee_add(mf):
        return cast_rne_add(mf, x)
    if mf.exp_bits + mf.man_bits <= 8 and mf.subnormals:
        return cast_fast(mf, x, rounding)
    return cast_generic(mf, x, rounding, stream=stream)


def decode_magnitudes(mf: Minifloat, codes: torch.Tensor) -> torch.Tensor:
    """Values (float64) of non-negative codes `(exponent field << man_bits) | mantissa`."""
    m = mf.man_bits
    field = codes >> m
    mant = codes & ((1 << m) - 1)
    sub = mant.double() * 2.0 ** (mf.emin - m)
    if not mf.subnormals:
        sub = torch.zeros_like(sub)
    normal = (mant + (1 << m)).double() * torch.pow(2.0, (field - mf.bias - m).double())
    vals = torch.where(field == 0, sub, normal)
    top = field == 2**mf.exp_bits - 1
    match mf.specials:
        case Specials.IEEE:
            vals = torch.where(top & (mant == 0), float("inf"), vals)
            vals = torch.where(top & (mant != 0), float("nan"), vals)
        case Specials.FN:
            vals = torch.where(top & (mant == (1 << m) - 1), float("nan"), vals)
        case Specials.FNUZ | Specials.FINITE:
            pass
    return vals


def decode(mf: Minifloat, codes: torch.Tensor) -> torch.Tensor:
    """float32 values of integer codes (sign bit on top for signed formats)."""
    codes = codes.to(torch.int64)
    nbits = mf.exp_bits + mf.man_bits
    mag = codes & ((1 << nbits) - 1)
    vals = decode_magnitudes(mf, mag)
    if mf.signed:
        neg = ((codes >> nbits) & 1) == 1
        if mf.specials is Specials.FNUZ:
            vals = torch.where(neg & (mag == 0), float("nan"), vals)
        vals = torch.where(neg, -vals, vals)
    return vals.to(torch.float32)


def encode(mf: Minifloat, y: torch.Tensor) -> torch.Tensor:
    """Codes (int64) of float32 values `y` that already lie on `mf`'s grid (or are special)."""
    nbits = mf.exp_bits + mf.man_bits
    m = mf.man_bits
    negative = torch.signbit(y)
    mag = y.abs()
    finite = torch.isfinite(mag) & (mag > 0)
    safe = torch.where(finite, mag, torch.ones_like(mag))
    e = exponent_of(safe)
    q = e.clamp(min=mf.emin) - m
    count = torch.round(safe.double() * torch.pow(2.0, -q.double())).to(torch.int64)
    field = torch.where(e >= mf.emin, e + mf.bias, 0).to(torch.int64)
    code = torch.where(e >= mf.emin, (field << m) | (count - (1 << m)), count)
    code = torch.where(finite, code, 0)
    top = (2**mf.exp_bits - 1) << m
    match mf.specials:
        case Specials.IEEE:
            code = torch.where(torch.isinf(mag), top, code)
            quiet = top | (1 << (m - 1)) if m > 0 else top
            code = torch.where(torch.isnan(mag), quiet, code)
        case Specials.FN:
            code = torch.where(torch.isnan(mag), (1 << nbits) - 1, code)
        case Specials.FNUZ:
            code = torch.where(torch.isnan(mag), 1 << nbits, code)
            negative = negative & (code != 0)
        case Specials.FINITE:
            pass
    if mf.signed:
        code = code | (negative.to(torch.int64) << nbits)
    return code
