"""The time of one op on one device: compute, memory and communication, and what bounds it.

For each op instance: `time = max(compute, memory, communication) + launch overhead`
(DESIGN.md, "Performance model: semantics"), with

- **compute** = matrix-unit time at the rate of the format pair the device runs natively, times
  the shape factor of `_efficiency.py` (tile and wave quantization), over the attained fraction of
  peak; plus vector-unit time for the work the matrix unit cannot do (dequantizing stored
  operands to the compute format, promoting block-scaled partial sums). The two are added, not
  overlapped: an upper bound, since mixed-input kernels (Marlin) hide part of the conversion.
  Elementwise ops run on the vector units; embeddings are pure data movement.
- **memory** = the op's bytes (weights at their format's bits per element including scales, KV at
  the KV format, activations at theirs) over the attained bandwidth of the level they live in.
- **communication** = the collective's time over the scale-up link (see `comm_time_s`).

## Which rate a format pair runs at

Formats map to a rate family (`fp32`, `bf16`, `fp16`, `fp8`, `fp6`, `fp4`, `int8`, `int4`) by
element type and width; scaled variants (`mxfp4`, `nvfp4`, `int4_g128`, `fp8_e4m3`) keep their
element's family. For a stored operand (weights; the KV cache for attention) and an activation:

1. Same family and the device has it: native (`fp8 × fp8 → fp8`, `int8 × int8 → int8`).
2. Both narrow floats (fp4 / fp6 / fp8) and the device has both: the wider one's rate, natively
   (Blackwell's and CDNA4's mixed-input MMA takes fp4 × fp8 at the fp8 rate).
3. Otherwise both run in the wider operand's family (the activation's on a tie), or in the
   narrowest native float at least that wide when the device lacks it. A narrower stored
   operand is converted on the vector units at `dequant_flops_per_element` FLOPs per stored
   element per use (once per output row tile for GEMMs, per query row tile for attention): W4A16
   on a device without 4-bit units runs at the 16-bit rate plus that work. A narrower
   activation is converted by the kernel that produced it (not counted).

Native pairs with group scales along the reduction dimension need the partial sums of each group
rescaled: free on devices whose matrix unit applies block scales (`block_scaled_mma`), else one
multiply-add per output element per group on the vector units (as DeepSeek-V3 does for its
128-wide FP8 blocks on Hopper, https://arxiv.org/abs/2412.19437 §3.3.2). Per-tensor and
per-channel scales are applied in the epilogue and cost nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache

from quarch.hardware import Efficiency, Hardware, Topology
from quarch.perf._efficiency import (
    attention_tile_factor,
    bandwidth_fraction,
    efficiency_for,
    gemm_tile_factor,
    matmul_fraction_for,
)
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._scenario import bits_per_element, element_bits, format_of


class Bound(StrEnum):
    """What limits an op: the largest of its times, or the fixed overhead when that dominates."""

    COMPUTE = "compute"
    MEMORY = "memory"
    COMMUNICATION = "communication"
    OVERHEAD = "overhead"


FAMILY_BITS = {
    "fp4": 4,
    "int4": 4,
    "fp6": 6,
    "fp8": 8,
    "int8": 8,
    "fp16": 16,
    "bf16": 16,
    "tf32": 19,
    "fp32": 32,
    "fp64": 64,
}
"""Operand width of each rate family (tf32: 1 + 8 + 10 bits)."""

_NARROW_FLOATS = ("fp4", "fp6", "fp8")
_FLOAT_ORDER = ("fp4", "fp6", "fp8", "bf16", "fp16", "fp32", "tf32", "fp64")
# automatic upcasts never pick tf32 (an opt-in reduced-precision mode for fp32) before fp32


@lru_cache(maxsize=1024)
def format_family(fmt: str) -> str | None:
    """The rate family of format string `fmt`, or None for formats no matrix unit runs.

    Minifloats by width (`e8m7` → bf16, `e5m10` → fp16, `e8m23` → fp32, `e8m10` → tf32, any
    8/6/4-bit minifloat → fp8/fp6/fp4), integers `int8`/`int4` by width; codebooks, ternary,
    powers of two and other widths have no native unit.

    Raises:
        ValueError: `fmt` is not a valid format string.
    """
    from quarch.formats import IntElement, Minifloat

    el = format_of(fmt).element
    if isinstance(el, Minifloat):
        named = {
            (8, 7): "bf16",
            (5, 10): "fp16",
            (8, 23): "fp32",
            (8, 10): "tf32",
            (11, 52): "fp64",
        }
        if (el.exp_bits, el.man_bits) in named and el.signed:
            return named[(el.exp_bits, el.man_bits)]
        return {8: "fp8", 6: "fp6", 4: "fp4"}.get(el.bits)
    if isinstance(el, IntElement):
        return {8: "int8", 4: "int4"}.get(el.bits)
    return None


@lru_cache(maxsize=1024)
def _group_along_k(fmt: str) -> int | None:
    """Elements per scale along the reduction dimension for group/block-scaled formats."""
    from quarch.formats import ScalingKind

    scaling = format_of(fmt).scaling
    if scaling.kind is ScalingKind.GROUP or scaling.kind is ScalingKind.BLOCK2D:
        return scaling.block[-1]
    return None


@dataclass(frozen=True, slots=True)
class RatePlan:
    """How a (stored, activation) format pair runs on a device's matrix units.

    Fields:
        key: the rate family the matrix unit runs (`hw.matrix_flops_per_s[key]`).
        flops_per_s: that dense peak.
        converts: the stored operand is converted to `key` on the vector units first.
        promote_group: group size of block scales whose partial sums the vector units rescale
            (0 when none).
    """

    key: str
    flops_per_s: float
    converts: bool
    promote_group: int


def _width(family: str | None, fmt: str) -> float:
    return FAMILY_BITS[family] if family is not None else element_bits(fmt)


def _compute_family(hw: Hardware, family: str | None, width: float) -> str:
    """`family` if native, else the narrowest native float at least `width` bits wide."""
    rates = hw.matrix_flops_per_s
    if family is not None and family in rates:
        return family
    for fam in _FLOAT_ORDER:
        if fam in rates and FAMILY_BITS[fam] >= width:
            return fam
    return max(rates, key=lambda f: FAMILY_BITS[f])  # nothing wide enough: the widest there is


@lru_cache(maxsize=4096)
def matrix_rate(hw: Hardware, stored_format: str, act_format: str) -> RatePlan:
    """The rate the device runs `stored_format × act_format` at (see the module doc).

    `stored_format` is the weight format for GEMMs and the KV-cache format for attention.
    """
    rates = hw.matrix_flops_per_s
    sf, af = format_family(stored_format), format_family(act_format)
    eff = efficiency_for(hw)
    native = False
    if sf is not None and sf == af and sf in rates:
        key, native = sf, True
    elif sf in _NARROW_FLOATS and af in _NARROW_FLOATS and sf in rates and af in rates:
        key, native = max(sf, af, key=lambda f: FAMILY_BITS[f]), True
    else:
        s_width, a_width = _width(sf, stored_format), _width(af, act_format)
        if s_width > a_width:  # a wider stored operand: activations are upcast to it
            key = _compute_family(hw, sf, s_width)
        else:
            key = _compute_family(hw, af, a_width)
    promote = 0
    if native and not eff.block_scaled_mma:
        groups = [g for g in (_group_along_k(stored_format), _group_along_k(act_format)) if g]
        promote = min(groups) if groups else 0
    return RatePlan(
        key=key, flops_per_s=rates[key], converts=not native and sf != key, promote_group=promote
    )


@dataclass(frozen=True, slots=True)
class OpTime:
    """The time of one instance of `op` on one device, and why.

    Times are seconds for one instance; `total_s` multiplies by `op.count`.

    Fields:
        op: the op.
        compute_s: matrix-unit plus vector-unit time (of which `convert_s` on vector units).
        memory_s: bytes over attained bandwidth of `memory_level`.
        comm_s: communication time.
        overhead_s: fixed per-kernel cost.
        time_s: `max(compute_s, memory_s, comm_s) + overhead_s`.
        bound: what limits it.
        rate_key: the matrix-unit family used (`bf16`, `fp8`, …), `vector` for elementwise ops,
            `none` for ops that compute nothing.
        shape_factor: the tile/wave factor applied to matrix time (1 for other ops).
        convert_s: vector time converting stored operands and promoting block-scaled sums.
        memory_level: index into `hw.memory` the bytes were read from.
    """

    op: Op
    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    time_s: float
    bound: Bound
    rate_key: str
    shape_factor: float
    convert_s: float
    memory_level: int

    @property
    def total_s(self) -> float:
        """Time of all `op.count` instances."""
        return self.time_s * self.op.count

    @property
    def why(self) -> str:
        """One line saying what bounds the op and by how much."""
        op = self.op
        parts = {
            Bound.COMPUTE: f"{op.flops / 1e9:.3g} GFLOP on {self.rate_key}"
            + (f" (shape factor {self.shape_factor:.2f})" if self.shape_factor > 1.005 else "")
            + (
                f", {self.convert_s * 1e6:.3g} us converting on vector units"
                if self.convert_s
                else ""
            ),
            Bound.MEMORY: f"{op.memory_bytes / 1e6:.3g} MB from memory level {self.memory_level}",
            Bound.COMMUNICATION: f"{op.comm} of {op.comm_bytes / 1e6:.3g} MB "
            f"over {op.comm_group} devices",
            Bound.OVERHEAD: "the fixed kernel overhead exceeds the op's work",
        }
        times = {
            Bound.COMPUTE: self.compute_s,
            Bound.MEMORY: self.memory_s,
            Bound.COMMUNICATION: self.comm_s,
            Bound.OVERHEAD: self.overhead_s,
        }
        others = ", ".join(
            f"{b.value} {t * 1e6:.3g} us" for b, t in times.items() if b is not self.bound and t
        )
        head = f"{self.bound.value}-bound: {times[self.bound] * 1e6:.3g} us, {parts[self.bound]}"
        return f"{head} (vs {others})" if others else head


_MEMO_LIMIT = 1 << 13  # entries per device shape memo; when full it starts over

# enum members as module constants: reading `OpKind.MATMUL` from the class costs a lookup through
# the enum's metaclass on every op priced
_MATMUL, _ROUTER, _ATTENTION = OpKind.MATMUL, OpKind.ROUTER, OpKind.ATTENTION
_ELEMENTWISE, _NO_COMM = OpKind.ELEMENTWISE, CommKind.NONE

OpRow = tuple[Op, float, float, float, float, str, float, float]
"""An op's times without the `OpTime` object: (op, compute_s, memory_s, comm_s, time_s, rate_key,
shape_factor, convert_s). `predict` works on rows and builds `OpTime`s only when asked."""


@dataclass(frozen=True, slots=True)
class Machine:
    """What `op_time` needs from a device, resolved once per device (`machine(hw)`)."""

    hw: Hardware
    eff: Efficiency
    units: int
    vector_flops_per_s: float  # attained
    bytes_per_s: tuple[float, ...]  # attained, per memory level
    overhead_s: float
    plans: dict[tuple[str, str], RatePlan]  # memo of matrix_rate for this device
    gemm_factors: dict[tuple[int, int, int, int], tuple[float, int]]  # memo by (m, n, k, batch)
    attention_factors: dict[tuple[int, int, int], float]  # memo by (m, n, batch)
    rows: dict[tuple[int, int], OpRow]  # memo of op_row by (id(op), memory level), see there
    fractions: dict[str, float]  # memo of matmul_fraction_for by rate family
    kv_bandwidth_fraction: float = 1.0  # share of `bytes_per_s` attention's KV reads reach
    residual_comm: bool = False  # all-reduces and pipeline sends carry 16-bit activations

    def matmul_fraction(self, family: str) -> float:
        """The attained fraction of the `family` peak for GEMMs (see `matmul_fraction_for`)."""
        found = self.fractions.get(family)
        if found is None:
            found = self.fractions[family] = matmul_fraction_for(self.hw, family)
        return found

    def plan(self, stored_format: str, act_format: str) -> RatePlan:
        key = (stored_format, act_format)
        found = self.plans.get(key)
        if found is None:
            found = self.plans[key] = matrix_rate(self.hw, stored_format, act_format)
        return found


@lru_cache(maxsize=256)
def machine(hw: Hardware) -> Machine:
    """The device's attained rates and efficiency, resolved once (cached per device)."""
    eff = efficiency_for(hw)
    return Machine(
        hw=hw,
        eff=eff,
        units=hw.compute_units,
        vector_flops_per_s=hw.vector_flops_per_s * eff.vector_fraction,
        bytes_per_s=tuple(
            lvl.bytes_per_s * bandwidth_fraction(eff, i) for i, lvl in enumerate(hw.memory)
        ),
        overhead_s=eff.launch_overhead_s,
        plans={},
        gemm_factors={},
        attention_factors={},
        rows={},
        fractions={},
    )


@lru_cache(maxsize=256)
def engine_machine(
    hw: Hardware,
    overhead_s: float,
    attention_fraction: float | None,
    kv_bandwidth: float,
    residual_comm: bool = False,
) -> Machine:
    """`machine(hw)` as an engine runs it: per-kernel cost `overhead_s`, attention at
    `attention_fraction` of the matrix peak (None: the device's), its KV reads at
    `kv_bandwidth` of the attained bandwidth, and with `residual_comm` all-reduces and pipeline
    sends of narrow activations carried at 16 bits (see `_engine.py`). The shape memos are
    shared with `machine(hw)`; the op-row memo is its own, since rows carry these effects."""
    base = machine(hw)
    eff = base.eff
    if attention_fraction is not None:
        eff = replace(eff, attention_fraction=attention_fraction)
    return Machine(
        hw=hw,
        eff=eff,
        units=base.units,
        vector_flops_per_s=base.vector_flops_per_s,
        bytes_per_s=base.bytes_per_s,
        overhead_s=overhead_s,
        plans=base.plans,
        gemm_factors=base.gemm_factors,
        attention_factors=base.attention_factors,
        rows={},
        fractions=base.fractions,
        kv_bandwidth_fraction=kv_bandwidth,
        residual_comm=residual_comm,
    )


def _link_factor(topology: Topology, group: int, max_devices: int) -> float:
    """Share of the device's summed link bandwidth one collective over `group` devices uses."""
    match topology:
        case Topology.SWITCH | Topology.PCIE | Topology.RING:
            return 1.0
        case Topology.MESH:
            # fully connected: a group of g uses g - 1 of the device's max_devices - 1 links
            return (group - 1) / max(1, max_devices - 1)
        case Topology.TORUS2D:
            return 0.5  # a ring along one dimension uses 2 of the 4 ports
        case Topology.TORUS3D:
            return 1.0 / 3.0  # 2 of the 6 ports
        case Topology.NONE:
            return 0.0


def comm_time_s(op: Op, hw: Hardware) -> float:
    """Communication time of one instance of `op` (0 for ops that do not communicate).

    With `B` = `op.comm_bytes`, `g` = `op.comm_group`, `bw` = link bandwidth × `comm_fraction` ×
    the topology's share, `L` = link latency:

    - all-reduce (ring: reduce-scatter then all-gather, Patarasuk & Yuan 2009): each device sends
      `2 (g − 1) / g · B` in `2 (g − 1)` steps: `2 (g − 1) / g · B / bw + 2 (g − 1) · L`.
    - all-to-all: each device sends `(g − 1) / g · B`, to all peers at once:
      `(g − 1) / g · B / bw + L`.
    - point-to-point: `B / bw + L`.

    Raises:
        ValueError: the device has no interconnect, or the group exceeds its scale-up domain
            (the scale-out network is not modelled).
    """
    return _comm_s(op, hw, efficiency_for(hw))


def _comm_s(op: Op, hw: Hardware, eff: Efficiency, scale: float = 1.0) -> float:
    """`comm_time_s` with the payload multiplied by `scale`."""
    transfer, latency = comm_parts(op, hw, eff, scale)
    return transfer + latency


def comm_parts(op: Op, hw: Hardware, eff: Efficiency, scale: float = 1.0) -> tuple[float, float]:
    """The two terms of `comm_time_s` (payload `scale`d): (bytes over bandwidth, link latency)."""
    g = op.comm_group
    if op.comm is CommKind.NONE or g <= 1 or op.comm_bytes <= 0:
        return 0.0, 0.0
    ic = hw.interconnect
    if ic is None or ic.topology is Topology.NONE:
        raise ValueError(
            f"{hw.name} has no interconnect: cannot run {op.name} ({op.comm}) over {g} devices"
        )
    if g > ic.max_devices:
        raise ValueError(
            f"{op.name}: {op.comm} over {g} devices exceeds {hw.name}'s scale-up domain of "
            f"{ic.max_devices} (interconnect.max_devices); the scale-out network is not modelled"
        )
    bw = ic.link_bytes_per_s * eff.comm_fraction
    bw *= _link_factor(ic.topology, max(g, 2), ic.max_devices)
    b, lat = op.comm_bytes * scale, ic.latency_s
    match op.comm:
        case CommKind.ALLREDUCE:
            return 2 * (g - 1) / g * b / bw, 2 * (g - 1) * lat
        case CommKind.ALLTOALL:
            return (g - 1) / g * b / bw, lat
        case CommKind.P2P:
            return b / bw, lat
    raise AssertionError(op.comm)


def _matrix_time(op: Op, mc: Machine) -> tuple[float, float, str, float]:
    """(matrix time, vector conversion time, rate key, shape factor) of a GEMM or attention."""
    eff = mc.eff
    if op.kind is _ATTENTION:
        stored_fmt, stored_bytes = op.kv_format, op.kv_bytes
        plan = mc.plans.get((stored_fmt, op.act_format)) or mc.plan(stored_fmt, op.act_format)
        akey = (op.m, op.n, op.batch)
        factor = mc.attention_factors.get(akey, 0.0)
        if not factor:
            factor = attention_tile_factor(op.m, op.n, op.batch, eff, mc.units)
            if len(mc.attention_factors) >= _MEMO_LIMIT:
                mc.attention_factors.clear()  # bounded: new scenarios bring new shapes
            mc.attention_factors[akey] = factor
        frac = eff.attention_fraction
        uses = -(-op.m // eff.attention_tile[0])
    else:
        stored_fmt, stored_bytes = op.weight_format, op.weight_bytes
        plan = mc.plans.get((stored_fmt, op.act_format)) or mc.plan(stored_fmt, op.act_format)
        gkey = (op.m, op.n, op.k, op.batch)
        found = mc.gemm_factors.get(gkey)
        if found is None:
            found = gemm_tile_factor(op.m, op.n, op.k, op.batch, eff, mc.units)
            if len(mc.gemm_factors) >= _MEMO_LIMIT:
                mc.gemm_factors.clear()  # bounded: new scenarios bring new shapes
            mc.gemm_factors[gkey] = found
        factor, rows = found
        frac = mc.fractions.get(plan.key) or mc.matmul_fraction(plan.key)
        uses = -(-op.m // rows)
    matrix_s = op.flops * factor / (plan.flops_per_s * frac)
    vector_flops = 0.0
    if plan.converts:
        elements = stored_bytes * 8 / bits_per_element(stored_fmt)
        vector_flops += elements * uses * eff.dequant_flops_per_element
    if plan.promote_group:
        # one multiply-add per output element per scale group along k
        vector_flops += 2.0 * op.batch * op.m * op.n * -(-op.k // plan.promote_group)
    return matrix_s, vector_flops / mc.vector_flops_per_s, plan.key, factor


def op_row(op: Op, mc: Machine, memory_level: int) -> OpRow:
    """The times of one instance of `op` as a row (see `op_time`).

    Memoized by the op object's identity, not its value: hashing an op's 18 fields costs about
    as much as pricing it, while the op graph's caches hand out the same op objects again (the
    blocks of a search's plans recur). The memo keeps each op it holds alive, so an id in it
    cannot be reused by another op; it is bounded like the shape memos.
    """
    key = (id(op), memory_level)
    found = mc.rows.get(key)
    if found is not None and found[0] is op:
        return found
    row = _op_row(op, mc, memory_level)
    if len(mc.rows) >= _MEMO_LIMIT:
        mc.rows.clear()  # bounded: new scenarios bring new ops
    mc.rows[key] = row
    return row


def _op_row(op: Op, mc: Machine, memory_level: int) -> OpRow:
    kind = op.kind
    convert_s, factor, key = 0.0, 1.0, "none"
    if kind is _MATMUL or kind is _ROUTER or kind is _ATTENTION:
        matrix_s, convert_s, key, factor = _matrix_time(op, mc)
        compute_s = matrix_s + convert_s
    elif kind is _ELEMENTWISE:
        compute_s, key = op.flops / mc.vector_flops_per_s, "vector"
    else:
        compute_s = op.flops / mc.vector_flops_per_s if op.flops else 0.0
    memory_s = (op.weight_bytes + op.act_bytes + op.kv_bytes) / mc.bytes_per_s[memory_level]
    if kind is _ATTENTION and mc.kv_bandwidth_fraction != 1.0:
        # the engine's attention kernel reads the KV cache below streaming bandwidth
        memory_s += (
            op.kv_bytes / mc.bytes_per_s[memory_level] * (1.0 / mc.kv_bandwidth_fraction - 1.0)
        )
    comm_s = 0.0
    if op.comm is not _NO_COMM:
        comm_s = _comm_s(op, mc.hw, mc.eff, _residual_scale(op) if mc.residual_comm else 1.0)
    work = compute_s if compute_s >= memory_s else memory_s  # max(), without the call
    if comm_s > work:
        work = comm_s
    return (op, compute_s, memory_s, comm_s, work + mc.overhead_s, key, factor, convert_s)


def _residual_scale(op: Op) -> float:
    """How much wider than the op's activation format a 16-bit residual payload is (>= 1).

    Engines reduce (and send between pipeline stages) the 16-bit residual stream whatever the
    activation format; all-to-alls (MoE dispatch) keep the op's own width.
    """
    if op.comm is CommKind.ALLTOALL:
        return 1.0
    width = bits_per_element(op.act_format)
    return 16.0 / width if width < 16 else 1.0


def bound_of(compute_s: float, memory_s: float, comm_s: float, overhead_s: float) -> Bound:
    """The largest of the three times, or the overhead when it exceeds them all."""
    work = max(compute_s, memory_s, comm_s)
    if overhead_s > work or work <= 0:
        return Bound.OVERHEAD
    if work == compute_s:
        return Bound.COMPUTE
    return Bound.MEMORY if work == memory_s else Bound.COMMUNICATION


def row_to_op_time(row: OpRow, overhead_s: float, memory_level: int) -> OpTime:
    """The `OpTime` of a row."""
    op, compute_s, memory_s, comm_s, time_s, key, factor, convert_s = row
    return OpTime(
        op=op,
        compute_s=compute_s,
        memory_s=memory_s,
        comm_s=comm_s,
        overhead_s=overhead_s,
        time_s=time_s,
        bound=bound_of(compute_s, memory_s, comm_s, overhead_s),
        rate_key=key,
        shape_factor=factor,
        convert_s=convert_s,
        memory_level=memory_level,
    )


def op_time(op: Op, hw: Hardware | Machine, *, memory_level: int = 0) -> OpTime:
    """Time one instance of `op` takes on `hw`, reading its bytes from `hw.memory[memory_level]`.

    `hw` may be a `Machine` (`machine(hw)`), which saves resolving the device on every call.

    Raises:
        ValueError: communication the device cannot do (see `comm_time_s`).
    """
    mc = hw if isinstance(hw, Machine) else machine(hw)
    return row_to_op_time(op_row(op, mc, memory_level), mc.overhead_s, memory_level)
