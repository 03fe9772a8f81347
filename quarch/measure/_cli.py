"""`quarch calibrate` and `quarch validate`: measure this machine, then check the perf model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarch._atomic import writable_file
from quarch._cli_util import fail, user_errors

if TYPE_CHECKING:
    from quarch.measure._calibrate import CalibrationResult
    from quarch.measure._validate import ValidationReport

_DEVICE = typer.Option("--device", help="cpu, or cuda / cuda:N where torch sees a GPU")
_THREADS = typer.Option("--threads", help="torch threads for CPU timing (default: torch's)")
_STAT = typer.Option(
    "--stat", help="timing statistic: median, or min on a machine shared with other work"
)
_QUICK = typer.Option("--quick", help="a small grid: about a minute on two cores")
_JSON = typer.Option("--json", help="print JSON instead of tables")


def register(app: typer.Typer) -> None:
    """Add `quarch calibrate` and `quarch validate` to the app."""
    app.command("calibrate")(calibrate_command)
    app.command("validate")(validate_command)


def calibrate_command(
    out: Annotated[Path, typer.Option("--out", help="where to write the Hardware YAML")] = Path(
        "hw.yaml"
    ),
    quick: Annotated[bool, _QUICK] = False,
    as_json: Annotated[bool, _JSON] = False,
    device: Annotated[str, _DEVICE] = "cpu",
    threads: Annotated[int | None, _THREADS] = None,
    stat: Annotated[str, _STAT] = "median",
    name: Annotated[str | None, typer.Option("--name", help="the device's name")] = None,
) -> None:
    """Time GEMMs, memory reads and copies, kernel launches, elementwise ops and attention on
    this machine, fit the perf model's rates and efficiency parameters, write a Hardware YAML."""
    from quarch.measure._calibrate import calibrate

    with user_errors():
        writable_file(out)  # before a minute of timing, not after
        result = calibrate(
            device, quick=quick, progress=not as_json, threads=threads, stat=stat, name=name
        )
    with user_errors():
        result.write(out)
    if as_json:
        typer.echo(json.dumps(_calibration_json(result, out), indent=2))
        return
    _print_calibration(result, out)


def _calibration_json(result: CalibrationResult, out: Path) -> dict[str, Any]:
    fit = result.fit
    return {
        "file": str(out),
        "hardware": result.hardware.name,
        "host": {
            "model": result.host.model,
            "device": result.host.device,
            "compute_units": result.host.compute_units,
            "torch": result.host.torch_version,
            "date": result.host.date,
        },
        "statistic": result.stat.value,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in fit.params.items()},
        "rms_log_error": fit.rms_log_error,
        "levels": [
            {"name": lv.name, "capacity_bytes": lv.capacity_bytes, "bytes_per_s": lv.bytes_per_s}
            for lv in result.levels
        ],
        "bands": {k: list(v) for k, v in result.bands.items()},
        "load_average": list(result.load[:2]),
        "cpus": result.load[2],
        "skipped": list(result.skipped),
        "measurements": len(result.measurements),
    }


def _print_calibration(result: CalibrationResult, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    hst, fit = result.host, result.fit
    console.print(f"[bold]{hst.model}[/bold] — {hst.describe()}, statistic {result.stat.value}")
    rates = Table(title="fitted rates and overhead")
    rates.add_column("parameter")
    rates.add_column("value", justify="right")
    for key, value in fit.params.items():
        if key.startswith("matrix."):
            rates.add_row(f"GEMM {key.removeprefix('matrix.')}", f"{value / 1e9:.1f} GFLOP/s")
        elif key == "vector":
            rates.add_row("vector (elementwise)", f"{value / 1e9:.2f} GFLOP/s")
        elif key == "launch_overhead_s":
            rates.add_row("per-kernel overhead", f"{value * 1e6:.2f} us")
        elif key not in ("matmul_fraction", "vector_fraction"):
            rates.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    console.print(rates)
    levels = Table(title="memory levels (streaming reads)")
    for col in ("level", "capacity", "bandwidth"):
        levels.add_column(col, justify="right" if col != "level" else "left")
    for lv in result.levels:
        levels.add_row(
            lv.name, f"{lv.capacity_bytes / 2**20:,.1f} MiB", f"{lv.bytes_per_s / 1e9:.1f} GB/s"
        )
    console.print(levels)
    bands = Table(title=f"calibration fit (in-sample), rms log error {fit.rms_log_error:.3f}")
    for col in ("op class", "measured/predicted p10", "p90"):
        bands.add_column(col, justify="right" if col != "op class" else "left")
    for cls, (lo, hi) in result.bands.items():
        bands.add_row(cls, f"{lo:.2f}", f"{hi:.2f}")
    console.print(bands)
    for note in result.skipped:
        console.print(f"[yellow]skipped:[/yellow] {note}")
    _warn_busy(console, result.busy, result.load)
    console.print(f"wrote [bold]{out}[/bold] ({len(result.measurements)} timings)")


def validate_command(
    hw: Annotated[
        str | None,
        typer.Option("--hw", help="Hardware YAML (from `quarch calibrate`) or catalog name"),
    ] = None,
    quick: Annotated[bool, _QUICK] = False,
    as_json: Annotated[bool, _JSON] = False,
    device: Annotated[str, _DEVICE] = "cpu",
    threads: Annotated[int | None, _THREADS] = None,
    stat: Annotated[str, _STAT] = "median",
    update: Annotated[
        bool,
        typer.Option("--update", help="write the measured band into the --hw file's efficiency"),
    ] = False,
    published: Annotated[
        bool,
        typer.Option("--published", help="check against the shipped public measurements"),
    ] = False,
    split: Annotated[
        str, typer.Option("--split", help="with --published: holdout, fit or all")
    ] = "all",
    update_bands: Annotated[
        bool,
        typer.Option(
            "--update-bands",
            help="with --published: re-derive quarch/perf/bands.yaml from the fit rows first",
        ),
    ] = False,
) -> None:
    """Time real ops, layers and a whole small model at shapes calibration did not use, and
    compare with the perf model's predictions (per row, and median / p90 error per op class).
    With --published, hold the catalog devices' predictions against sourced public
    measurements instead (no timing; --hw is not needed)."""
    from quarch.measure._validate import update_band, validate

    if published:
        _validate_published(split, as_json, update_bands)
        return
    if hw is None:
        raise fail("--hw is required (or --published)")
    with user_errors():
        report = validate(
            hw, quick=quick, device=device, threads=threads, stat=stat, progress=not as_json
        )
        if update:
            update_band(hw, report)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_validation(report)
    if update:
        typer.echo(f"updated efficiency.band in {hw}: {report.band()}")


def _validate_published(split: str, as_json: bool, update_bands: bool = False) -> None:
    from quarch.measure._published_bands import write_bands
    from quarch.measure._published_check import print_published, validate_published

    with user_errors():
        if update_bands:
            doc = write_bands()
            if not as_json:
                typer.echo(f"wrote {len(doc['bands'])} bands to quarch/perf/bands.yaml")
        report = validate_published(split)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    print_published(report)


def _print_validation(report: ValidationReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = Table(
        title=f"predicted vs measured on {report.hardware} ({report.threads} threads, "
        f"{report.stat.value})"
    )
    for col in ("operation", "class", "predicted", "measured", "meas/pred", "|error|"):
        rows.add_column(col, justify="left" if col in ("operation", "class") else "right")
    for r in report.rows:
        rows.add_row(
            r.name,
            r.op_class.value,
            _time(r.predicted_s),
            _time(r.measured_s),
            f"{r.ratio:.2f}",
            f"{r.abs_pct_error:.1f}%",
        )
    console.print(rows)
    summary = Table(title="absolute percentage error per op class")
    for col in ("op class", "rows", "median", "p90", "band p10", "band p90"):
        summary.add_column(col, justify="left" if col == "op class" else "right")
    for cls, s in report.by_class().items():
        summary.add_row(
            cls,
            str(s.rows),
            f"{s.median_pct:.1f}%",
            f"{s.p90_pct:.1f}%",
            f"{s.band[0]:.2f}",
            f"{s.band[1]:.2f}",
        )
    console.print(summary)
    _warn_busy(console, report.busy, report.load)


def _warn_busy(console: Any, busy: bool, load: tuple[float, float, int]) -> None:
    if busy:
        console.print(
            f"[yellow]warning:[/yellow] load average {max(load[:2]):.1f} on {load[2]} CPUs: "
            "other work shared the machine, so these timings are disturbed (with several torch "
            "threads, by whole scheduler time slices); consider --threads 1 --stat min"
        )


def _time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"
