"""Choosing block scales: power-of-two rules (floor / ceil / near), float rules (amax / mse /
mean), the rounding of scales to their own format, zero-points and the NVFP4 tensor scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quarch.formats import _minifloat
from quarch.formats._round import exponent_of, pow2, round_to_quantum
from quarch.formats._spec import (
    POW2_RULES,
    Format,
    IntElement,
    IntGrid,
    Minifloat,
    Pow2Scale,
    Rounding,
    ScaleRule,
)

_RNE = Rounding()
MSE_RATIOS = tuple(1.0 - 0.025 * i for i in range(21))  # clipping ratios 1.0 … 0.5


@dataclass(frozen=True, kw_only=True)
class Scales:
    """Scales of one tensor: what `quantize` divides by, per block.

    block: float32 scale values (already on the scale format's grid), shape = block grid.
    zero_point: float32 integer zero-points (asymmetric integers), same shape, or None.
    tensor: 0-d float32 second-level scale (`ts` formats), or None.
    """

    block: torch.Tensor
    zero_point: torch.Tensor | None = None
    tensor: torch.Tensor | None = None


def fixed_point_shift(fmt: Format) -> int:
    """An integer element q stands for q / 2^(K-2) under a power-of-two scale (OCP MXINT8 reads
    int8 as fixed point with 6 fraction bits), so the stored exponent is the integer scale's
    exponent plus K-2. Zero for every other element."""
    el = fmt.element
    return el.emax if isinstance(el, IntElement) else 0


def element_max(fmt: Format) -> float:
    return float(fmt.element.max)


def _exp_range(sf: Pow2Scale | Minifloat) -> tuple[int, int]:
    if isinstance(sf, Pow2Scale):
        return sf.min_exp, sf.max_exp
    return sf.emin, sf.emax


def _pow2_exponent(rule: ScaleRule, amax: torch.Tensor, fmt: Format, sf: Pow2Scale | Minifloat):
    """Shared exponent per block for power-of-two scale formats (float32 exponent tensor)."""
    finite = torch.isfinite(amax) & (amax > 0)
    safe = torch.where(finite, amax, torch.ones_like(amax))
    match rule:
        case ScaleRule.FLOOR:
            # OCP MX v1.0 §6.3: X = floor(log2(amax)) - emax_elem, from the exponent bits.
            e = exponent_of(safe) - fmt.element.emax
        case ScaleRule.CEIL:
            ratio = safe.double() / element_max(fmt)
            mant, ex = torch.frexp(ratio)  # ratio = mant · 2^ex, mant in [0.5, 1)
            e = torch.where(mant == 0.5, ex - 1, ex).to(torch.int32)
        case ScaleRule.NEAR:
            ratio = safe / element_max(fmt)
            near = round_to_quantum(ratio, exponent_of(ratio), _RNE)
            e = exponent_of(near)
        case _:
            raise AssertionError(rule)
    lo, hi = _exp_range(sf)
    shift = fixed_point_shift(fmt)
    lo, hi = lo - shift, hi - shift
    e = e.clamp(lo, hi).to(torch.float32)
    e = torch.where(amax == 0, torch.full_like(e, lo), e)
    return torch.where(finite | (amax == 0), e, torch.full_like(e, float("nan")))


def _pow2_value(e: torch.Tensor) -> torch.Tensor:
    nan = torch.isnan(e)
    v = pow2(torch.where(nan, torch.zeros_like(e), e).to(torch.int32))
    return torch.where(nan, e, v)


def round_scale(sf: Minifloat, s: torch.Tensor) -> torch.Tensor:
    """Round float scales onto their format, kept within [smallest normal, max].

    Clamping below at the smallest normal (not zero) keeps every block's scale invertible; it is
    also what torchao's NVFP4 does for its e4m3 block scales (E4M3_EPS = finfo.tiny).
    """
    clamped = s.clamp(min=sf.smallest_normal, max=sf.max)
    return _minifloat.cast(sf, clamped, _RNE)


def _float_scale(fmt: Format, stat: torch.Tensor, ts: torch.Tensor | None) -> torch.Tensor:
    sf = fmt.scaling.scale_format
    assert isinstance(sf, Minifloat)
    s = stat / element_max(fmt) if fmt.scaling.rule is not ScaleRule.MEAN else stat
    if ts is not None:
        s = s / ts
    out = round_scale(sf, s)
    return torch.where(torch.isfinite(stat), out, stat)


def tensor_scale(fmt: Format, x: torch.Tensor) -> torch.Tensor:
    """NVFP4's per-tensor fp32 scale: amax / (max_elem · max_scale) so block scales fit their
    format (NVIDIA, "Introducing NVFP4", 2025; torchao per_tensor_amax_to_scale)."""
    sf = fmt.scaling.scale_format
    assert isinstance(sf, Minifloat), "tensor scales go with float block scales"
    amax = abs_max(x, None).to(torch.float32)
    ts = amax / torch.tensor(element_max(fmt) * float(sf.max), dtype=torch.float32)
    return torch.where(ts > 0, ts, torch.ones_like(ts))


def block_stat(fmt: Format, xb: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
    """amax per block (NaN-propagating), or mean |x| over real elements for the mean rule."""
    if fmt.scaling.rule is ScaleRule.MEAN:
        assert counts is not None
        return xb.abs().sum(-1) / counts.squeeze(-1).clamp(min=1)
    return abs_max(xb) if xb.shape[-1] else torch.zeros(xb.shape[:-1])


def abs_max(x: torch.Tensor, dim: int | None = -1) -> torch.Tensor:
    """max |x| along `dim` (all of x for None), NaN-propagating, without a full-size temporary
    (`x.abs().amax()` allocates |x|, which costs as much as a copy; torch's `aminmax` along a
    short last dim is ~9x slower on CPU than `amax` and `amin` together)."""
    dims = () if dim is None else (dim,)
    return torch.maximum(x.amax(dims), -x.amin(dims)).abs()


def scales_from_stat(fmt: Format, stat: torch.Tensor, ts: torch.Tensor | None) -> torch.Tensor:
    sf = fmt.scaling.scale_format
    rule = fmt.scaling.rule
    if rule in POW2_RULES or isinstance(sf, Pow2Scale):
        rule = rule if rule in POW2_RULES else ScaleRule.FLOOR
        stat = stat if ts is None else stat / ts
        return _pow2_value(_pow2_exponent(rule, stat, fmt, sf))
    return _float_scale(fmt, stat, ts)


def asym_scales(fmt: Format, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric integers: scale = (max - min) / (2^K - 1) over a range that includes 0, and an
    integer zero-point = round(-min / scale) (the GPTQ reference convention)."""
    el = fmt.element
    assert isinstance(el, IntElement) and el.grid is IntGrid.ASYM
    lo = xb.amin(-1).clamp(max=0) if xb.shape[-1] else torch.zeros(xb.shape[:-1])
    hi = xb.amax(-1).clamp(min=0) if xb.shape[-1] else torch.zeros(xb.shape[:-1])
    sf = fmt.scaling.scale_format
    assert isinstance(sf, Minifloat), "asymmetric integers take float scales"
    scale = round_scale(sf, (hi - lo) / el.qmax)
    zp = torch.round(-lo / scale).clamp(0, el.qmax)
    bad = ~(torch.isfinite(lo) & torch.isfinite(hi))
    nan = torch.full_like(scale, float("nan"))
    return torch.where(bad, nan, scale), torch.where(bad, nan, zp)
