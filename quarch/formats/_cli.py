"""`quarch formats`: quantization error of number formats over real weight tensors."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from pathlib import Path
from typing import Annotated

import typer

from quarch._cli_util import USER_ERRORS, fail

DEFAULT_FORMATS = (
    "bf16,fp8_e4m3_c,int8,mxfp8_e4m3,mxfp6_e2m3,mxfp6_e3m2,int4_g128,int4_g128_asym,nf4,"
    "mxfp4,nvfp4,int3_g128,ternary"
)


def register(app: typer.Typer) -> None:
    """Add `quarch formats` to the app."""
    app.command("formats")(formats_command)


def formats_command(
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="a .gguf or .safetensors file (default: the shipped SmolLM2-135M-Instruct GGUF)",
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--formats", help="comma-separated format strings (docs/formats.md)")
    ] = DEFAULT_FORMATS,
    tensors: Annotated[
        str, typer.Option("--tensors", help="only tensors whose name matches this glob")
    ] = "*",
    max_tensors: Annotated[
        int, typer.Option("--max-tensors", help="stop after this many tensors (0: all)")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Quantization error of formats over real weight tensors (bits/element, MSE, SQNR, max)."""
    from rich.console import Console

    from quarch.formats import Format
    from quarch.models import count_weight_tensors, iter_weight_tensors, open_weight_file

    err = Console(stderr=True)
    try:
        fmts = [Format.parse(s) for s in formats.split(",") if s.strip()]
        if not fmts:
            raise ValueError("--formats names no format")
        if max_tensors < 0:
            raise ValueError(f"--max-tensors must be ≥ 0, got {max_tensors}")
        wf = open_weight_file(weights)
    except USER_ERRORS as e:
        raise fail(e) from None
    total = count_weight_tensors(wf)
    selected = ((n, t) for n, t in iter_weight_tensors(wf) if fnmatch.fnmatchcase(n, tensors))
    limit = max_tensors or total
    rows = _run(fmts, selected, min(limit, total), limit, err)
    if not rows or rows[0].num_tensors == 0:
        raise fail(f"no tensor of {wf.path} matches {tensors!r}")
    if as_json:
        payload: dict[str, object] = {
            "source": str(wf.path),
            "storage": wf.storage,
            "tensor_filter": tensors,
            "formats": [_jsonable(dataclasses.asdict(r)) for r in rows],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_table(rows, wf.storage_note)


def _run(fmts, selected, shown_total, limit, err):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from quarch.formats._compare import compare_formats

    def limited():  # type: ignore[no-untyped-def]
        for i, item in enumerate(selected):
            if i >= limit:
                return
            yield item

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("quantizing tensors", total=shown_total)
        try:
            return compare_formats(fmts, limited(), on_tensor=lambda name: progress.advance(task))
        except USER_ERRORS as e:
            raise fail(e) from None


def _jsonable(d: dict[str, object]) -> dict[str, object]:
    return {
        k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
    }


def _print_table(rows, note: str) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    first = rows[0]
    table = Table(
        title=f"Quantization error over {first.num_tensors} tensors "
        f"({first.num_elements:,} elements)",
        caption=note,
    )
    for col in ("format", "bits/element", "MSE", "SQNR (dB)", "max abs error", "time (s)"):
        table.add_column(col, justify="left" if col == "format" else "right")
    for r in rows:
        table.add_row(
            r.format,
            f"{r.bits_per_element:.3f}",
            f"{r.mse:.3e}",
            f"{r.sqnr_db:.2f}",
            f"{r.max_abs_error:.3e}",
            f"{r.seconds:.2f}",
        )
    Console().print(table)
