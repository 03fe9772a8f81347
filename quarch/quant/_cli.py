"""CLI verbs of `quarch.quant`: `quarch quantize` and `quarch sensitivity`.

Thin shells over `quarch.quant.run_quantize` and `run_sensitivity`: parse options, call, print
the record (tables on the terminal, or one JSON record with `--json`), write it with `--out`.
Heavy imports happen inside the verbs so `quarch --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarch._atomic import writable_file, write_text
from quarch._cli_util import (
    DatasetOption,
    DeviceOption,
    DtypeOption,
    JsonRecordOption,
    ModelOption,
    TextFileOption,
    user_errors,
)
from quarch._yaml import load_yaml_text

if TYPE_CHECKING:
    from quarch.quant._config import QuantConfig

_MethodParams = Annotated[
    list[str] | None, typer.Option(help="method parameter key=value (repeatable)")
]
_CalibWindows = Annotated[int, typer.Option(help="calibration windows")]
_CalibSeqlen = Annotated[int, typer.Option(help="calibration window length")]


def parse_method_params(items: Sequence[str]) -> dict[str, Any]:
    """`k=v` strings to a dict; values read as YAML scalars (`8` int, `0.01` float, `true`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--method-param {item!r}: expected key=value")
        out[key.strip()] = load_yaml_text(value, where=f"--method-param {key.strip()}")
    return out


def config_from_options(
    *,
    config: Path | None,
    weights: str | None,
    acts: str | None = None,
    kv: str | None = None,
    method: str = "rtn",
    method_params: Sequence[str] = (),
    rotation: str | None = None,
    seed: int = 0,
) -> QuantConfig:
    """The QuantConfig a command line asks for: a YAML/JSON file, or uniform formats.

    Raises ValueError when both or neither are given, or a flag would be ignored.
    """
    from quarch.quant._config import QuantConfig

    uniform = (weights, acts, kv)
    if config is not None:
        if any(u is not None for u in uniform) or method_params or method != "rtn":
            raise ValueError("give --config or --weights/--acts/--kv/--method, not both")
        return QuantConfig.load(str(config))
    if all(u is None for u in uniform):
        raise ValueError("give --config FILE or at least one of --weights/--acts/--kv")
    return QuantConfig.uniform(
        weights=weights,
        acts=acts,
        kv=kv,
        method=method,
        rotation=rotation,
        seed=seed,
        **parse_method_params(method_params),
    )


def _print_quantize(record: dict[str, Any]) -> None:
    """The quantization summary on stderr, then the perplexity tables (float first)."""
    from rich.console import Console
    from rich.table import Table

    from quarch.eval import domain_rows, print_eval

    if "float_perplexity" in record:
        print_eval({**record, "perplexity": record["float_perplexity"]}, {"quant": "float"})
    quant = record["quantization"]
    rows: dict[tuple[Any, ...], int] = {}
    for r in quant["layers"]:
        if r["kind"] == "attention":
            key: tuple[Any, ...] = ("K/V cache", f"{r['k_format']} / {r['v_format']}", "", "")
        else:
            key = (r["kind"], r["weight_format"] or "float", r["method"] or "", r["input_format"])
        rows[key] = rows.get(key, 0) + 1
    table = Table(title=f"quantized: {quant['bits_per_weight']:.3f} bits/weight")
    for col in ("layers", "kind", "weights", "method", "input"):
        table.add_column(col)
    for key, n in rows.items():
        table.add_row(str(n), *(str(k or "") for k in key))
    Console(stderr=True).print(table)
    extra = {"bits_per_weight": round(quant["bits_per_weight"], 4), "quantize_s": quant["time_s"]}
    print_eval(record, extra | domain_rows(record))


def quantize_verb(
    model: ModelOption = None,
    config: Annotated[Path | None, typer.Option(help="QuantConfig YAML/JSON file")] = None,
    weights: Annotated[str | None, typer.Option(help="weight format of every linear")] = None,
    acts: Annotated[str | None, typer.Option(help="input-activation format")] = None,
    kv: Annotated[str | None, typer.Option(help="KV-cache format (K after RoPE)")] = None,
    method: Annotated[str, typer.Option(help="weight method: rtn, gptq, awq, ...")] = "rtn",
    method_param: _MethodParams = None,
    rotation: Annotated[str | None, typer.Option(help="model rotation: hadamard")] = None,
    calib_samples: _CalibWindows = 32,
    calib_seqlen: _CalibSeqlen = 512,
    calib_text_file: Annotated[Path | None, typer.Option(help="calibration text file")] = None,
    seed: Annotated[int, typer.Option(help="seed of calibration sampling and rotation")] = 0,
    eval_seqlen: Annotated[int, typer.Option(help="perplexity window length")] = 512,
    eval_windows: Annotated[int | None, typer.Option(help="evaluate the first N windows")] = None,
    text_file: TextFileOption = None,
    dataset: DatasetOption = None,
    dtype: DtypeOption = None,
    device: DeviceOption = "cpu",
    baseline: Annotated[bool, typer.Option(help="also measure the float model first")] = False,
    out: Annotated[Path | None, typer.Option(help="write the result JSON here")] = None,
    as_json: JsonRecordOption = False,
) -> None:
    """Quantize a model with a config (or uniform formats), then measure its perplexity."""
    from quarch.quant import run_quantize

    with user_errors(ImportError):
        if out is not None:
            writable_file(out)  # before the work, not after
        record = run_quantize(
            model=model,
            config=config_from_options(
                config=config,
                weights=weights,
                acts=acts,
                kv=kv,
                method=method,
                method_params=method_param or (),
                rotation=rotation,
                seed=seed,
            ),
            calib=(calib_samples, calib_seqlen, calib_text_file),
            eval_seqlen=eval_seqlen,
            eval_windows=eval_windows,
            text_file=text_file,
            dataset=dataset,
            dtype=dtype,
            device=device,
            baseline=baseline,
            progress=not as_json,
        )
    _emit(record, as_json=as_json, out=out, show=_print_quantize)


def sensitivity_verb(
    model: ModelOption = None,
    weights: Annotated[
        str | None, typer.Option(help="format given to each group's weights")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="format for --role other than weight")
    ] = None,
    role: Annotated[str, typer.Option(help="weight, input, k_cache or v_cache")] = "weight",
    method: Annotated[str, typer.Option(help="weight method")] = "rtn",
    method_param: _MethodParams = None,
    windows: Annotated[int, typer.Option(help="evaluation windows")] = 4,
    seqlen: Annotated[int, typer.Option(help="evaluation window length")] = 256,
    additivity: Annotated[
        int, typer.Option(help="random multi-group configs to test additivity on (0: skip)")
    ] = 0,
    calib_samples: _CalibWindows = 32,
    calib_seqlen: _CalibSeqlen = 512,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    text_file: TextFileOption = None,
    dataset: DatasetOption = None,
    dtype: DtypeOption = None,
    device: DeviceOption = "cpu",
    out: Annotated[Path | None, typer.Option(help="write the table JSON here")] = None,
    as_json: JsonRecordOption = False,
) -> None:
    """Quantize one layer group at a time; table of perplexity change and KL vs float."""
    from quarch.quant import run_sensitivity

    with user_errors(ImportError):
        if out is not None:
            writable_file(out)  # before the work, not after
        if (weights is None) == (fmt is None):
            raise ValueError("give exactly one of --weights FMT or --format FMT (with --role)")
        if weights is not None and role != "weight":
            raise ValueError("--weights is for --role weight; use --format for other roles")
        record = run_sensitivity(
            model=model,
            fmt=weights or fmt or "",
            role=role,
            method=method,
            params=parse_method_params(method_param or ()),
            windows=windows,
            seqlen=seqlen,
            additivity=additivity,
            calib=(calib_samples, calib_seqlen),
            seed=seed,
            text_file=text_file,
            dataset=dataset,
            dtype=dtype,
            device=device,
            progress=not as_json,
        )
    _emit(record, as_json=as_json, out=out, show=_print_sensitivity)


def _print_sensitivity(record: dict[str, Any]) -> None:
    """The sensitivity table (and the additivity summary) on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = record["table"]
    console = Console(stderr=True)
    t = Table(
        title=f"sensitivity: {table['role']} → {table['format']} ({table['method']}); "
        f"float ppl {table['base_ppl']:.3f}, {table['num_tokens']} tokens"
    )
    for col in ("group", "Δppl", "ΔNLL", "KL (nats)"):
        t.add_column(col)
    for e in sorted(table["entries"], key=lambda e: -e["delta_nll"]):
        t.add_row(e["group"], f"{e['delta_ppl']:+.4f}", f"{e['delta_nll']:+.5f}", f"{e['kl']:.5f}")
    console.print(t)
    add = record.get("additivity")
    if add is not None:
        console.print(
            f"additivity over {len(add['points'])} configs: pearson(ΔNLL) "
            f"{add['pearson_delta_nll']:.3f}, spearman {add['spearman_delta_nll']:.3f}, "
            f"mean |error|/measured {add['rel_error_delta_nll']:.2f}, measured/predicted "
            f"{add['ratio_delta_nll']:.2f}"
        )


def _emit(
    record: dict[str, Any], *, as_json: bool, out: Path | None, show: Callable[[Any], None]
) -> None:
    """Print a verb's record (one JSON record, or `show`'s tables) and write it to `out`."""
    text = json.dumps(record, indent=2)
    if as_json:
        typer.echo(text)
    else:
        show(record)
    if out is not None:
        with user_errors():
            write_text(out, text + "\n")


def register(app: typer.Typer) -> None:
    """Add `quarch quantize` and `quarch sensitivity` to the app."""
    app.command("quantize")(quantize_verb)
    app.command("sensitivity")(sensitivity_verb)
