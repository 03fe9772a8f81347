"""`quarch predict` and `quarch roofline`: the performance model from the command line."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarch._cli_util import user_errors

if TYPE_CHECKING:
    from quarch.hardware import Hardware
    from quarch.perf._predict import Prediction
    from quarch.perf._roofline import OpTime


def register(app: typer.Typer) -> None:
    """Add `quarch predict` and `quarch roofline` to the app."""
    app.command("predict")(predict_command)
    app.command("roofline")(roofline_command)


Model = Annotated[
    str, typer.Option("--model", help="catalog model name, config.json, or YAML spec")
]
Device = Annotated[str, typer.Option("--hw", help="catalog device name or Hardware YAML path")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _scenario_flags(
    batch: Annotated[int, typer.Option("--batch", help="concurrent sequences")] = 1,
    prompt: Annotated[int, typer.Option("--prompt", help="prompt tokens per sequence")] = 512,
    output: Annotated[int, typer.Option("--output", help="generated tokens per sequence")] = 128,
    tp: Annotated[int, typer.Option("--tp", help="tensor parallelism")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="pipeline parallelism")] = 1,
    ep: Annotated[int, typer.Option("--ep", help="expert parallelism")] = 1,
    dp: Annotated[int, typer.Option("--dp", help="attention data parallelism")] = 1,
    weights: Annotated[str, typer.Option("--weights", help="weight format (e.g. int4_g128)")] = (
        "bf16"
    ),
    acts: Annotated[str, typer.Option("--acts", help="activation format")] = "bf16",
    kv: Annotated[str, typer.Option("--kv", help="KV-cache format (e.g. fp8_e4m3)")] = "bf16",
) -> dict[str, Any]:
    """The serving-scenario flags `predict` and `roofline` share, as `Scenario` keywords."""
    return {
        "batch": batch,
        "prompt_len": prompt,
        "output_len": output,
        "tp": tp,
        "pp": pp,
        "ep": ep,
        "dp": dp,
        "weight_format": weights,
        "act_format": acts,
        "kv_format": kv,
    }


_SCENARIO_FLAGS = inspect.signature(_scenario_flags, eval_str=True).parameters


def with_scenario_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give a verb the flags of `_scenario_flags`, handed to it as one `scenario` dict.

    The verb declares `scenario: dict[str, Any]` where the ten flags belong; typer sees the flags
    in its place (all parameters keyword-only, so defaults and required options may mix freely).
    """
    params: list[inspect.Parameter] = []
    for name, param in inspect.signature(command, eval_str=True).parameters.items():
        params += _SCENARIO_FLAGS.values() if name == "scenario" else [param]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(command)
    def verb(**kwargs: Any) -> None:
        flags = {name: kwargs.pop(name) for name in _SCENARIO_FLAGS}
        command(scenario=_scenario_flags(**flags), **kwargs)

    verb.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    verb.__annotations__ = {p.name: p.annotation for p in params}
    return verb


def _predict(
    model: str, device: str, scenario: dict[str, Any], engine: str | None = None
) -> tuple[Hardware, Prediction]:
    """Load the model and device, predict the scenario; bad input ends the command (exit 2)."""
    from quarch.hardware import load_hardware
    from quarch.models import load_model_spec
    from quarch.perf._predict import predict
    from quarch.perf._scenario import Scenario, check_context

    with user_errors():
        hw = load_hardware(device)
        spec, scen = load_model_spec(model), Scenario(**scenario)
        check_context(spec, scen)
        return hw, predict(spec, hw, scen, engine=engine)


@with_scenario_flags
def predict_command(
    model: Model,
    device: Device,
    scenario: dict[str, Any],
    ops: Annotated[bool, typer.Option("--ops", help="also print the per-op breakdown")] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="serving engine profile (ideal, vllm, tensorrt-llm, sglang) or a YAML path",
        ),
    ] = "ideal",
    as_json: AsJson = False,
) -> None:
    """Predict latency, throughput, memory, energy and cost of serving a model on a device."""
    hw, p = _predict(model, device, scenario, engine)
    if as_json:
        typer.echo(json.dumps(prediction_to_dict(p), indent=2))
        return
    _print_summary(p, hw.display_name)
    if ops:
        _print_ops("prefill (TTFT)", p.prefill)
        _print_ops("decode step (mean over steps)", p.decode)


def prediction_to_dict(p: Prediction) -> dict[str, Any]:
    """A JSON-ready dict of a prediction, with its per-op breakdown."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(p):
        if not f.repr:  # internal rows; the breakdown is under "ops"
            continue
        value = getattr(p, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {k: v for k, v in dataclasses.asdict(value).items() if not k.startswith("_")}
        out[f.name] = value
    out["memory"]["total_bytes"] = p.memory.total_bytes
    out["prefill_bound"] = p.prefill_bound.value
    out["decode_bound"] = p.decode_bound.value
    out["why"] = p.why()
    out["ops"] = {
        "prefill": [_op_dict(t) for t in p.prefill],
        "decode": [_op_dict(t) for t in p.decode],
    }
    return out


def _op_dict(t: OpTime) -> dict[str, Any]:
    op = t.op
    return {
        "name": op.name,
        "kind": op.kind.value,
        "count": op.count,
        "shape": [op.batch, op.m, op.n, op.k],
        "flops": op.flops,
        "memory_bytes": op.memory_bytes,
        "comm_bytes": op.comm_bytes,
        "rate": t.rate_key,
        "compute_s": t.compute_s,
        "memory_s": t.memory_s,
        "comm_s": t.comm_s,
        "overhead_s": t.overhead_s,
        "time_s": t.time_s,
        "total_s": t.total_s,
        "bound": t.bound.value,
        "why": t.why,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.4g} GB"


def _print_summary(p: Prediction, device: str) -> None:
    from rich.console import Console
    from rich.table import Table

    sc = p.scenario
    lo, hi = p.band
    table = Table(
        title=f"{p.model} on {p.num_devices} x {device}: batch {sc.batch}, prompt {sc.prompt_len}, "
        f"output {sc.output_len}, tp {sc.tp} pp {sc.pp} ep {sc.ep} dp {sc.dp}, weights "
        f"{sc.weight_format}, acts {sc.act_format}, kv {sc.kv_format}"
    )
    table.add_column("metric")
    table.add_column("predicted", justify="right")
    table.add_column(f"band (x{lo:.2f} .. x{hi:.2f})", justify="right")
    for label, value in (
        ("time to first token", p.ttft_s),
        ("time per output token", p.tpot_s),
        ("end-to-end latency", p.e2e_latency_s),
    ):
        table.add_row(label, _ms(value), f"{_ms(value * lo)} .. {_ms(value * hi)}")
    t_lo, t_hi = p.throughput_band
    rate = p.throughput_tokens_per_s
    table.add_row(
        "throughput (prompt + output)",
        f"{rate:,.0f} tok/s",
        f"{rate / t_hi:,.0f} .. {rate / t_lo:,.0f} tok/s",
    )
    table.add_row("  per device", f"{p.tokens_per_s_per_device:,.0f} tok/s", "")
    table.add_row("decode throughput", f"{p.decode_tokens_per_s:,.0f} tok/s", "")
    m = p.memory
    table.add_row(
        "memory per device",
        f"{_gb(m.total_bytes)} of {_gb(p.memory_capacity_bytes)}",
        "[green]fits[/green]" if p.fits else "[red]does not fit[/red]",
    )
    table.add_row(
        "  weights (of which scales)", f"{_gb(m.weight_bytes)} ({_gb(m.weight_scale_bytes)})", ""
    )
    table.add_row("  KV cache", _gb(m.kv_cache_bytes), "")
    table.add_row("  activations (peak)", _gb(m.activation_bytes), "")
    table.add_row("energy per token", f"{p.energy_per_token_j:.4g} J", "")
    table.add_row("energy per output token", f"{p.energy_per_output_token_j:.4g} J", "")
    cost = p.cost_per_million_tokens_usd
    table.add_row("cost per million tokens", "-" if cost is None else f"${cost:.4g}", "")
    console = Console()
    console.print(table)
    console.print(f"band: {p.band_note}")
    if p.engine != "ideal":
        quant_pre, quant_dec = p.act_quant_s
        console.print(
            f"engine {p.engine}: {_ms(p.step_overhead_s)} host time per step, "
            f"activation-quantization kernels {_ms(quant_pre)} in prefill and "
            f"{_ms(quant_dec)} per decode step (in TTFT and TPOT, not in the op breakdown)"
        )
    console.print(p.why())


def _print_ops(title: str, ops: tuple[OpTime, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    total = sum(t.total_s for t in ops) or 1.0
    table = Table(title=title)
    for col in (
        "op",
        "x",
        "batch.m.n.k",
        "rate",
        "compute",
        "memory",
        "comm",
        "total",
        "%",
        "bound",
    ):
        table.add_column(col, justify="left" if col in ("op", "rate", "bound") else "right")
    for t in ops:
        op = t.op
        shape = f"{op.batch}.{op.m}.{op.n}.{op.k}"
        table.add_row(
            op.name,
            str(op.count),
            shape,
            t.rate_key,
            f"{t.compute_s * 1e6:.3g} us",
            f"{t.memory_s * 1e6:.3g} us",
            f"{t.comm_s * 1e6:.3g} us" if t.comm_s else "-",
            _ms(t.total_s),
            f"{t.total_s / total:.1%}",
            t.bound.value,
        )
    Console().print(table)


@with_scenario_flags
def roofline_command(
    model: Model,
    device: Device,
    out: Annotated[Path, typer.Option("--out", help="directory for roofline.html / .png")],
    scenario: dict[str, Any],
    png: Annotated[bool, typer.Option("--png/--no-png", help="also write a PNG")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the files written and the plotted points as JSON")
    ] = False,
) -> None:
    """Write a roofline plot (HTML, and PNG) placing each op by arithmetic intensity."""
    from rich.console import Console

    from quarch.perf._plot import roofline_points, write_roofline

    hw, p = _predict(model, device, scenario)
    with user_errors():
        written = write_roofline(p, hw, out, png=png)
    if as_json:
        points, skipped = roofline_points(p)
        payload = {
            "files": written,
            "points": [dataclasses.asdict(pt) for pt in points],
            "skipped": skipped,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console = Console()
    console.print(f"wrote {written['html']}")
    if "png" in written:
        console.print(f"wrote {written['png']} (via {written['png_engine']})")
    elif png:
        console.print(f"[yellow]no PNG:[/yellow] {written['png_error']}")
