"""Format specs: frozen dataclasses holding raw fields; derived values are properties.

A `Format` is an element codec (what one stored number means), a scaling (which elements share a
scale and how that scale is chosen and stored) and a rounding mode. The string grammar lives in
`_grammar.py`; the arithmetic in `_minifloat.py`, `_integer.py`, `_codebook.py`, `_scaling.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from quarch.formats._gguf_types import GGUF_TYPES


class Specials(StrEnum):
    """Which bit patterns of a minifloat are special values."""

    IEEE = "ieee"  # top exponent reserved for ±inf (mantissa 0) and NaN (like e5m2)
    FN = "fn"  # no inf; only the all-ones pattern (per sign) is NaN (like e4m3fn)
    FNUZ = "fnuz"  # no inf, no −0; the −0 pattern is the only NaN
    FINITE = "fin"  # every pattern is a finite number (OCP e2m1, e3m2, e2m3)


class IntGrid(StrEnum):
    """The integer grid of an `intK` element."""

    RESTRICTED = "restricted"  # [-(2^(K-1)-1), 2^(K-1)-1]
    FULL = "full"  # [-2^(K-1), 2^(K-1)-1]
    ASYM = "asym"  # [0, 2^K-1] with a zero-point


class ScalingKind(StrEnum):
    NONE = "raw"
    TENSOR = "t"
    CHANNEL = "c"
    GROUP = "g"
    BLOCK2D = "b"


class ScaleRule(StrEnum):
    """How a block's scale is chosen from its values."""

    FLOOR = "floor"  # power of two: floor(log2 amax) - emax_elem (OCP MX v1.0 §6.3)
    CEIL = "ceil"  # power of two: ceil(log2(amax / max_elem)); never clips
    NEAR = "near"  # power of two nearest (RNE on the mantissa) to amax / max_elem
    AMAX = "amax"  # amax / max_elem, rounded to the scale format
    MSE = "mse"  # clipping ratio searched per block to minimise squared error
    MEAN = "mean"  # mean(|x|) (BitNet b1.58 absmean)


POW2_RULES = frozenset({ScaleRule.FLOOR, ScaleRule.CEIL, ScaleRule.NEAR})


class RoundMode(StrEnum):
    RNE = "rne"  # nearest, ties to even
    AWAY = "away"  # nearest, ties away from zero
    RZ = "rz"  # toward zero
    RD = "rd"  # toward −inf
    RU = "ru"  # toward +inf
    SR = "sr"  # stochastic


@dataclass(frozen=True, kw_only=True)
class Minifloat:
    """Sign (unless unsigned), `exp_bits` exponent bits, `man_bits` mantissa bits."""

    exp_bits: int
    man_bits: int
    bias: int
    specials: Specials = Specials.IEEE
    subnormals: bool = True
    saturate: bool = False
    signed: bool = True

    @staticmethod
    def default_bias(exp_bits: int, specials: Specials) -> int:
        return 2 ** (exp_bits - 1) if specials is Specials.FNUZ else 2 ** (exp_bits - 1) - 1

    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        top = 2**self.exp_bits - 1 - self.bias
        if self.specials is Specials.IEEE:
            return top - 1
        if self.specials is Specials.FN and self.man_bits == 0:
            return top - 1  # the all-ones pattern of the top binade is NaN
        return top

    @property
    def max(self) -> float:
        """Largest finite value."""
        m = self.man_bits
        if self.specials is Specials.FN and m > 0:
            frac = 2.0 - 2.0 ** (1 - m)  # mantissa all-ones is NaN: one step below
        else:
            frac = 2.0 - 2.0**-m
        return math.ldexp(frac, self.emax)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.man_bits)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def has_inf(self) -> bool:
        return self.specials is Specials.IEEE

    @property
    def has_nan(self) -> bool:
        return self.specials is not Specials.FINITE


@dataclass(frozen=True, kw_only=True)
class IntElement:
    bits: int
    grid: IntGrid = IntGrid.RESTRICTED

    @property
    def qmin(self) -> int:
        match self.grid:
            case IntGrid.RESTRICTED:
                return -(2 ** (self.bits - 1) - 1)
            case IntGrid.FULL:
                return -(2 ** (self.bits - 1))
            case IntGrid.ASYM:
                return 0

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1 if self.grid is IntGrid.ASYM else 2 ** (self.bits - 1) - 1

    @property
    def max(self) -> float:
        """The magnitude `amax` maps to under the float (amax) scale rule."""
        match self.grid:
            case IntGrid.RESTRICTED:
                return float(self.qmax)
            case IntGrid.FULL:
                return self.qmax + 0.5  # GPTQ / torchao: scale = amax / 7.5 for int4
            case IntGrid.ASYM:
                return float(self.qmax)

    @property
    def emax(self) -> int:
        """Exponent of the element's top binade: the fixed-point reading of OCP MXINT8."""
        return self.bits - 2


class _UnitTop:
    """An element grid whose largest magnitude is 1 = 2^0."""

    @property
    def max(self) -> float:
        return 1.0

    @property
    def emax(self) -> int:
        return 0


@dataclass(frozen=True, kw_only=True)
class PowerOfTwo(_UnitTop):
    """Zero and ±2^-j for j = 0 … 2^(bits-1) - 2."""

    bits: int

    @property
    def as_minifloat(self) -> Minifloat:
        # A sign bit and (bits-1) exponent bits with no mantissa; the all-zero pattern is zero.
        eb = self.bits - 1
        return Minifloat(
            exp_bits=eb,
            man_bits=0,
            bias=2**eb - 1,
            specials=Specials.FINITE,
            subnormals=False,
            saturate=True,
        )


@dataclass(frozen=True, kw_only=True)
class Ternary(_UnitTop):
    """The grid {-1, 0, 1}."""


@dataclass(frozen=True, kw_only=True)
class Codebook:
    """A sorted table of values with largest magnitude 1; `name` is set for named tables."""

    values: tuple[float, ...]
    name: str | None = None

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(len(self.values))))

    @property
    def max(self) -> float:
        return max(abs(v) for v in self.values)

    @property
    def emax(self) -> int:
        return 0


@dataclass(frozen=True, kw_only=True)
class GgufBlock(_UnitTop):
    """A llama.cpp GGUF block type (`q4_0`, `q4_k`, `iq4_nl`, ...): its codes, scales and
    minimums are chosen jointly per block by llama.cpp's reference algorithm (`_gguf.py`), so
    the element and the scaling are one unit. `name` is a key of `GGUF_TYPES`."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in GGUF_TYPES:
            raise ValueError(f"unknown GGUF block type {self.name!r}; known: {sorted(GGUF_TYPES)}")

    @property
    def bits(self) -> int:
        return GGUF_TYPES[self.name].code_bits

    @property
    def block(self) -> int:
        return GGUF_TYPES[self.name].block

    @property
    def bits_per_element(self) -> float:
        """The type's real size: bytes per block × 8 / elements per block."""
        return GGUF_TYPES[self.name].bits_per_element


Element = Minifloat | IntElement | PowerOfTwo | Ternary | Codebook | GgufBlock


@dataclass(frozen=True, kw_only=True)
class Pow2Scale:
    """An exponent-only scale format: 2^(code - bias); e8m0 of OCP MX (0xFF is NaN)."""

    exp_bits: int = 8
    bias: int = 127

    @property
    def bits(self) -> int:
        return self.exp_bits

    @property
    def min_exp(self) -> int:
        return -self.bias

    @property
    def max_exp(self) -> int:
        return 2**self.exp_bits - 2 - self.bias


ScaleFormat = Minifloat | Pow2Scale


def _fp32() -> Minifloat:
    return Minifloat(exp_bits=8, man_bits=23, bias=127)


@dataclass(frozen=True, kw_only=True)
class Scaling:
    kind: ScalingKind = ScalingKind.NONE
    block: tuple[int, ...] = ()  # (k,) for GROUP, (rows, cols) for BLOCK2D
    axis: int = -1
    scale_format: ScaleFormat = field(default_factory=_fp32)
    rule: ScaleRule = ScaleRule.AMAX
    tensor_scale: bool = False

    @property
    def elements_per_scale(self) -> int | None:
        """Elements sharing one scale, or None where it depends on the tensor's shape."""
        match self.kind:
            case ScalingKind.GROUP:
                return self.block[0]
            case ScalingKind.BLOCK2D:
                return self.block[0] * self.block[1]
            case _:
                return None


@dataclass(frozen=True, kw_only=True)
class Rounding:
    mode: RoundMode = RoundMode.RNE
    sr_bits: int = 0  # random bits of stochastic rounding
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class Format:
    """One number format. `Format.parse("mxfp4")`; `str(fmt)` prints it back."""

    element: Element
    scaling: Scaling = field(default_factory=Scaling)
    rounding: Rounding = field(default_factory=Rounding)

    @staticmethod
    def parse(text: str) -> Format:
        """Parse a format string (see docs/formats.md); raises ValueError if it is invalid."""
        from quarch.formats._grammar import parse_format

        return parse_format(text)

    def __str__(self) -> str:
        from quarch.formats._grammar import format_to_string

        return format_to_string(self)

    @property
    def element_bits(self) -> float:
        match self.element:
            case Minifloat(bits=b) | IntElement(bits=b) | PowerOfTwo(bits=b):
                return float(b)
            case Ternary():
                return 1.6  # five trits per byte (3^5 = 243 ≤ 256)
            case Codebook() | GgufBlock():
                return float(self.element.bits)

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element including this element's share of scales and zero-points.

        Per-tensor and per-channel scales are amortised over whole rows or tensors and count as
        zero here; `storage_bits(shape)` gives the exact total for a given shape. A GGUF block
        type counts its whole block (codes, scales, minimums): Q4_K is 144 bytes per 256.
        """
        if isinstance(self.element, GgufBlock):
            return self.element.bits_per_element
        n = self.scaling.elements_per_scale
        if n is None:
            return self.element_bits
        return self.element_bits + (self.scaling.scale_format.bits + self.zero_point_bits) / n

    @property
    def zero_point_bits(self) -> int:
        """Bits of one block's zero-point: asymmetric integers store one at the element width;
        every other format stores none (0)."""
        el = self.element
        return el.bits if isinstance(el, IntElement) and el.grid is IntGrid.ASYM else 0

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        """Exact storage of a tensor of `shape`: elements, scales, zero-points, tensor scale."""
        from quarch.formats._blocks import num_scale_blocks

        numel = math.prod(shape)
        if isinstance(self.element, GgufBlock):  # whole blocks: codes, scales and minimums
            t = GGUF_TYPES[self.element.name]
            return math.ceil(numel / t.block) * t.type_bytes * 8
        blocks = num_scale_blocks(self, shape)
        per_block = self.scaling.scale_format.bits + self.zero_point_bits
        tensor = 32 if self.scaling.tensor_scale else 0
        return math.ceil(numel * self.element_bits) + blocks * per_block + tensor
