"""Predict serving a model on a device: latency, throughput, memory, energy, cost, and why.

`predict(spec, hw, scenario, plan)` prices the op graph of `_graph.py` with the op times of
`_roofline.py`. A `Plan` (`_plan.py`) gives each layer its own formats and method overheads: the
graph then has one block of ops per set of equally planned layers of a layer group, so a mixed
design is priced in the same single pass as a uniform one (no plan: the scenario's formats in
every layer).

- **TTFT** is the prefill of the whole batch's prompts (it also yields the first token).
- **TPOT** is the mean over the `output_len − 1` decode steps; step `j` (1-based) processes one
  token per sequence over `prompt_len + j − 1` cached tokens. Only the attention ops depend on
  the KV length, and their FLOPs, bytes and key count are affine in it (piecewise, with a sliding
  window). The graph is built at the first and last step's KV length and checked at the middle
  step; a run that is not affine is halved until every run is (`_segments`). Within a run each
  attention op's compute and memory times are taken as affine (memory time exactly so; compute
  time up to the key-axis tile padding, a staircase of one tile or one split-KV round), so the
  mean of `max(compute, memory)` over the integer steps is summed exactly in closed form,
  splitting at the step where the two cross. A few graph builds replace `output_len` of them.
  With `output_len = 1` there are no decode steps; TPOT is then the one step at `prompt_len`
  cached tokens (reported, not part of the latency).
- **End-to-end latency** = TTFT + (output_len − 1) × TPOT. Throughput counts all the batch's
  tokens (prompt + output) over that latency; the batch is one micro-batch, so with pipeline
  parallelism the stages take turns (no micro-batch overlap is modelled).
- **Memory** per device comes from `memory_per_device` (weights with scales, KV cache at full
  length, peak activations) and fits when it is at most the device memory's capacity. The
  bytes of every op are read from the fastest memory level that holds all of them (weights + KV
  + activations): device memory on GPUs, on-chip SRAM for designs that hold the whole model;
  `memory_level=` forces a level instead.
- **Energy**: each device draws `idle_w` always and `tdp_w − idle_w` more while its busiest unit
  (matrix/vector or memory) works: an op instance costs `idle_w · time + (tdp_w − idle_w) ·
  max(compute, memory)`. Devices of the other pipeline stages idle meanwhile. Energy per token is
  the whole request's energy over its tokens.
- **Cost** per million tokens = price per device-hour × devices × latency / tokens, when the
  device has a price.
- **Band**: multipliers on the predicted times that held the middle 80 % of comparable public
  measurements (`band` for TTFT, TPOT and latency, `throughput_band` for throughputs), from the
  published set's fit residuals per device architecture and metric family; a device or engine
  with no published rows gets the widened envelope band, and `band_note` says which band it is
  and why (see `_bands.py`).
- **Engine** (`engine=`, see `_engine.py`; default `ideal`, which adds nothing): the scenario's
  LM head and embedding become 16-bit where the engine keeps them so; prefill and decode ops pay
  the engine's per-kernel cost (graph replay or eager launch) and its attention kernel's
  efficiency, and all-reduces carry the 16-bit residual stream where the engine reduces it;
  TTFT adds one per-step host cost and TPOT one per step; with activations narrower than 16
  bits, an engine that quantizes them in a kernel of its own adds, per quantized GEMM, a kernel
  reading the 16-bit input and writing the narrow one (its time is in TTFT and TPOT, not in the
  per-op breakdown, and counts as busy time for energy).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cached_property

from quarch.hardware import Hardware, load_hardware
from quarch.models import ModelSpec, load_model_spec
from quarch.perf._bands import band_for
from quarch.perf._engine import HIGH_PRECISION_FORMAT, Engine, resolve_engine
from quarch.perf._graph import decode_ops, prefill_ops
from quarch.perf._memory import MemoryBreakdown, memory_per_device
from quarch.perf._ops import Op, OpKind
from quarch.perf._plan import Plan, check_plan
from quarch.perf._roofline import (
    FAMILY_BITS,
    Bound,
    Machine,
    OpRow,
    OpTime,
    engine_machine,
    machine,
    op_row,
    row_to_op_time,
)
from quarch.perf._scenario import Scenario, bits_per_element

_Shown = tuple[tuple[int, tuple[tuple[Op, float], ...]], ...]
"""For each KV-dependent decode op (by index): its graphs' ops and weights, to average for show."""


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """What serving `scenario` on `num_devices` devices costs (times in s, energy in J).

    Fields:
        model, hardware: names.
        scenario: what was predicted.
        num_devices: `tp × pp × dp`.
        ttft_s: time to first token (prefill).
        tpot_s: mean time per output token over the decode steps.
        e2e_latency_s: `ttft_s + (output_len − 1) · tpot_s`.
        throughput_tokens_per_s: the batch's prompt + output tokens over `e2e_latency_s`.
        output_tokens_per_s: the batch's output tokens over `e2e_latency_s`.
        decode_tokens_per_s: tokens per second while decoding, `batch / tpot_s`.
        tokens_per_s_per_device: `throughput_tokens_per_s / num_devices`.
        memory: bytes on the most loaded device.
        memory_capacity_bytes: the device memory's capacity.
        fits: whether `memory.total_bytes ≤ memory_capacity_bytes`.
        memory_level: index of `hw.memory` the ops read from.
        energy_j: energy of the whole request on all devices.
        energy_per_token_j: `energy_j` over prompt + output tokens.
        energy_per_output_token_j: `energy_j` over output tokens.
        cost_per_million_tokens_usd: per million prompt + output tokens, or None without price.
        band: `(low, high)` multipliers on TTFT, TPOT and latency bracketing measured times
            (see `_bands.py`).
        overhead_s: the per-kernel overhead of decode ops.
        plan: the per-layer formats and overheads predicted (None: the scenario's everywhere).
        engine: the serving engine's profile name (`ideal`: nothing added).
        prefill_overhead_s: the per-kernel overhead of prefill ops (None: `overhead_s`).
        step_overhead_s: the engine's host time per forward pass, in TTFT and in every TPOT.
        act_quant_s: (prefill, one decode step) time of separate activation-quantization kernels.
        throughput_band: `(low, high)` time multipliers for throughputs: a measured throughput
            lay in `[throughput / high, throughput / low]`.
        band_note: which band this is and why (validated class, or the widened envelope).

    Properties `prefill` and `decode` give the per-op breakdown (`OpTime`s; decode's attention
    ops averaged over the steps, so they sum to `tpot_s`), built on first access.
    """

    model: str
    hardware: str
    scenario: Scenario
    num_devices: int
    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    throughput_tokens_per_s: float
    output_tokens_per_s: float
    decode_tokens_per_s: float
    tokens_per_s_per_device: float
    memory: MemoryBreakdown
    memory_capacity_bytes: float
    fits: bool
    memory_level: int
    energy_j: float
    energy_per_token_j: float
    energy_per_output_token_j: float
    cost_per_million_tokens_usd: float | None
    band: tuple[float, float]
    overhead_s: float
    prefill_rows: tuple[OpRow, ...] = field(repr=False, compare=False)
    decode_rows: tuple[OpRow, ...] = field(repr=False, compare=False)
    decode_shown: _Shown = field(default=(), repr=False, compare=False)
    plan: Plan | None = field(default=None, repr=False)
    engine: str = "ideal"
    prefill_overhead_s: float | None = None
    step_overhead_s: float = 0.0
    act_quant_s: tuple[float, float] = (0.0, 0.0)
    throughput_band: tuple[float, float] = (1.0, 1.0)
    band_note: str = ""

    @property
    def tpot_continuous_s(self) -> float:
        """Mean time per output token when the batch is served by continuous batching as a
        closed loop of clients (each starts a new request when its last one ends) and the
        engine mixes new requests' prefills into the running decode steps.

        In steady state, over one request's `output_len` decode steps the other `seqs − 1`
        clients of its replica each start one new request, so every step also carries
        `(seqs − 1) / output_len` prompts' prefill, each costing the prefill's time over its
        `seqs` prompts (TTFT less the per-step host cost, which the shared step pays once).
        This is the stall that piggybacked prefill chunks put on decodes (Agrawal et al.,
        "Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve", OSDI 2024,
        https://arxiv.org/abs/2403.02310, §2.3 and §4); vLLM, SGLang and TensorRT-LLM schedule
        this way. With one sequence per replica or one output token it equals `tpot_s`.
        """
        seqs, out = self.scenario.seqs_per_replica, self.scenario.output_len
        if seqs <= 1 or out <= 1:
            return self.tpot_s
        per_prompt = (self.ttft_s - self.step_overhead_s) / seqs
        return self.tpot_s + (seqs - 1) / out * per_prompt

    @cached_property
    def prefill(self) -> tuple[OpTime, ...]:
        """The prefill's op times, in execution order."""
        ovh = self.overhead_s if self.prefill_overhead_s is None else self.prefill_overhead_s
        return tuple(row_to_op_time(r, ovh, self.memory_level) for r in self.prefill_rows)

    @cached_property
    def decode(self) -> tuple[OpTime, ...]:
        """One mean decode step's op times (attention averaged over the steps)."""
        times = [row_to_op_time(r, self.overhead_s, self.memory_level) for r in self.decode_rows]
        for i, ops in self.decode_shown:
            times[i] = replace(times[i], op=_weighted_op(list(ops)))
        return tuple(times)

    def work(self, phase: str) -> tuple[float, float]:
        """(FLOPs, memory bytes) of the `prefill` or of one mean `decode` step, all ops, per
        device (counts included; decode's attention averaged over the steps)."""
        shown: _Shown = ()
        if phase == "prefill":
            rows = self.prefill_rows
        elif phase == "decode":
            rows, shown = self.decode_rows, self.decode_shown
        else:
            raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        flops = moved = 0.0
        for op, *_ in rows:
            flops += op.count * op.flops
            moved += op.count * (op.weight_bytes + op.act_bytes + op.kv_bytes)
        for i, weighted in shown:  # the mean over the steps in place of the first step's op
            op = rows[i][0]
            total = sum(w for _, w in weighted)
            flops += op.count * (sum(o.flops * w for o, w in weighted) / total - op.flops)
            mean = sum((o.weight_bytes + o.act_bytes + o.kv_bytes) * w for o, w in weighted)
            moved += op.count * (mean / total - (op.weight_bytes + op.act_bytes + op.kv_bytes))
        return flops, moved

    @property
    def prefill_bound(self) -> Bound:
        """The bound holding the largest share of the prefill's time."""
        return _dominant(self.prefill)

    @property
    def decode_bound(self) -> Bound:
        """The bound holding the largest share of a decode step's time."""
        return _dominant(self.decode)

    def why(self) -> str:
        """Two lines: what bounds prefill and decode, and the op that costs the most in each."""
        lines = []
        for phase, ops in (("prefill", self.prefill), ("decode", self.decode)):
            shares = _shares(ops)
            bound = max(shares, key=lambda b: shares[b])
            total = sum(shares.values()) or 1.0
            top = max(ops, key=lambda t: t.total_s)
            lines.append(
                f"{phase} is {bound.value}-bound ({shares[bound] / total:.0%} of its time); "
                f"largest op {top.op.name} ({top.total_s / total:.0%}): {top.why}"
            )
        return "\n".join(lines)


def _shares(ops: tuple[OpTime, ...]) -> dict[Bound, float]:
    shares: dict[Bound, float] = defaultdict(float)
    for t in ops:
        shares[t.bound] += t.total_s
    return shares


def _dominant(ops: tuple[OpTime, ...]) -> Bound:
    shares = _shares(ops)
    return max(shares, key=lambda b: shares[b])


def memory_level_for(hw: Hardware, resident_bytes: float) -> int:
    """The fastest memory level whose capacity holds `resident_bytes` (0 when none does)."""
    best = 0
    for i, level in enumerate(hw.memory):
        fits = level.capacity_bytes >= resident_bytes
        if fits and level.bytes_per_s > hw.memory[best].bytes_per_s:
            best = i
    return best


def affine_mean_of_max(a0: float, a1: float, b0: float, b1: float, steps: int) -> float:
    """Mean of max(a(x), b(x)) over `steps` equally spaced points; a, b affine, given at the ends.

    Exact: the points where a ≥ b form one contiguous run (a − b is affine), and an affine
    function's sum over equally spaced points is the count times the mean of its end values.
    """
    if steps <= 1:
        return max(a0, b0)
    d0, d1 = a0 - b0, a1 - b1
    if (d0 >= 0) == (d1 >= 0):
        return (max(a0, b0) + max(a1, b1)) / 2
    last = steps - 1
    split = int(d0 / (d0 - d1) * last)  # points 0..split lie on the first point's side

    def at(f0: float, f1: float, i: int) -> float:
        return f0 + (f1 - f0) * i / last

    first, second = ((a0, a1), (b0, b1)) if d0 >= 0 else ((b0, b1), (a0, a1))
    total = (split + 1) * (at(*first, 0) + at(*first, split)) / 2
    total += (last - split) * (at(*second, split + 1) + at(*second, last)) / 2
    return total / steps


_Segment = tuple[tuple[Op, ...], tuple[Op, ...], int]
"""Decode graphs at the first and last step of a run of steps, and the number of steps."""

_AFFINE_FIELDS = ("flops", "kv_bytes", "act_bytes", "weight_bytes", "n")


def _is_affine(lo: tuple[Op, ...], mid: tuple[Op, ...], hi: tuple[Op, ...], t: float) -> bool:
    """Whether every op of `mid` lies at fraction `t` on the line from `lo` to `hi`."""
    for a, m, b in zip(lo, mid, hi, strict=True):
        if a is b:
            continue
        for name in _AFFINE_FIELDS:
            va, vm, vb = getattr(a, name), getattr(m, name), getattr(b, name)
            expect = va + (vb - va) * t
            if abs(vm - expect) > 1e-9 * max(abs(va), abs(vb)) + 1e-6:
                return False
    return True


def _segments(
    spec: ModelSpec,
    scenario: Scenario,
    plan: Plan | None,
    a: int,
    b: int,
    lo: tuple[Op, ...],
    hi: tuple[Op, ...],
) -> list[_Segment]:
    """Split the decode steps with KV lengths `a..b` into runs whose graphs are affine in it.

    A run is accepted when the graph at its middle step lies on the line between its ends;
    otherwise it is halved (a sliding window makes attention stop growing at the window). Each
    halving costs two graph builds, and a kink is found in O(log steps) of them.
    """
    points = b - a + 1
    if points <= 2 or spec.sliding_window is None:
        # without a window every attention op's fields are affine in the KV length (keys
        # attended, pairs, KV bytes grow by a fixed amount per step; see `_attention.py`), so
        # the middle graph would lie on the line: it is not built
        return [(lo, hi, points)]
    m = (a + b) // 2
    mid = decode_ops(spec, scenario, m, plan)
    if _is_affine(lo, mid, hi, (m - a) / (b - a)):
        return [(lo, hi, points)]
    after = decode_ops(spec, scenario, m + 1, plan)
    return _segments(spec, scenario, plan, a, m, lo, mid) + _segments(
        spec, scenario, plan, m + 1, b, after, hi
    )


def _weighted_op(ops: list[tuple[Op, float]]) -> Op:
    """An op whose KV-dependent fields are the weighted means of `ops` (for display)."""
    base = ops[0][0]
    total = sum(w for _, w in ops)

    def mean(name: str) -> float:
        return sum(getattr(op, name) * w for op, w in ops) / total

    return replace(
        base,
        n=max(1, round(mean("n"))),
        flops=mean("flops"),
        kv_bytes=mean("kv_bytes"),
        act_bytes=mean("act_bytes"),
        weight_bytes=mean("weight_bytes"),
    )


def _decode_rows(
    segments: list[_Segment], mc: Machine, level: int
) -> tuple[tuple[OpRow, ...], _Shown]:
    """Rows of the mean decode step over all steps of `segments` (see the module doc).

    A KV-dependent op's row carries its first graph's op (same name and count); the op at the
    mean KV length is only built when the breakdown is shown.
    """
    steps = sum(points for _, _, points in segments)
    out: list[OpRow] = []
    shown_all: list[tuple[int, tuple[tuple[Op, float], ...]]] = []
    first, last = segments[0][0], segments[-1][1]
    single = len(segments) == 1
    for i, op in enumerate(first):
        other = last[i]
        if (op is other or op == other) and (
            single or all(seg[0][i] == seg[1][i] for seg in segments[1:])
        ):  # the same in every graph: not KV-dependent
            out.append(op_row(op, mc, level))
            continue
        sums = [0.0] * 6  # compute, memory, comm, work, factor, convert: weighted by points
        shown: list[tuple[Op, float]] = []
        for lo_ops, hi_ops, points in segments:
            r0, r1 = op_row(lo_ops[i], mc, level), op_row(hi_ops[i], mc, level)
            comm = (r0[3] + r1[3]) / 2
            work = max(affine_mean_of_max(r0[1], r1[1], r0[2], r1[2], points), comm)
            compute, memory = (r0[1] + r1[1]) / 2, (r0[2] + r1[2]) / 2
            parts = (compute, memory, comm, work, (r0[6] + r1[6]) / 2, (r0[7] + r1[7]) / 2)
            for j, value in enumerate(parts):
                sums[j] += value * points
            shown += [(lo_ops[i], points / 2), (hi_ops[i], points / 2)]
        c, m, comm, work, factor, convert = (v / steps for v in sums)
        out.append((op, c, m, comm, work + mc.overhead_s, r0[5], factor, convert))
        shown_all.append((i, tuple(shown)))
    return tuple(out), tuple(shown_all)


def _totals(rows: tuple[OpRow, ...], overhead_s: float) -> tuple[float, float]:
    """(time, busy time) of one pass: sums over ops of count × time and count × busy time.

    An op's busy time is how long its busiest unit (matrix/vector or memory) works: its time less
    the overhead, or less when communication is the longest part.
    """
    time = busy = 0.0
    for op, compute_s, memory_s, _comm, time_s, _key, _factor, _convert in rows:
        count = op.count
        time += count * time_s
        busy_s = compute_s if compute_s > memory_s else memory_s
        idle = time_s - overhead_s
        busy += count * (busy_s if busy_s < idle else idle)
    return time, busy


def predict(
    spec: ModelSpec | str,
    hw: Hardware | str,
    scenario: Scenario,
    plan: Plan | None = None,
    *,
    memory_level: int | None = None,
    engine: Engine | str | None = None,
) -> Prediction:
    """Predict serving `scenario` of model `spec` on device `hw` (see the module doc).

    Args:
        spec: a `ModelSpec` or a catalog model name (`llama-3.1-70b`).
        hw: a `Hardware` or a catalog device name / YAML path (`h100-sxm`).
        scenario: batch, lengths, parallelism and formats.
        plan: per-layer formats and method overheads (a mixed design); None prices the
            scenario's formats in every layer. Priced in one call: one block of ops per set of
            equally planned layers, memory summed layer by layer on each pipeline stage.
        memory_level: index of `hw.memory` every op reads from; None picks the fastest level
            that holds the device's bytes (see the module doc).
        engine: the serving engine (an `Engine` or a profile name, see `_engine.py`); None is
            `ideal`, which adds nothing to the kernels.

    Raises:
        ValueError: a scenario that does not fit the model, communication the device cannot
            do (no interconnect, a group larger than its scale-up domain), a plan of another
            layer count, a memory level `hw` does not have, or an unknown engine.
        TypeError: a plan that is not a `Plan`.
    """
    eng = resolve_engine(engine)
    if eng.high_precision_head:
        scenario = _with_16bit_head(scenario)
    if isinstance(spec, str):
        spec = load_model_spec(spec)
    if isinstance(hw, str):
        hw = load_hardware(hw)
    check_plan(plan, spec.num_layers)
    memory = memory_per_device(spec, scenario, plan)
    if memory_level is None:
        level = memory_level_for(hw, memory.total_bytes)
    else:
        level = _check_level(hw, memory_level)
    mc_pre, mc = _machines(hw, eng, scenario)
    prefill = tuple([op_row(op, mc_pre, level) for op in prefill_ops(spec, scenario, plan)])
    p, steps = scenario.prompt_len, scenario.output_len - 1
    first = decode_ops(spec, scenario, p, plan)
    if steps > 1:
        last = decode_ops(spec, scenario, p + steps - 1, plan)
        segments = _segments(spec, scenario, plan, p, p + steps - 1, first, last)
    else:
        segments = [(first, first, 1)]
    decode, shown = _decode_rows(segments, mc, level)
    ovh = mc.overhead_s
    ttft, prefill_busy = _totals(prefill, mc_pre.overhead_s)
    tpot, decode_busy = _totals(decode, ovh)
    quant = (0.0, 0.0)
    if eng.act_quant_kernel:
        quant = (_act_quant_s(prefill, mc_pre, level), _act_quant_s(decode, mc, level))
        ttft, tpot = ttft + quant[0], tpot + quant[1]
        prefill_busy += quant[0]
        decode_busy += quant[1]
    ttft += eng.step_overhead_s
    tpot += eng.step_overhead_s
    e2e = ttft + steps * tpot
    tokens = scenario.batch * (p + scenario.output_len)
    outputs = scenario.batch * scenario.output_len
    devices = scenario.num_devices
    # every device idles at idle_w throughout; the tp × dp devices of the running stage add
    # (tdp_w − idle_w) while their busiest unit works
    active = scenario.tp * scenario.dp
    busy = prefill_busy + steps * decode_busy
    energy = hw.idle_w * devices * e2e + (hw.tdp_w - hw.idle_w) * active * busy
    price = hw.price_per_hour_usd
    latency_band = band_for(hw, eng.name, "latency")
    rate_band = band_for(hw, eng.name, "throughput")
    return Prediction(
        model=spec.name,
        hardware=hw.name,
        scenario=scenario,
        num_devices=devices,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_latency_s=e2e,
        throughput_tokens_per_s=tokens / e2e,
        output_tokens_per_s=outputs / e2e,
        decode_tokens_per_s=scenario.batch / tpot,
        tokens_per_s_per_device=tokens / e2e / devices,
        memory=memory,
        memory_capacity_bytes=hw.memory_capacity_bytes,
        fits=memory.total_bytes <= hw.memory_capacity_bytes,
        memory_level=level,
        energy_j=energy,
        energy_per_token_j=energy / tokens,
        energy_per_output_token_j=energy / outputs,
        cost_per_million_tokens_usd=None
        if price is None
        else price * devices * e2e / 3600.0 / tokens * 1e6,
        band=(latency_band.low, latency_band.high),
        overhead_s=ovh,
        prefill_rows=prefill,
        decode_rows=decode,
        decode_shown=shown,
        plan=plan,
        engine=eng.name,
        prefill_overhead_s=None if eng.is_ideal else mc_pre.overhead_s,
        step_overhead_s=eng.step_overhead_s,
        act_quant_s=quant,
        throughput_band=(rate_band.low, rate_band.high),
        band_note=latency_band.note,
    )


def _with_16bit_head(scenario: Scenario) -> Scenario:
    """`scenario` with the embedding and LM head in 16-bit, unless an override names them or
    the weights are already at least 16 bits wide."""
    if bits_per_element(scenario.weight_format) >= 16:
        return scenario
    table = dict(scenario.weight_overrides)
    named = {key.rsplit(".", 1)[-1] for key in table} | set(table)
    added = {
        role: HIGH_PRECISION_FORMAT
        for role in ("embedding", "lm_head")
        if role not in named and ("embed" if role == "embedding" else "head") not in named
    }
    if not added:
        return scenario
    return replace(scenario, weight_overrides={**table, **added})


def _machines(hw: Hardware, eng: Engine, scenario: Scenario) -> tuple[Machine, Machine]:
    """The (prefill, decode) machines: the device as `eng` runs each pass."""
    mc = machine(hw)
    if eng.is_ideal:
        return mc, mc
    graph = mc.overhead_s
    eager = max(eng.eager_launch_s, graph)  # an eager launch never costs less than a replay
    pre = graph if eng.prefill_cuda_graphs else eager
    dec = graph if eng.decode_graphed(scenario.seqs_per_replica) else eager
    frac, bw, res = (
        eng.attention_fraction,
        eng.attention_bandwidth_fraction,
        eng.residual_comm_16bit,
    )
    return engine_machine(hw, pre, frac, bw, res), engine_machine(hw, dec, frac, bw, res)


def _act_quant_s(rows: tuple[OpRow, ...], mc: Machine, level: int) -> float:
    """Time of the separate kernels quantizing each narrow-activation GEMM's 16-bit input.

    One kernel per GEMM instance whose matrix unit runs a family narrower than 16 bits: it reads
    the `rows × k` input at 16 bits, writes it at the activation format's width and pays one
    kernel overhead (expert GEMMs: their dispatched rows).
    """
    total = 0.0
    bw = mc.bytes_per_s[level]
    for op, *_ in rows:
        if op.kind is not OpKind.MATMUL or op.k <= 0:
            continue
        key = mc.plan(op.weight_format, op.act_format).key
        if FAMILY_BITS.get(key, 16) >= 16:
            continue
        elements = op.m * op.k * op.batch
        moved = elements * (2.0 + bits_per_element(op.act_format) / 8)
        total += op.count * (moved / bw + mc.overhead_s)
    return total


def _check_level(hw: Hardware, level: object) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < len(hw.memory):
        names = ", ".join(f"{i}: {m.name}" for i, m in enumerate(hw.memory))
        raise ValueError(
            f"memory_level must be an index of {hw.name}'s memory ({names}), got {level!r}"
        )
    return level
