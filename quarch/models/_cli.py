"""`quarch models`: the model catalog, or one model's architecture as quarch sees it."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from quarch._cli_util import user_errors
from quarch.models._spec import ModelSpec


def register(app: typer.Typer) -> None:
    """Add `quarch models` to the app."""
    app.command("models")(models_command)


def models_command(
    model: Annotated[
        str | None,
        typer.Argument(
            help="a catalog name, a config.json, a directory holding one, or a YAML spec; "
            "without it, list the catalog"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the model catalog (parameters, layers, attention, experts), or show one model."""
    from quarch.models._config import list_models, load_model_spec

    with user_errors():
        specs = [load_model_spec(model)] if model else [load_model_spec(n) for n in list_models()]
    if as_json:
        payload = [_summary(s) | {"spec": _jsonable(s)} for s in specs]
        typer.echo(json.dumps(payload if model is None else payload[0], indent=2))
        return
    if model is None:
        _print_catalog(specs)
    else:
        _print_spec(specs[0])


def _summary(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "num_params": spec.num_params,
        "active_params_per_token": spec.active_params_per_token,
        "layer_groups": [dataclasses.asdict(g) for g in spec.layer_groups()],
        "kv_elements_per_token_per_layer": spec.kv_elements_per_token,
    }


def _jsonable(spec: ModelSpec) -> dict[str, Any]:
    return {f.name: _plain(getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.init}


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return list(value) if isinstance(value, tuple) else value


def _attention(spec: ModelSpec) -> str:
    if spec.mla is not None:
        return f"MLA {spec.num_heads}h"
    return f"GQA {spec.num_heads}/{spec.num_kv_heads}"


def _experts(spec: ModelSpec) -> str:
    moe = spec.moe
    if moe is None:
        return "-"
    shared = f"+{moe.num_shared_experts}s" if moe.num_shared_experts else ""
    return f"{moe.experts_per_token}/{moe.num_experts}{shared}"


def _count(n: int) -> str:
    return f"{n / 1e9:,.1f}B" if n >= 1e9 else f"{n / 1e6:,.0f}M"


def _print_catalog(specs: list[ModelSpec]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="quarch model catalog", title_justify="left", box=box.SIMPLE)
    table.add_column("model", no_wrap=True)
    for col in ("params", "active", "layers"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("attention", no_wrap=True)
    table.add_column("experts", no_wrap=True)
    table.add_column("ctx", justify="right", no_wrap=True)
    for s in specs:
        table.add_row(
            s.name,
            _count(s.num_params),
            _count(s.active_params_per_token),
            str(s.num_layers),
            _attention(s),
            _experts(s),
            f"{s.max_position_embeddings // 1024}k",
        )
    Console().print(table)
    Console().print(
        "active: parameters one token uses; attention: query/KV heads; "
        "experts: top-k/routed+shared; ctx: max positions"
    )


def _print_spec(spec: ModelSpec) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=spec.name, title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in _jsonable(spec).items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    table.add_row("parameters", f"{spec.num_params:,}")
    table.add_row("active per token", f"{spec.active_params_per_token:,}")
    groups = ", ".join(f"{g.count} {g.name}" for g in spec.layer_groups())
    table.add_row("layer groups", groups)
    table.add_row("KV elements / token / layer", str(spec.kv_elements_per_token))
    Console().print(table)
