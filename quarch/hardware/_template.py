"""A parametric accelerator for design exploration: systolic arrays, on-chip SRAM, off-chip memory.

`accelerator(...)` turns a handful of design choices into a `Hardware` the performance model
prices like any catalog device. Every derived number carries its formula in `sources` (as
`derived: …`), design inputs are marked `design parameter`, and memory-technology figures cite
`catalog/memory_tech.yaml`.

Derivations:

- Matrix peak per format: `2 · rows · cols · arrays · clock_hz · multiplier[format]` FLOP/s (one
  multiply-add per processing element per clock at the 16-bit rate). The default multipliers
  double the rate at each halving of operand width (bf16/fp16 ×1, fp8/int8 ×2), as the
  H100, MI300X and TPU v5e datasheets show for their 8-bit modes; pass `format_multipliers` to
  add fp4 (×4), fp32 (×0.25) or anything else.
- Vector peak: `2 · vector_lanes · clock_hz` (one FP32 FMA per lane per clock); by default one
  lane per array row per array.
- Off-chip memory: `units ×` the technology's per-unit bandwidth and capacity; energy per byte
  is `8 ×` its pJ/bit.
- Power (when not given): `tdp_w = bf16 peak · pj_per_flop + off-chip bandwidth · pJ/byte +
  SRAM bandwidth · sram_pj_per_byte`, every unit busy at once; `idle_w = 10 %` of that (the same
  assumption the catalog makes where vendors publish no idle power).
- Efficiency: tiles are the array itself (`rows × cols` output tile, `tile_k = rows`): a
  weight-stationary array holds a `rows × cols` weight block and streams tokens through it.
"""

from __future__ import annotations

from collections.abc import Mapping

from quarch._yaml import show
from quarch.hardware._loader import load_memory_tech
from quarch.hardware._spec import (
    MATRIX_FORMATS,
    DeviceClass,
    Hardware,
    Interconnect,
    MemoryLevel,
)

DEFAULT_FORMAT_MULTIPLIERS: Mapping[str, float] = {
    "bf16": 1.0,
    "fp16": 1.0,
    "fp8": 2.0,
    "int8": 2.0,
}
"""Matrix rate per format relative to the 16-bit rate (see the module doc)."""

DEFAULT_PJ_PER_FLOP = 0.5
"""Chip energy per dense 16-bit FLOP, memory excluded (an estimate: the H100 SXM's 700 W TDP over
its 989.4 TFLOP/s dense BF16 is 0.71 pJ/FLOP all-in, memory and I/O included; NVIDIA H100
datasheet and whitepaper, as in catalog/h100-sxm.yaml)."""

IDLE_FRACTION = 0.1
"""Idle power as a fraction of TDP where no figure is given (the catalog's stated assumption)."""

_DESIGN = "design parameter"


MAX_DESIGN_VALUE = 1e30
"""Largest value any design parameter may take: far beyond any chip (1e30 Hz, bytes or pJ),
and small enough that every derived product (peaks, power) stays finite in float64."""


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not (value >= 0 if zero_ok else value > 0):
        kind = "non-negative" if zero_ok else "positive"
        raise ValueError(f"accelerator: {name} must be a {kind} number, got {show(value)}")
    if not value <= MAX_DESIGN_VALUE:  # also refuses inf
        raise ValueError(
            f"accelerator: {name} must be at most {MAX_DESIGN_VALUE:g}, got {show(value)}"
        )


def _memory_levels(
    memory_tech: str,
    units: int,
    sram_bytes: float,
    sram_bytes_per_s: float,
    sram_pj_per_byte: float | None,
    sources: dict[str, str],
) -> tuple[MemoryLevel, ...]:
    table = load_memory_tech()
    if not isinstance(memory_tech, str) or memory_tech not in table:
        valid = ", ".join(sorted(table))
        raise ValueError(f"accelerator: unknown memory_tech {show(memory_tech)}; valid: {valid}")
    tech = table[memory_tech]
    cite = tech["sources"]
    per = f"{units} x {tech['unit']} of {tech['display_name']}"
    sources["memory[0].capacity_bytes"] = (
        f"derived: {per} x {tech['capacity_bytes']:.4g} B "
        f"(memory_tech.yaml: {cite['capacity_bytes']})"
    )
    sources["memory[0].bytes_per_s"] = (
        f"derived: {per} x {tech['bytes_per_s']:.4g} B/s (memory_tech.yaml: {cite['bytes_per_s']})"
    )
    sources["memory[0].pj_per_byte"] = (
        f"derived: 8 x {tech['pj_per_bit']} pJ/bit (memory_tech.yaml: {cite['pj_per_bit']})"
    )
    sources["memory[1].capacity_bytes"] = _DESIGN
    sources["memory[1].bytes_per_s"] = _DESIGN
    if sram_pj_per_byte is not None:
        sources["memory[1].pj_per_byte"] = _DESIGN
    return (
        MemoryLevel(
            name=memory_tech,
            capacity_bytes=units * tech["capacity_bytes"],
            bytes_per_s=units * tech["bytes_per_s"],
            pj_per_byte=8.0 * tech["pj_per_bit"],
        ),
        MemoryLevel(
            name="sram",
            capacity_bytes=float(sram_bytes),
            bytes_per_s=float(sram_bytes_per_s),
            pj_per_byte=sram_pj_per_byte,
        ),
    )


def _matrix_peaks(
    rows: int,
    cols: int,
    arrays: int,
    clock_hz: float,
    multipliers: Mapping[str, float],
    sources: dict[str, str],
) -> dict[str, float]:
    if not isinstance(multipliers, Mapping) or not multipliers:
        raise ValueError(
            "accelerator: format_multipliers needs a mapping of at least one format to its "
            f"multiplier, got {show(multipliers)}"
        )
    base = 2.0 * rows * cols * arrays * clock_hz
    peaks = {}
    for fmt, mult in multipliers.items():
        if fmt not in MATRIX_FORMATS:
            raise ValueError(
                f"accelerator: format_multipliers has unknown format {show(fmt)}; "
                f"valid: {', '.join(MATRIX_FORMATS)}"
            )
        _positive(f"format_multipliers[{fmt!r}]", mult)
        peaks[fmt] = base * mult
        sources[f"matrix_flops_per_s.{fmt}"] = (
            f"derived: 2 x {rows} x {cols} PEs x {arrays} arrays x {clock_hz:.4g} Hz x {mult:g}"
        )
    return peaks


def accelerator(
    *,
    systolic_rows: int,
    systolic_cols: int,
    num_arrays: int,
    clock_hz: float,
    sram_bytes: float,
    sram_bytes_per_s: float,
    memory_tech: str,
    memory_stacks_or_channels: int,
    name: str = "accelerator",
    format_multipliers: Mapping[str, float] = DEFAULT_FORMAT_MULTIPLIERS,
    vector_lanes: int | None = None,
    sram_pj_per_byte: float | None = None,
    pj_per_flop: float = DEFAULT_PJ_PER_FLOP,
    tdp_w: float | None = None,
    idle_w: float | None = None,
    interconnect: Interconnect | None = None,
    price_per_hour_usd: float | None = None,
) -> Hardware:
    """A systolic-array accelerator built from design parameters (see the module doc).

    Args:
        systolic_rows, systolic_cols: processing elements per array side.
        num_arrays: arrays on the chip (the compute units GEMM tiles spread over).
        clock_hz: clock of the arrays.
        sram_bytes, sram_bytes_per_s: on-chip SRAM capacity and bandwidth.
        memory_tech: off-chip technology, a key of `catalog/memory_tech.yaml` (`hbm3e`,
            `lpddr5x`, `gddr7`, `ddr5`, `hbf`).
        memory_stacks_or_channels: how many units (stacks, packages, devices, DIMMs) of it.
        name: the device's name.
        format_multipliers: matrix rate per format relative to the 16-bit rate.
        vector_lanes: FP32 vector lanes (default: `systolic_rows · num_arrays`).
        sram_pj_per_byte: SRAM access energy, counted in the derived TDP when given.
        pj_per_flop: chip energy per dense 16-bit FLOP for the derived TDP.
        tdp_w, idle_w: power; derived when None.
        interconnect: scale-up link, or None for a single device.
        price_per_hour_usd: rental price, or None.

    Raises:
        ValueError: a non-positive parameter, an unknown memory technology or format.
    """
    params = {
        "systolic_rows": systolic_rows,
        "systolic_cols": systolic_cols,
        "num_arrays": num_arrays,
        "clock_hz": clock_hz,
        "sram_bytes": sram_bytes,
        "sram_bytes_per_s": sram_bytes_per_s,
        "memory_stacks_or_channels": memory_stacks_or_channels,
        "pj_per_flop": pj_per_flop,
    }
    for key, value in params.items():
        _positive(key, value)
    given: dict[str, float | None] = {
        "vector_lanes": vector_lanes,
        "tdp_w": tdp_w,
        "idle_w": idle_w,
        "price_per_hour_usd": price_per_hour_usd,
    }
    for key, given_value in given.items():
        if given_value is not None:
            _positive(key, given_value)
    if sram_pj_per_byte is not None:
        _positive("sram_pj_per_byte", sram_pj_per_byte, zero_ok=True)
    for key in ("systolic_rows", "systolic_cols", "num_arrays", "memory_stacks_or_channels"):
        if not isinstance(params[key], int):
            raise ValueError(f"accelerator: {key} must be an integer, got {show(params[key])}")
    rows, cols, arrays = systolic_rows, systolic_cols, num_arrays
    sources: dict[str, str] = {"compute_units": _DESIGN, "clock_hz": _DESIGN}
    peaks = _matrix_peaks(rows, cols, arrays, clock_hz, format_multipliers, sources)
    memory = _memory_levels(
        memory_tech,
        memory_stacks_or_channels,
        sram_bytes,
        sram_bytes_per_s,
        sram_pj_per_byte,
        sources,
    )
    lanes = vector_lanes if vector_lanes is not None else rows * arrays
    _positive("vector_lanes", lanes)
    vector = 2.0 * lanes * clock_hz
    sources["vector_flops_per_s"] = f"derived: 2 x {lanes} FP32 lanes x {clock_hz:.4g} Hz"
    if tdp_w is None:
        base = 2.0 * rows * cols * arrays * clock_hz
        off_chip = memory[0].bytes_per_s * (memory[0].pj_per_byte or 0.0)
        on_chip = sram_bytes_per_s * (sram_pj_per_byte or 0.0)
        tdp_w = (base * pj_per_flop + off_chip + on_chip) * 1e-12
        sources["power.tdp_w"] = (
            f"derived: {base:.4g} FLOP/s x {pj_per_flop} pJ/FLOP + off-chip "
            f"{memory[0].bytes_per_s:.4g} B/s x {memory[0].pj_per_byte:.3g} pJ/B"
            + (f" + SRAM {sram_bytes_per_s:.4g} B/s x {sram_pj_per_byte} pJ/B" if on_chip else "")
        )
    else:
        sources["power.tdp_w"] = _DESIGN
    if idle_w is None:
        idle_w = IDLE_FRACTION * tdp_w
        sources["power.idle_w"] = f"derived: {IDLE_FRACTION:g} x tdp_w (assumed idle fraction)"
    else:
        sources["power.idle_w"] = _DESIGN
    _positive("tdp_w", tdp_w)
    _positive("idle_w", idle_w)
    if idle_w >= tdp_w:
        raise ValueError(f"accelerator: idle_w={idle_w:g} must be below tdp_w={tdp_w:g}")
    if interconnect is not None:
        for key in ("link_bytes_per_s", "latency_s", "topology", "max_devices"):
            sources[f"interconnect.{key}"] = _DESIGN
    if price_per_hour_usd is not None:
        _positive("price_per_hour_usd", price_per_hour_usd)
        sources["price_per_hour_usd"] = _DESIGN
    sources["efficiency.tiles"] = f"derived: the {rows} x {cols} array is the output tile"
    sources["efficiency.tile_k"] = f"derived: a {rows}-row weight block per pass"
    return Hardware(
        name=name,
        display_name=(
            f"{arrays} x {rows}x{cols} systolic @ {clock_hz / 1e9:.3g} GHz, "
            f"{memory_stacks_or_channels} x {memory_tech}, {sram_bytes / 1e6:.4g} MB SRAM"
        ),
        vendor="design",
        device_class=DeviceClass.ACCELERATOR,
        matrix_flops_per_s=peaks,
        vector_flops_per_s=vector,
        compute_units=arrays,
        clock_hz=float(clock_hz),
        memory=memory,
        interconnect=interconnect,
        tdp_w=float(tdp_w),
        idle_w=float(idle_w),
        price_per_hour_usd=price_per_hour_usd,
        efficiency={"tiles": ((rows, cols),), "tile_k": rows},
        sources=sources,
    )
