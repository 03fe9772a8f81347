"""`quarch export`: write a quantized design as a checkpoint vLLM or transformers loads.

    quarch export --model M --config CFG.yaml --to compressed-tensors --out DIR
    quarch export --front STUDY_DIR --point NAME --to hf --out DIR
    quarch export --config CFG.yaml --to gguf --out model.gguf

The design is a QuantConfig file, or a point of a finished `quarch explore` (its config file
under STUDY_DIR/configs/, its model the study's unless --model names another). The verb parses
options, calls `quarch.export.export_model` and prints the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarch._cli_util import fail, user_errors

if TYPE_CHECKING:
    from quarch.quant import QuantConfig


def design_from_front(front: Path, point: str) -> tuple[QuantConfig, str | None]:
    """The QuantConfig of point `point` (its name or key) of the study in `front`, and the
    study's model (None: the shipped one)."""
    from quarch.quant import QuantConfig
    from quarch.search import StudyResult

    result = StudyResult.load(front)
    matches = [p for p in result.points if point in (p.name, p.key)]
    if not matches:
        with_config = [p.name for p in result.points if p.config is not None]
        raise ValueError(
            f"study {str(front)!r} has no point {point!r}; points with a config: {with_config}"
        )
    chosen = matches[0]
    if chosen.config is None:
        raise ValueError(
            f"point {point!r} of {str(front)!r} has no config file (only measured front points "
            "have one); pick a front point"
        )
    config = QuantConfig.load(str(front / chosen.config))
    model = str(result.study.get("model", "shipped"))
    return config, None if model == "shipped" else model


def resolve_design(
    *, model: str | None, config: Path | None, front: Path | None, point: str | None
) -> tuple[QuantConfig, str | None]:
    """(config, model source) from either --config or --front/--point; ValueError otherwise."""
    from quarch.quant import QuantConfig

    if (config is None) == (front is None):
        raise ValueError("give --config FILE, or --front STUDY_DIR with --point NAME (not both)")
    if front is not None:
        if point is None:
            raise ValueError("--front needs --point NAME (a point of the study's front)")
        cfg, study_model = design_from_front(front, point)
        return cfg, model if model is not None else study_model
    if point is not None:
        raise ValueError("--point is for --front")
    assert config is not None
    return QuantConfig.load(str(config)), model


def _needs_calibration(config: QuantConfig) -> bool:
    """Whether a weight method of the config needs calibration windows (GPTQ, AWQ, ...)."""
    from quarch.quant import Role, get_method

    specs = [r.spec for r in config.rules if r.role is Role.WEIGHT and r.format is not None]
    specs += [s for role, s in config.default.items() if role is Role.WEIGHT and s.format]
    return any(get_method(s.method).needs_calibration for s in specs)


@contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[str, int], Callable[[], None]] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        bar.add_task("quantizing and writing", total=None)  # a pulse for the whole export

        def start(task: str, total: int) -> Callable[[], None]:
            tid = bar.add_task(task, total=total)
            return lambda: bar.advance(tid)

        yield start


def run_export(
    *,
    model: str | None,
    config: QuantConfig,
    target: str,
    out: Path,
    calib: tuple[int, int] = (32, 512),
    progress: bool = True,
) -> dict[str, Any]:
    """Load the model in float32, export it, return the record as a dict."""
    import torch

    from quarch.export import Target, export_model
    from quarch.export._api import check_output
    from quarch.models import TINY_MODELS, load_model, tiny_model

    Target.parse(target)  # an unknown target fails before the model loads
    check_output(out, target)  # so does an output that cannot be written
    if model in TINY_MODELS:  # a study on a random tiny model (tests, examples)
        loaded = tiny_model(model, dtype=torch.float32)
    else:
        loaded = load_model(model, dtype=torch.float32)
    windows = None
    if _needs_calibration(config):
        from quarch.eval import calibration_windows, select_text

        text = select_text(part="calibration")  # never overlaps the evaluation part
        windows = calibration_windows(
            loaded.tokenizer, text, n=calib[0], seqlen=calib[1], seed=config.seed
        )
    with _bar(progress) as bar:
        record = export_model(loaded, config, target, out, calib_windows=windows, progress=bar)
    return record.to_dict()


def _print(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    console.print(
        f"wrote {record['target']} checkpoint to {escape(record['out_dir'])} "
        f"({record['bytes_written'] / 2**20:.1f} MiB, {record['time_s']:.1f} s)"
    )
    for scheme, n in record["schemes"].items():
        console.print(f"  {n:4d} × {escape(scheme)}")
    for gtype, n in record.get("tensor_types", {}).items():
        console.print(f"  {n:4d} tensors {escape(gtype)}")
    for role, counts in record["kv_cache"].items():
        quantized = {f: n for f, n in counts.items() if f != "float"}
        if quantized:
            console.print(f"  {escape(role)}: {escape(str(quantized))}")
    for line in record["not_expressed"]:
        console.print(f"[yellow]not in the checkpoint:[/yellow] {escape(line)}")
    for line in record["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(line)}")


def export_verb(
    to: Annotated[str, typer.Option("--to", help="target: hf, compressed-tensors or gguf")],
    out: Annotated[
        Path, typer.Option(help="checkpoint directory (gguf: a .gguf file or a directory)")
    ],
    model: Annotated[
        str | None, typer.Option(help="HF dir, .gguf file or cached hub id [default: SmolLM2]")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="QuantConfig YAML/JSON file")] = None,
    front: Annotated[
        Path | None, typer.Option(help="output directory of a finished `quarch explore`")
    ] = None,
    point: Annotated[str | None, typer.Option(help="name of a front point of --front")] = None,
    calib_samples: Annotated[int, typer.Option(help="calibration windows (GPTQ, ...)")] = 32,
    calib_seqlen: Annotated[int, typer.Option(help="calibration window length")] = 512,
    as_json: Annotated[bool, typer.Option("--json", help="print the export record")] = False,
) -> None:
    """Quantize a design and write it as a checkpoint vLLM or transformers loads."""
    with user_errors():
        cfg, source = resolve_design(model=model, config=config, front=front, point=point)
        try:
            record = run_export(
                model=source,
                config=cfg,
                target=to,
                out=out,
                calib=(calib_samples, calib_seqlen),
                progress=not as_json,
            )
        except ImportError as err:
            raise fail(str(err)) from None
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        _print(record)


def register(app: typer.Typer) -> None:
    """Add `quarch export` to the app."""
    app.command("export")(export_verb)
