"""CLI verbs of `quarch.eval`: `quarch eval` (perplexity of a model on a text).

The verb only parses, loads, and hands the loaded model to `run_eval`, which evaluates and prints;
callers that change the model first (e.g. apply a quantization config) call `run_eval` too and
pass their own fields in `extra`. Heavy imports (torch, transformers) happen inside the verb so
`quarch --help` stays fast.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from quarch.eval._corpus import EvalText
    from quarch.eval._perplexity import PerplexityResult
    from quarch.models._load import LoadedModel

DTYPES = ("float32", "bfloat16", "float16")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for package in ("quarch", "torch", "transformers", "gguf", "tokenizers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def eval_record(
    loaded: LoadedModel, result: PerplexityResult, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready record of one evaluation: model, text, result, versions, plus `extra`."""
    parameter = next(loaded.model.parameters())
    return {
        "model": {
            "source": loaded.source,
            "kind": str(loaded.kind),
            "note": loaded.note,
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "load_s": loaded.load_s,
        },
        "perplexity": asdict(result),
        "versions": package_versions(),
        **(extra or {}),
    }


def run_eval(
    loaded: LoadedModel,
    text: EvalText,
    *,
    seqlen: int,
    max_windows: int | None,
    batch_size: int = 1,
    as_json: bool = False,
    extra: dict[str, Any] | None = None,
) -> PerplexityResult:
    """Measure perplexity of a loaded (possibly modified) model and print it (table or JSON)."""
    from rich.console import Console
    from rich.table import Table

    from quarch.eval._perplexity import perplexity

    result = perplexity(
        loaded.model,
        loaded.tokenizer,
        text,
        seqlen=seqlen,
        max_windows=max_windows,
        batch_size=batch_size,
        progress=not as_json,
    )
    if as_json:
        typer.echo(json.dumps(eval_record(loaded, result, extra), indent=2))
        return result
    table = Table(title=f"perplexity ({result.protocol})", show_header=False)
    rows = [
        ("model", f"{loaded.source} ({loaded.kind})"),
        ("weights", loaded.note),
        ("text", f"{result.text_name} (sha256 {result.text_sha256[:16]}…)"),
        ("seqlen × windows", f"{result.seqlen} × {result.num_windows}"),
        ("tokens predicted", f"{result.num_tokens:,}"),
        ("tokens not evaluated", f"{result.dropped_tokens:,} of {result.text_tokens:,}"),
        *((str(k), str(v)) for k, v in (extra or {}).items()),
        ("NLL (nats/token)", f"{result.nll:.4f}"),
        ("perplexity", f"[bold]{result.ppl:.3f}[/bold]"),
        ("wall time", f"{result.wall_s:.1f} s ({result.tokens_per_s:,.0f} tokens/s)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    return result


def _dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return getattr(torch, name)


def eval_verb(
    model: Annotated[
        str | None,
        typer.Option(help="HF model directory, .gguf file, or cached hub id [default: SmolLM2]"),
    ] = None,
    seqlen: Annotated[int, typer.Option(help="window length in tokens")] = 512,
    max_windows: Annotated[
        int | None, typer.Option(help="evaluate only the first N windows [default: all]")
    ] = None,
    text_file: Annotated[
        Path | None, typer.Option(help="UTF-8 text file to evaluate on [default: built-in text]")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="cached `datasets` name, e.g. wikitext-2-raw-v1")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="windows per forward pass")] = 1,
    dtype: Annotated[str, typer.Option(help=f"weight dtype: {', '.join(DTYPES)}")] = "float32",
    trust_remote_code: Annotated[
        bool, typer.Option(help="allow model code shipped with the checkpoint to run")
    ] = False,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="also run lm-eval-harness tasks, comma-separated (needs the `lm-eval` extra "
            "and the tasks' data in the local datasets cache)"
        ),
    ] = None,
    task_limit: Annotated[
        int | None, typer.Option(help="first N examples of each task [default: all]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON record")] = False,
) -> None:
    """Perplexity of a model on a text (GPTQ protocol: non-overlapping windows)."""
    from quarch.eval import _tasks
    from quarch.eval._corpus import select_text
    from quarch.models._load import load_model

    try:
        names = [t.strip() for t in tasks.split(",")] if tasks is not None else []
        if tasks is not None:
            if not all(names):
                raise ValueError(f"--tasks must be comma-separated task names, got {tasks!r}")
            _tasks.require_harness()
        text = select_text(text_file=text_file, dataset=dataset)
        loaded = load_model(model, dtype=_dtype(dtype), trust_remote_code=trust_remote_code)
        extra = None
        if names:
            scores = _tasks.evaluate_tasks(
                loaded.model, loaded.tokenizer, names, limit=task_limit, batch_size=batch_size
            )
            extra = {"tasks": scores}
        run_eval(
            loaded,
            text,
            seqlen=seqlen,
            max_windows=max_windows,
            batch_size=batch_size,
            as_json=as_json,
            extra=extra,
        )
    except (ValueError, TypeError, ImportError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    """Add this subpackage's verbs to the `quarch` app."""
    app.command("eval")(eval_verb)
