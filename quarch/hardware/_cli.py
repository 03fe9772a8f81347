"""`quarch hw`: the hardware catalog, and one device with every number's source."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from quarch._cli_util import user_errors
from quarch.hardware._spec import Hardware

hw_app = typer.Typer(
    name="hw",
    help="The hardware catalog: `quarch hw list`, `quarch hw show NAME`.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `quarch hw list` and `quarch hw show` to the app."""
    app.add_typer(hw_app, name="hw")


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    if 0 < abs(value) < 1e-3:
        return f"{value * 1e6:.4g} u{unit}"
    return f"{value:.4g} {unit}"


@hw_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the catalog: peaks, memory, interconnect and power of every device."""
    from rich.console import Console

    from quarch.hardware._loader import list_hardware, load_hardware

    with user_errors():
        devices = [load_hardware(name) for name in list_hardware()]
    if as_json:
        typer.echo(json.dumps([_plain(hw) for hw in devices], indent=2))
        return
    Console().print(_catalog_table(devices))


def _catalog_table(devices: list[Hardware]) -> Any:
    """One row per device, one unit per column, so that names fit whole at 80 columns (the
    interconnect and every number's source are in `quarch hw show NAME` and `--json`)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title="hardware catalog (dense peaks)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("name", no_wrap=True)
    table.add_column("device", overflow="fold", ratio=1, min_width=12)
    for col in ("16-bit\nTFLOP/s", "8-bit\nTFLOP/s", "mem\nGB", "mem\nTB/s", "TDP\nW"):
        table.add_column(col, justify="right", no_wrap=True)
    for hw in devices:
        rates = hw.matrix_flops_per_s
        r16 = rates.get("bf16", rates.get("fp16"))
        r8 = rates.get("fp8", rates.get("int8"))
        table.add_row(
            hw.name,
            hw.display_name,
            _fixed(r16, 1e12),
            _fixed(r8, 1e12),
            _fixed(hw.memory_capacity_bytes, 1e9),
            _fixed(hw.memory_bytes_per_s, 1e12),
            f"{hw.tdp_w:.0f}",
        )
    return table


def _fixed(value: float | None, unit: float) -> str:
    """`value` in `unit`s to four significant digits, or `-` when absent."""
    return f"{value / unit:,.4g}" if value else "-"


def _numbers(hw: Hardware) -> list[tuple[str, str, str]]:
    """(field path, value with unit, source) for every number of the device."""
    rows: list[tuple[str, str, str]] = []

    def add(path: str, text: str) -> None:
        rows.append((path, text, hw.source(path) or "-"))

    for fmt, rate in hw.matrix_flops_per_s.items():
        add(f"matrix_flops_per_s.{fmt}", _si(rate, "FLOP/s"))
    add("vector_flops_per_s", _si(hw.vector_flops_per_s, "FLOP/s"))
    add("compute_units", str(hw.compute_units))
    add("clock_hz", _si(hw.clock_hz, "Hz"))
    for i, level in enumerate(hw.memory):
        add(f"memory[{i}].capacity_bytes", f"{_si(level.capacity_bytes, 'B')} ({level.name})")
        add(f"memory[{i}].bytes_per_s", _si(level.bytes_per_s, "B/s"))
        if level.pj_per_byte is not None:
            add(f"memory[{i}].pj_per_byte", f"{level.pj_per_byte:.4g} pJ/B")
    ic = hw.interconnect
    if ic is not None:
        add("interconnect.link_bytes_per_s", f"{_si(ic.link_bytes_per_s, 'B/s')} ({ic.name})")
        add("interconnect.latency_s", _si(ic.latency_s, "s"))
        add("interconnect.topology", ic.topology.value)
        add("interconnect.max_devices", str(ic.max_devices))
    add("power.tdp_w", f"{hw.tdp_w:.4g} W")
    add("power.idle_w", f"{hw.idle_w:.4g} W")
    if hw.price_per_hour_usd is not None:
        add("price_per_hour_usd", f"${hw.price_per_hour_usd:.4g}/h")
    for key, value in hw.efficiency.items():
        add(f"efficiency.{key}", str(value))
    return rows


@hw_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="a catalog name (`h100-sxm`) or a YAML path")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show one device: every number with its source or how it was estimated."""
    from rich.console import Console
    from rich.table import Table

    from quarch.hardware._loader import load_hardware
    from quarch.perf import efficiency_for

    with user_errors():
        hw = load_hardware(name)
    eff = efficiency_for(hw)
    if as_json:
        payload = _plain(hw) | {"efficiency_resolved": dataclasses.asdict(eff)}
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{hw.display_name} ({hw.name}, {hw.device_class.value}, {hw.vendor})")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_column("source", overflow="fold")
    for path, text, source in _numbers(hw):
        table.add_row(path, text, source)
    console = Console()
    console.print(table)
    console.print(
        f"efficiency in use ({'device overrides + ' if hw.efficiency else ''}"
        f"{hw.device_class.value} defaults, see quarch/perf/_efficiency.py): "
        f"matmul {eff.matmul_fraction:g}, attention {eff.attention_fraction:g}, "
        f"bandwidth {list(eff.bandwidth_fraction)}, comm {eff.comm_fraction:g}, "
        f"overhead {eff.launch_overhead_s * 1e6:g} us, tiles {list(eff.tiles)}, band {eff.band}"
    )


def _plain(hw: Hardware) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(hw):
        if not f.init:
            continue
        value = getattr(hw, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        elif f.name == "memory":
            value = [dataclasses.asdict(level) for level in value]
        elif f.name in ("matrix_flops_per_s", "efficiency", "sources"):
            value = dict(value)
        out[f.name] = value
    return out
