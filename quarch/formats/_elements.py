"""Element codecs: what each element kind does, dispatched in one place.

`cast` rounds a float32 tensor already divided by its scale onto the element's grid; `encode`
maps grid values to the integer codes a device stores and `decode` maps them back. Minifloats
(and powers of two, stored as exponent-only minifloats) go to `_minifloat`; integers, ternary
and codebooks are here. Integers round with `_round.round_to_quantum` at quantum 1, so every
rounding mode is exact at ties.
"""

from __future__ import annotations

import functools

import torch

from quarch.formats import _minifloat
from quarch.formats._round import round_to_quantum
from quarch.formats._spec import (
    Codebook,
    Element,
    IntElement,
    IntGrid,
    Minifloat,
    PowerOfTwo,
    Rounding,
    RoundMode,
    Ternary,
)

# NormalFloat4 (Dettmers et al., "QLoRA", arXiv:2305.14314, appendix E): quantiles of N(0, 1)
# normalised to [-1, 1], with an exact zero. The published table, to float32 precision.
NF4_VALUES: tuple[float, ...] = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

_ZERO_Q = torch.zeros((), dtype=torch.int32)


def round_integer(x: torch.Tensor, rounding: Rounding, *, stream: int = 0) -> torch.Tensor:
    """Round finite float32 values to integers in any rounding mode (exact at ties)."""
    if rounding.mode is RoundMode.RNE:
        return torch.round(x)  # IEEE roundTiesToEven, exact
    return round_to_quantum(x, _ZERO_Q, rounding, stream=stream)


def cast_int(el: IntElement, x: torch.Tensor, rounding: Rounding, *, stream: int = 0):
    """Integers in [qmin, qmax] (zero-point already added for asym); never −0, which two's
    complement cannot hold (adding +0 turns −0 into +0 under IEEE rounding)."""
    return round_integer(x, rounding, stream=stream).clamp(el.qmin, el.qmax) + 0.0


def cast_ternary(x: torch.Tensor, rounding: Rounding, *, stream: int = 0) -> torch.Tensor:
    return round_integer(x, rounding, stream=stream).clamp(-1.0, 1.0) + 0.0


@functools.lru_cache(maxsize=32)
def _codebook_tables(cb: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
    table = torch.tensor(cb.values, dtype=torch.float64)
    mids = (table[1:] + table[:-1]) / 2
    return table, mids


def cast_codebook(cb: Codebook, x: torch.Tensor, rounding: Rounding, *, stream: int = 0):
    """Nearest table value (ties to the even index), directed modes, or stochastic between the
    two neighbours with probability proportional to distance (R-bit resolution)."""
    return cb_values(cb, codebook_index(cb, x, rounding, stream=stream), x)


def cb_values(cb: Codebook, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    table, _ = _codebook_tables(cb)
    out = table.to(torch.float32)[idx]
    return torch.where(torch.isnan(x), x, out)


def codebook_index(cb: Codebook, x: torch.Tensor, rounding: Rounding, *, stream: int = 0):
    table, mids = _codebook_tables(cb)
    xd = x.double()  # midpoints of arbitrary tables are exact in float64, not always in float32
    n = table.numel()
    down = (torch.bucketize(xd, table, right=True) - 1).clamp(0, n - 1)
    up = torch.bucketize(xd, table, right=False).clamp(0, n - 1)
    match rounding.mode:
        case RoundMode.RNE | RoundMode.AWAY:
            lo = torch.bucketize(xd, mids, right=False)
            hi = torch.bucketize(xd, mids, right=True)
            if rounding.mode is RoundMode.RNE:
                return torch.where((lo & 1) == 0, lo, hi)
            away = torch.where(table[lo].abs() >= table[hi].abs(), lo, hi)
            return away
        case RoundMode.RZ:
            return torch.where(xd >= 0, down, up)
        case RoundMode.RD:
            return down
        case RoundMode.RU:
            return up
        case RoundMode.SR:
            lo_v, hi_v = table[down], table[up]
            gap = (hi_v - lo_v).clamp(min=1e-300)
            frac = ((xd - lo_v) / gap).clamp(0, 1)
            frac_r = torch.floor(frac * 2**rounding.sr_bits).to(torch.int64)
            gen = torch.Generator().manual_seed(rounding.seed * 1_000_003 + stream)
            rand = torch.randint(0, 2**rounding.sr_bits, x.shape, generator=gen)
            return torch.where(rand < frac_r, up, down)


def codebook_from_values(values: tuple[float, ...], name: str | None = None) -> Codebook:
    """A codebook from user values: sorted, de-duplicated, scaled so max |value| is 1."""
    if len(values) < 2:
        raise ValueError(f"a codebook needs at least 2 distinct values, got {list(values)}")
    vals = sorted(set(float(v) for v in values))
    if len(vals) < 2:
        raise ValueError(f"a codebook needs at least 2 distinct values, got {list(values)}")
    peak = max(abs(v) for v in vals)
    if peak == 0 or any(v != v or abs(v) == float("inf") for v in vals):
        raise ValueError(f"codebook values must be finite and not all zero, got {list(values)}")
    scaled = tuple(float(torch.tensor(v / peak, dtype=torch.float32)) for v in vals)
    return Codebook(values=scaled, name=name)


NF4 = Codebook(values=NF4_VALUES, name="nf4")
TERNARY = Ternary()


def _coded(el: Element) -> Element:
    """The element as it is rounded and coded: a power of two is the exponent-only minifloat
    it stands for (`PowerOfTwo.as_minifloat`), every other element itself."""
    return el.as_minifloat if isinstance(el, PowerOfTwo) else el


def cast(el: Element, x: torch.Tensor, rounding: Rounding) -> torch.Tensor:
    """Round float32 values (already divided by their scale) onto the grid of `el`."""
    match _coded(el):
        case Minifloat() as mf:
            return _minifloat.cast(mf, x, rounding)
        case IntElement() as it:
            return cast_int(it, x, rounding)
        case Ternary():
            return cast_ternary(x, rounding)
        case Codebook() as cb:
            return cast_codebook(cb, x, rounding)
    raise AssertionError(el)


def encode(el: Element, q: torch.Tensor) -> torch.Tensor:
    """int64 codes of values `q` that lie on the grid of `el`."""
    match _coded(el):
        case Minifloat() as mf:
            return _minifloat.encode(mf, q)
        case IntElement() as it:
            c = torch.nan_to_num(q).to(torch.int64)
            return c if it.grid is IntGrid.ASYM else c & ((1 << it.bits) - 1)
        case Ternary():
            return torch.nan_to_num(q).to(torch.int64) & 3
        case Codebook() as cb:
            return codebook_index(cb, q, Rounding())  # q is on the table: exact
    raise AssertionError(el)


def decode(el: Element, codes: torch.Tensor) -> torch.Tensor:
    """float32 values of the codes of `el` (inverse of `encode`)."""
    c = codes.to(torch.int64)
    match _coded(el):
        case Minifloat() as mf:
            return _minifloat.decode(mf, c)
        case IntElement() as it:
            if it.grid is IntGrid.ASYM:
                return c.to(torch.float32)
            return torch.where(c >= 1 << (it.bits - 1), c - (1 << it.bits), c).to(torch.float32)
        case Ternary():
            return torch.where(c == 3, -1, c).to(torch.float32)
        case Codebook() as cb:
            return torch.tensor(cb.values, dtype=torch.float32)[c]
    raise AssertionError(el)
