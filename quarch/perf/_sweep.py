"""Batch predictions: many scenarios at once, or one scenario over a sweep of hardware variants.

- `predict_many(spec, hw, scenarios)` predicts each scenario (`predict`) and returns the headline
  numbers as numpy arrays, one entry per scenario, with the `Prediction`s beside them.
- `sweep_hardware(spec, hw, scenario, matrix_scale=..., bandwidth_scale=..., ...)` prices one
  scenario on many variants of a device at once: every matrix peak times `matrix_scale`, the
  vector peak times `vector_scale`, every memory level's bandwidth times `bandwidth_scale` and
  the scale-up link's bandwidth times `link_scale` (each a number or an array; they broadcast,
  so `bandwidth_scale[:, None]` and `matrix_scale[None, :]` give a grid). The op graph is built
  once and each op's time is split into its parts (matrix-unit time, vector-unit time, memory
  time, link transfer time, link latency), which scale with those four numbers only; the
  variants are then priced together as `[variants, ops]` arrays, with `predict`'s formulas:
  `max(compute, memory, communication) + overhead` per op, the closed-form mean of
  `max(compute, memory)` over the decode steps (`affine_mean_of_max`), the separate
  activation-quantization kernels and host time of the engine, energy from busy time, cost from
  the price. Each variant equals `predict` on the scaled device (`Hardware` with those fields
  scaled) up to float rounding (the test holds them to 1e-12 relative).

What a scale leaves alone: the tile shapes and compute units (so the shape factors), the
launch overheads, link latency, power and memory capacities. Devices whose tile side is derived
from their peak (systolic devices without explicit tiles) would change tile shape with
`matrix_scale`, so sweeping it on them raises; scaling every memory level by the same factor
keeps the level the ops read from unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quarch.hardware import Hardware, load_hardware
from quarch.models import ModelSpec, load_model_spec
from quarch.perf._efficiency import DEFAULT_EFFICIENCY
from quarch.perf._engine import Engine, resolve_engine
from quarch.perf._graph import decode_ops, prefill_ops
from quarch.perf._memory import memory_per_device
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._plan import Plan, check_plan
from quarch.perf._predict import (
    Prediction,
    _machines,
    _Segment,
    _segments,
    _with_16bit_head,
    memory_level_for,
    predict,
)
from quarch.perf._roofline import (
    FAMILY_BITS,
    Machine,
    _matrix_time,
    _residual_scale,
    comm_parts,
)
from quarch.perf._scenario import Scenario, bits_per_element

Array = NDArray[np.float64]

_COLUMNS = (
    "ttft_s",
    "tpot_s",
    "e2e_latency_s",
    "throughput_tokens_per_s",
    "output_tokens_per_s",
    "energy_j",
    "energy_per_token_j",
)


@dataclass(frozen=True, kw_only=True)
class PredictionTable:
    """`predict_many`'s result: one entry per scenario (times in s, energy in J).

    Fields: the arrays of `_COLUMNS`, `memory_bytes`, `fits`, `cost_per_million_tokens_usd`
    (NaN without a price), and `predictions`, the `Prediction` of each scenario.
    """

    ttft_s: Array
    tpot_s: Array
    e2e_latency_s: Array
    throughput_tokens_per_s: Array
    output_tokens_per_s: Array
    energy_j: Array
    energy_per_token_j: Array
    memory_bytes: Array
    fits: NDArray[np.bool_]
    cost_per_million_tokens_usd: Array
    predictions: tuple[Prediction, ...]


def predict_many(
    spec: ModelSpec | str,
    hw: Hardware | str,
    scenarios: Sequence[Scenario],
    plan: Plan | None = None,
    *,
    engine: Engine | str | None = None,
) -> PredictionTable:
    """Predict every scenario (see `predict`) and gather the headline numbers as arrays.

    Raises:
        ValueError: as `predict`, naming the index of the scenario that failed.
    """
    if isinstance(spec, str):
        spec = load_model_spec(spec)
    if isinstance(hw, str):
        hw = load_hardware(hw)
    preds = []
    for i, sc in enumerate(scenarios):
        try:
            preds.append(predict(spec, hw, sc, plan, engine=engine))
        except ValueError as err:
            raise ValueError(f"scenarios[{i}]: {err}") from None
    cols: dict[str, Any] = {
        name: np.array([getattr(p, name) for p in preds], dtype=np.float64) for name in _COLUMNS
    }
    cost = [p.cost_per_million_tokens_usd for p in preds]
    return PredictionTable(
        **cols,
        memory_bytes=np.array([p.memory.total_bytes for p in preds], dtype=np.float64),
        fits=np.array([p.fits for p in preds], dtype=np.bool_),
        cost_per_million_tokens_usd=np.array(
            [np.nan if c is None else c for c in cost], dtype=np.float64
        ),
        predictions=tuple(preds),
    )


@dataclass(frozen=True, kw_only=True)
class HardwareSweep:
    """`sweep_hardware`'s result: arrays of the broadcast shape of the four scales.

    Fields: the scales (broadcast), the arrays of `_COLUMNS` and `cost_per_million_tokens_usd`
    (NaN without a price); `memory_bytes` and `fits` are the same for every variant.
    """

    matrix_scale: Array
    vector_scale: Array
    bandwidth_scale: Array
    link_scale: Array
    ttft_s: Array
    tpot_s: Array
    e2e_latency_s: Array
    throughput_tokens_per_s: Array
    output_tokens_per_s: Array
    energy_j: Array
    energy_per_token_j: Array
    cost_per_million_tokens_usd: Array
    memory_bytes: float
    fits: bool


@dataclass(frozen=True)
class _Parts:
    """Per-op time parts on the unscaled device, `[ops]` arrays (see the module doc)."""

    matrix: Array
    vector: Array
    memory: Array
    transfer: Array
    latency: Array

    def times(self, s: _Scales) -> tuple[Array, Array, Array]:
        """`[variants, ops]` compute, memory and communication times on the scaled devices."""
        compute = self.matrix / s.matrix + self.vector / s.vector
        return compute, self.memory / s.bandwidth, self.transfer / s.link + self.latency


@dataclass(frozen=True)
class _Scales:
    """The four scales as `[variants, 1]` columns."""

    matrix: Array
    vector: Array
    bandwidth: Array
    link: Array


def sweep_hardware(
    spec: ModelSpec | str,
    hw: Hardware | str,
    scenario: Scenario,
    plan: Plan | None = None,
    *,
    engine: Engine | str | None = None,
    matrix_scale: ArrayLike = 1.0,
    vector_scale: ArrayLike = 1.0,
    bandwidth_scale: ArrayLike = 1.0,
    link_scale: ArrayLike = 1.0,
) -> HardwareSweep:
    """Predict `scenario` on variants of `hw` with scaled peaks and bandwidths (module doc).

    Raises:
        ValueError: a scale that is not positive and finite, `matrix_scale` on a device whose
            tiles follow its peak, or anything `predict` raises.
    """
    if isinstance(spec, str):
        spec = load_model_spec(spec)
    if isinstance(hw, str):
        hw = load_hardware(hw)
    raw = np.broadcast_arrays(
        *(
            _positive(name, value)
            for name, value in (
                ("matrix_scale", matrix_scale),
                ("vector_scale", vector_scale),
                ("bandwidth_scale", bandwidth_scale),
                ("link_scale", link_scale),
            )
        )
    )
    shape = raw[0].shape
    if np.any(raw[0] != 1.0) and not _explicit_tiles(hw):
        raise ValueError(
            f"{hw.name} derives its tile side from its matrix peak; sweep matrix_scale on it "
            "by predicting scaled Hardware copies instead"
        )
    scales = _Scales(*(a.reshape(-1, 1).astype(np.float64) for a in raw))
    out = _sweep(spec, hw, scenario, plan, resolve_engine(engine), scales)
    cols = {name: value.reshape(shape) for name, value in out.items()}
    memory = memory_per_device(spec, _head(scenario, engine), plan)
    return HardwareSweep(
        matrix_scale=raw[0].astype(np.float64),
        vector_scale=raw[1].astype(np.float64),
        bandwidth_scale=raw[2].astype(np.float64),
        link_scale=raw[3].astype(np.float64),
        memory_bytes=memory.total_bytes,
        fits=memory.total_bytes <= hw.memory_capacity_bytes,
        **cols,
    )


def _positive(name: str, value: ArrayLike) -> Array:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive finite numbers, got {value!r}")
    return arr


def _explicit_tiles(hw: Hardware) -> bool:
    """Whether `hw`'s GEMM tiles are given (not derived from its matrix peak)."""
    return bool(dict(hw.efficiency).get("tiles") or DEFAULT_EFFICIENCY[hw.device_class].tiles)


def _head(scenario: Scenario, engine: Engine | str | None) -> Scenario:
    return _with_16bit_head(scenario) if resolve_engine(engine).high_precision_head else scenario


def _sweep(
    spec: ModelSpec,
    hw: Hardware,
    scenario: Scenario,
    plan: Plan | None,
    eng: Engine,
    s: _Scales,
) -> dict[str, Array]:
    """The columns of a sweep as `[variants]` arrays (predict's steps, vectorised)."""
    if eng.high_precision_head:
        scenario = _with_16bit_head(scenario)
    check_plan(plan, spec.num_layers)
    level = memory_level_for(hw, memory_per_device(spec, scenario, plan).total_bytes)
    mc_pre, mc = _machines(hw, eng, scenario)
    pre_ops = prefill_ops(spec, scenario, plan)
    ttft, pre_busy = _pass(pre_ops, _parts(pre_ops, mc_pre, level), mc_pre.overhead_s, s)
    p, steps = scenario.prompt_len, scenario.output_len - 1
    first = decode_ops(spec, scenario, p, plan)
    if steps > 1:
        last = decode_ops(spec, scenario, p + steps - 1, plan)
        segments = _segments(spec, scenario, plan, p, p + steps - 1, first, last)
    else:
        segments = [(first, first, 1)]
    tpot, dec_busy = _decode(segments, mc, level, s)
    if eng.act_quant_kernel:
        q_pre, q_dec = _act_quant(pre_ops, mc_pre, level, s), _act_quant(first, mc, level, s)
        ttft, pre_busy = ttft + q_pre, pre_busy + q_pre
        tpot, dec_busy = tpot + q_dec, dec_busy + q_dec
    ttft = ttft + eng.step_overhead_s
    tpot = tpot + eng.step_overhead_s
    e2e = ttft + steps * tpot
    tokens = scenario.batch * (p + scenario.output_len)
    outputs = scenario.batch * scenario.output_len
    devices, active = scenario.num_devices, scenario.tp * scenario.dp
    busy = pre_busy + steps * dec_busy
    energy = hw.idle_w * devices * e2e + (hw.tdp_w - hw.idle_w) * active * busy
    price = hw.price_per_hour_usd
    if price is None:
        cost = np.full_like(e2e, np.nan)
    else:
        cost = price * devices * e2e / 3600.0 / tokens * 1e6
    return {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_latency_s": e2e,
        "throughput_tokens_per_s": tokens / e2e,
        "output_tokens_per_s": outputs / e2e,
        "energy_j": energy,
        "energy_per_token_j": energy / tokens,
        "cost_per_million_tokens_usd": cost,
    }


def _parts(ops: Sequence[Op], mc: Machine, level: int) -> _Parts:
    """Each op's time parts on the unscaled device (as `_op_row` computes them)."""
    cols = np.array([_op_parts(op, mc, level) for op in ops], dtype=np.float64).reshape(-1, 5)
    return _Parts(*(cols[:, j] for j in range(5)))


def _op_parts(op: Op, mc: Machine, level: int) -> tuple[float, float, float, float, float]:
    kind = op.kind
    matrix = vector = 0.0
    if kind is OpKind.MATMUL or kind is OpKind.ROUTER or kind is OpKind.ATTENTION:
        matrix, vector, _key, _factor = _matrix_time(op, mc)
    elif kind is OpKind.ELEMENTWISE or op.flops:
        vector = op.flops / mc.vector_flops_per_s
    bw = mc.bytes_per_s[level]
    memory = (op.weight_bytes + op.act_bytes + op.kv_bytes) / bw
    if kind is OpKind.ATTENTION and mc.kv_bandwidth_fraction != 1.0:
        memory += op.kv_bytes / bw * (1.0 / mc.kv_bandwidth_fraction - 1.0)
    transfer = latency = 0.0
    if op.comm is not CommKind.NONE:
        scale = _residual_scale(op) if mc.residual_comm else 1.0
        transfer, latency = comm_parts(op, mc.hw, mc.eff, scale)
    return matrix, vector, memory, transfer, latency


def _pass(ops: Sequence[Op], parts: _Parts, overhead_s: float, s: _Scales) -> tuple[Array, Array]:
    """(time, busy time) of one pass on every variant (`_totals`, vectorised)."""
    compute, memory, comm = parts.times(s)
    time = np.maximum(np.maximum(compute, memory), comm) + overhead_s
    return _sum_time_busy(ops, compute, memory, time, overhead_s)


def _sum_time_busy(
    ops: Sequence[Op], compute: Array, memory: Array, time: Array, overhead_s: float
) -> tuple[Array, Array]:
    counts = np.array([op.count for op in ops], dtype=np.float64)
    busy = np.minimum(np.where(compute > memory, compute, memory), time - overhead_s)
    return time @ counts, busy @ counts


def _decode(segments: list[_Segment], mc: Machine, level: int, s: _Scales) -> tuple[Array, Array]:
    """(time, busy time) of the mean decode step on every variant (`_decode_rows`)."""
    first, last = segments[0][0], segments[-1][1]
    single = len(segments) == 1
    compute, memory, comm = _parts(first, mc, level).times(s)
    work = np.maximum(np.maximum(compute, memory), comm)
    steps = sum(points for _, _, points in segments)
    for i, op in enumerate(first):
        other = last[i]
        if (op is other or op == other) and (
            single or all(seg[0][i] == seg[1][i] for seg in segments[1:])
        ):
            continue  # the same in every graph: not KV-dependent
        sums = [np.zeros(len(s.matrix)) for _ in range(4)]  # compute, memory, comm, work
        for lo_ops, hi_ops, points in segments:
            (c0, m0, x0), (c1, m1, x1) = (
                tuple(a[:, 0] for a in _parts([o], mc, level).times(s))
                for o in (lo_ops[i], hi_ops[i])
            )
            x = (x0 + x1) / 2
            w = np.maximum(affine_mean_of_max_v(c0, c1, m0, m1, points), x)
            for j, value in enumerate(((c0 + c1) / 2, (m0 + m1) / 2, x, w)):
                sums[j] += value * points
        compute[:, i], memory[:, i], comm[:, i], work[:, i] = (v / steps for v in sums)
    return _sum_time_busy(first, compute, memory, work + mc.overhead_s, mc.overhead_s)


def affine_mean_of_max_v(a0: Array, a1: Array, b0: Array, b1: Array, steps: int) -> Array:
    """`affine_mean_of_max` (`_predict.py`) elementwise over arrays of end values."""
    if steps <= 1:
        return np.maximum(a0, b0)
    d0, d1 = a0 - b0, a1 - b1
    same = (d0 >= 0) == (d1 >= 0)
    out = (np.maximum(a0, b0) + np.maximum(a1, b1)) / 2
    if np.all(same):
        return out
    last = steps - 1
    first0, first1 = np.where(d0 >= 0, a0, b0), np.where(d0 >= 0, a1, b1)
    second0, second1 = np.where(d0 >= 0, b0, a0), np.where(d0 >= 0, b1, a1)

    def at(f0: Array, f1: Array, i: Array | float) -> Array:
        return f0 + (f1 - f0) * i / last

    with np.errstate(divide="ignore", invalid="ignore"):  # entries where `same` are not used
        split = np.trunc(d0 / (d0 - d1) * last)
        total = (split + 1) * (at(first0, first1, 0.0) + at(first0, first1, split)) / 2
        total = (
            total
            + (last - split)
            * (at(second0, second1, split + 1) + at(second0, second1, float(last)))
            / 2
        )
    return np.where(same, out, total / steps)


def _act_quant(ops: Sequence[Op], mc: Machine, level: int, s: _Scales) -> Array:
    """`_act_quant_s` on every variant: the kernels' bytes scale with the bandwidth."""
    moved_s = overhead_s = 0.0
    bw = mc.bytes_per_s[level]
    for op in ops:
        if op.kind is not OpKind.MATMUL or op.k <= 0:
            continue
        if FAMILY_BITS.get(mc.plan(op.weight_format, op.act_format).key, 16) >= 16:
            continue
        moved = op.m * op.k * op.batch * (2.0 + bits_per_element(op.act_format) / 8)
        moved_s += op.count * (moved / bw)
        overhead_s += op.count * mc.overhead_s
    return moved_s / s.bandwidth[:, 0] + overhead_s


def scaled_hardware(
    hw: Hardware,
    *,
    matrix_scale: float = 1.0,
    vector_scale: float = 1.0,
    bandwidth_scale: float = 1.0,
    link_scale: float = 1.0,
) -> Hardware:
    """`hw` with its peaks and bandwidths scaled as one `sweep_hardware` variant is (the
    reference the sweep is checked against)."""
    ic = hw.interconnect
    return replace(
        hw,
        matrix_flops_per_s={k: v * matrix_scale for k, v in hw.matrix_flops_per_s.items()},
        vector_flops_per_s=hw.vector_flops_per_s * vector_scale,
        memory=tuple(replace(m, bytes_per_s=m.bytes_per_s * bandwidth_scale) for m in hw.memory),
        interconnect=None
        if ic is None
        else replace(ic, link_bytes_per_s=ic.link_bytes_per_s * link_scale),
    )
