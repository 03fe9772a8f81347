"""`calibrate`: measure this machine and fit the perf model's parameters to it.

What is timed (shapes chosen apart from every validation shape, see `_validate.py`):

- GEMMs `F.linear(x[m, k], w[n, k])` per dtype (fp32, bf16, fp16; a dtype more than
  `SLOW_DTYPE_FACTOR`× slower than fp32 on a probe GEMM is left out and said so) over a grid of
  `m` (1 to 512 rows: decode to prefill) × `(n, k)` including sizes off every power of two and
  weights too large for the last-level cache.
- Streaming reads `x.sum()` over working sets from 256 KiB to beyond the last-level cache: memory
  levels and their bandwidths (`_levels.py`); and copies `dst.copy_(src)` of the largest sizes
  (read + write bytes counted) as a cross-check of device memory's bandwidth.
- One-element kernels: the fixed per-kernel cost.
- `silu(gate) * up` at a few sizes: the vector rate.
- Fused attention (sdpa) of a GQA model unlike the validated ones, in decode over several KV
  lengths and in prefill.

Then `fit_device` fits rates, overhead and the discrete efficiency parameters, and the result is
written as a Hardware YAML file that `quarch.hardware.load_hardware` reads.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quarch._atomic import write_text
from quarch.hardware import DeviceClass, Hardware, MemoryLevel, hardware_from_dict, is_catalog_name
from quarch.measure._attention import time_attention
from quarch.measure._bench import (
    Measurement,
    OpClass,
    time_copy,
    time_launch,
    time_matmul,
    time_read,
    time_silu_mul,
)
from quarch.measure._fit import FitResult, fit_device
from quarch.measure._hwyaml import device_name, hardware_document, to_yaml
from quarch.measure._levels import Host, Level, host, memory_levels
from quarch.measure._timing import Statistic, check_device, torch_threads
from quarch.models import spec_from_dict

SLOW_DTYPE_FACTOR = 8.0
"""A dtype whose probe GEMM is this many times slower than fp32 is not calibrated."""

CALIBRATION_SPEC = spec_from_dict(
    {
        "name": "calibration-gqa",
        "family": "llama",
        "vocab_size": 1000,
        "hidden_size": 512,
        "num_layers": 1,
        "num_heads": 8,
        "num_kv_heads": 2,
        "head_dim": 64,
        "intermediate_size": 1024,
        "max_position_embeddings": 16384,
    },
    source="quarch.measure: a made-up GQA shape (8 query heads over 2 KV heads, head dim 64) "
    "used only to time attention for calibration",
)


@dataclass(frozen=True)
class Grid:
    """What calibration times (sizes in elements, working sets in bytes)."""

    ms: tuple[int, ...]
    nks: tuple[tuple[int, int], ...]
    working_sets: tuple[int, ...]
    silu_shapes: tuple[tuple[int, int], ...]
    attention: tuple[tuple[int, int, int], ...]  # (seqs, kv_len, tokens)
    budget_s: float


def _working_sets(lo: int, hi: int, factor: int) -> tuple[int, ...]:
    out, ws = [], lo
    while ws <= hi:
        out.append(ws)
        ws *= factor
    return tuple(out)


def grid_for(quick: bool, hst: Host) -> Grid:
    """The quick or full calibration grid for this machine."""
    largest_cache = max((c[1] for c in hst.caches), default=64 * 2**20)
    top = max(4 * largest_cache, 2**30 if hst.device == "cpu" else 2**31)
    if quick:
        return Grid(
            ms=(1, 16, 256),
            nks=((256, 256), (1024, 384), (640, 1024), (2500, 3000)),
            working_sets=_working_sets(2**18, top, 2),
            silu_shapes=((1, 2048), (256, 2048)),
            attention=((1, 512, 1), (1, 3000, 1), (1, 0, 200)),
            budget_s=0.3,
        )
    return Grid(
        ms=(1, 8, 32, 128, 512),
        nks=(
            (256, 256),
            (1024, 256),
            (256, 1024),
            (768, 768),
            (1000, 500),
            (2048, 1024),
            (4000, 2500),
        ),
        working_sets=_working_sets(2**18, top, 2),
        silu_shapes=((1, 4096), (32, 2048), (256, 2048), (1024, 4096)),
        attention=((1, 128, 1), (1, 1000, 1), (4, 2500, 1), (1, 6000, 1), (1, 0, 100), (1, 0, 400)),
        budget_s=1.0,
    )


@dataclass(frozen=True, kw_only=True)
class CalibrationResult:
    """A measured machine: the timings, the fit, and the Hardware file written from them.

    Fields:
        host: what was measured.
        hardware: the calibrated device (as `load_hardware` reads it back from `document`).
        document: the Hardware YAML document.
        measurements: every timing taken.
        levels: memory levels found in the read-bandwidth curve.
        fit: the fit of rates and efficiency parameters.
        stat: the timing statistic fitted.
        bands: per op class, `(10th, 90th)` percentile of measured / predicted over the
            calibration points (in-sample; `validate` gives out-of-sample ones).
        skipped: what was not measured, and why.
        load: the 1-minute load average before and after timing (`os.getloadavg`), and the
            CPUs the OS has: timings taken with more runnable work than CPUs are disturbed.
    """

    host: Host
    hardware: Hardware
    document: Mapping[str, Any]
    measurements: tuple[Measurement, ...]
    levels: tuple[Level, ...]
    fit: FitResult
    stat: Statistic
    bands: Mapping[str, tuple[float, float]]
    skipped: tuple[str, ...] = field(default=())
    load: tuple[float, float, int] = (0.0, 0.0, 1)

    @property
    def busy(self) -> bool:
        """Whether the machine had more runnable work than CPUs while it was measured."""
        return max(self.load[:2]) > self.load[2]

    def to_yaml(self) -> str:
        """The Hardware file's text."""
        before, after, cpus = self.load
        load = f"load average {before:.1f} before and {after:.1f} after timing, on {cpus} CPUs"
        return to_yaml(self.document, self.fit.method, load)

    def write(self, path: str | Path) -> Path:
        """Write the Hardware file to `path` and return it."""
        out = Path(path)
        write_text(out, self.to_yaml())
        return out


Step = Callable[[], list[Measurement]]


@contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr (or nothing); yields `advance(description)`."""
    if not enabled:
        yield lambda _desc: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task("starting", total=total)
        yield lambda desc: bar.update(task, advance=1, description=desc)


def run_steps(steps: list[tuple[str, Step]], progress: bool) -> list[Measurement]:
    """Run timing steps in order under a progress bar."""
    out: list[Measurement] = []
    with progress_bar(progress, len(steps)) as advance:
        for desc, step in steps:
            out.extend(step())
            advance(desc)
    return out


def usable_dtypes(device: str, budget_s: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dtypes to calibrate, notes on those left out) from a 256³ probe GEMM per dtype."""
    probe = {
        fmt: time_matmul(256, 256, 256, fmt, device=device, budget_s=budget_s)
        for fmt in ("fp32", "bf16", "fp16")
    }
    ref = probe["fp32"].timing.min_s
    keep, skipped = [], []
    for fmt, m in probe.items():
        ratio = m.timing.min_s / ref
        if ratio > SLOW_DTYPE_FACTOR:
            skipped.append(f"{fmt}: {ratio:.0f}x slower than fp32 on a 256^3 GEMM, not calibrated")
        else:
            keep.append(fmt)
    return tuple(keep), tuple(skipped)


def _one(fn: Callable[..., Measurement], *args: Any, **kwargs: Any) -> Step:
    """A step timing `fn(*args, **kwargs)` once."""
    return lambda: [fn(*args, **kwargs)]


def _steps(grid: Grid, dtypes: tuple[str, ...], device: str) -> list[tuple[str, Step]]:
    kw = {"device": device, "budget_s": grid.budget_s}
    steps: list[tuple[str, Step]] = [
        (f"read {ws / 2**20:.3g} MiB", _one(time_read, ws // 4, **kw)) for ws in grid.working_sets
    ]
    steps += [
        (f"copy {ws / 2**20:.3g} MiB", _one(time_copy, ws // 8, **kw))
        for ws in grid.working_sets[-2:]
    ]
    steps.append(("launch overhead", lambda: time_launch(device=device)))
    steps += [
        (f"matmul {fmt} {m}x{n}x{k}", _one(time_matmul, m, n, k, fmt, **kw))
        for fmt in dtypes
        for m in grid.ms
        for n, k in grid.nks
    ]
    act_formats = ("fp32", "bf16") if "bf16" in dtypes else ("fp32",)
    steps += [
        (f"silu*mul {fmt} {rows}x{width}", _one(time_silu_mul, rows, width, fmt, **kw))
        for fmt in act_formats
        for rows, width in grid.silu_shapes
    ]
    steps += [
        (
            f"attention {fmt} b={seqs} kv={kv} s={tokens}",
            _one(time_attention, CALIBRATION_SPEC, fmt, seqs=seqs, kv_len=kv, tokens=tokens, **kw),
        )
        for fmt in act_formats
        for seqs, kv, tokens in grid.attention
    ]
    return steps


def _best_rates(measurements: list[Measurement]) -> dict[str, float]:
    best: dict[str, float] = {}
    for m in measurements:
        if m.op_class is OpClass.MATMUL:
            op = m.ops[0]
            best[op.weight_format] = max(best.get(op.weight_format, 0.0), op.flops / m.timing.min_s)
    return best


def _base_hardware(
    hst: Host, levels: list[Level], measurements: list[Measurement], stat: Statistic
) -> Hardware:
    """The device before fitting: measured levels, best measured rates, measured overhead."""
    launches = [m.timing.value(stat) for m in measurements if m.op_class is OpClass.LAUNCH]
    vector = max(
        (
            m.ops[0].flops / m.timing.min_s
            for m in measurements
            if m.op_class is OpClass.ELEMENTWISE
        ),
        default=1e9,
    )
    return Hardware(
        name=device_name(hst),
        display_name=hst.model,
        vendor=hst.vendor,
        device_class=DeviceClass.CPU if hst.device == "cpu" else DeviceClass.GPU,
        matrix_flops_per_s=_best_rates(measurements),
        vector_flops_per_s=vector,
        compute_units=hst.compute_units,
        clock_hz=hst.clock_hz or 1e9,
        memory=tuple(
            MemoryLevel(name=lv.name, capacity_bytes=lv.capacity_bytes, bytes_per_s=lv.bytes_per_s)
            for lv in levels
        ),
        tdp_w=15.0,
        idle_w=5.0,
        efficiency={
            "launch_overhead_s": statistics.median(launches) if launches else 1e-5,
            "bandwidth_fraction": (1.0,),
        },
    )


def load_average() -> float:
    """The OS's 1-minute load average (0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def ratio_band(ratios: list[float]) -> tuple[float, float]:
    """(10th, 90th) percentile of measured / predicted ratios (1.0 each with no data)."""
    if not ratios:
        return 1.0, 1.0
    xs = sorted(ratios)
    if len(xs) == 1:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return q[0], q[-1]


def class_bands(
    measurements: list[Measurement], predicted: tuple[float, ...], measured: tuple[float, ...]
) -> dict[str, tuple[float, float]]:
    """Per op class, the 10th-90th percentile band of measured / predicted."""
    by_class: dict[str, list[float]] = {}
    for m, p, t in zip(measurements, predicted, measured, strict=True):
        by_class.setdefault(m.op_class.value, []).append(t / p)
    return {c: ratio_band(r) for c, r in by_class.items()}


def loader_band(band: tuple[float, float]) -> tuple[float, float]:
    """A band the Hardware loader accepts: low in (0, 1], high in [1, 100]."""
    return min(max(band[0], 1e-3), 1.0), min(max(band[1], 1.0), 100.0)


def calibrate(
    device: str = "cpu",
    *,
    quick: bool = False,
    progress: bool = True,
    threads: int | None = None,
    stat: Statistic | str = Statistic.MEDIAN,
    name: str | None = None,
    grid: Grid | None = None,
) -> CalibrationResult:
    """Measure this machine and fit the perf model's rates and efficiency parameters.

    Args:
        device: `cpu`, or `cuda`/`cuda:N` where torch sees a CUDA device.
        quick: a small grid (about a minute on two cores) instead of the full one.
        progress: show a progress bar on stderr.
        threads: torch threads for CPU timing (None: torch's current setting); restored after.
        stat: the timing statistic fitted (`median`, or `min` on a machine shared with others).
        name: the device's catalog name (default: `local-<model>-<units>`).
        grid: what to time, overriding `quick` (tests use tiny grids).

    Returns:
        The measurements, the fit and the Hardware document (`CalibrationResult.write`).

    Raises:
        ValueError: an unusable device, thread count or name (checked before any timing).
    """
    if name is not None and not is_catalog_name(name):
        raise ValueError(
            f"--name must be a catalog name, lowercase with no spaces (e.g. 'my-cpu'), got {name!r}"
        )
    dev = str(check_device(device))
    stat = Statistic(stat)
    load_before = load_average()
    with torch_threads(threads if dev == "cpu" else None):
        hst = host(dev)
        grid = grid or grid_for(quick, hst)
        dtypes, skipped = usable_dtypes(dev, grid.budget_s)
        measurements = run_steps(_steps(grid, dtypes, dev), progress)
    load = (load_before, load_average(), os.cpu_count() or 1)
    reads = [m for m in measurements if m.op_class is OpClass.READ]
    copies = [m for m in measurements if m.op_class is OpClass.COPY]
    levels = memory_levels(reads, hst, stat, copies)
    base = _base_hardware(hst, levels, measurements, stat)
    fitted = [m for m in measurements if m.ops]
    fit = fit_device(base, fitted, stat=stat)
    bands = class_bands(fitted, fit.predicted_s, fit.measured_s)
    kernel = [
        t / p
        for m, p, t in zip(fitted, fit.predicted_s, fit.measured_s, strict=True)
        if m.op_class is not OpClass.LAUNCH
    ]
    band = loader_band(ratio_band(kernel))
    doc = hardware_document(
        fit,
        levels,
        hst,
        best_rates=_best_rates(measurements),
        band=band,
        band_how="10th-90th percentile of measured/predicted over the calibration timings "
        "(in-sample; `quarch validate --update` replaces it with out-of-sample residuals)",
        name=name,
    )
    return CalibrationResult(
        host=hst,
        hardware=hardware_from_dict(doc, where="calibrated"),
        document=doc,
        measurements=tuple(measurements),
        levels=tuple(levels),
        fit=fit,
        stat=stat,
        bands=bands,
        skipped=skipped,
        load=load,
    )
