"""CLI verbs of `quarch.eval`: `quarch eval` (perplexity of a model on a text).

A thin shell over `quarch.eval.run_eval`: parse, call, print the record (a table, or JSON).
Heavy imports (torch, transformers) happen inside the verb so `quarch --help` stays fast.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from quarch._cli_util import (
    DatasetOption,
    DeviceOption,
    DtypeOption,
    JsonRecordOption,
    ModelOption,
    TextFileOption,
    user_errors,
)


def eval_verb(
    model: ModelOption = None,
    seqlen: Annotated[int, typer.Option(help="window length in tokens")] = 512,
    max_windows: Annotated[
        int | None, typer.Option(help="evaluate only the first N windows [default: all]")
    ] = None,
    text_file: TextFileOption = None,
    dataset: DatasetOption = None,
    batch_size: Annotated[int, typer.Option(help="windows per forward pass")] = 1,
    dtype: DtypeOption = None,
    device: DeviceOption = "cpu",
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
    as_json: JsonRecordOption = False,
) -> None:
    """Perplexity of a model on a text (GPTQ protocol: non-overlapping windows)."""
    from quarch.eval import print_eval, run_eval
    from quarch.eval._pipeline import domain_rows

    with user_errors(ImportError):
        names = [t.strip() for t in tasks.split(",")] if tasks is not None else []
        if tasks is not None and not all(names):
            raise ValueError(f"--tasks must be comma-separated task names, got {tasks!r}")
        record = run_eval(
            model=model,
            text_file=text_file,
            dataset=dataset,
            seqlen=seqlen,
            max_windows=max_windows,
            batch_size=batch_size,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            tasks=names,
            task_limit=task_limit,
            progress=not as_json,
        )
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        rows = domain_rows(record) | ({"tasks": record["tasks"]} if "tasks" in record else {})
        print_eval(record, rows)


def register(app: typer.Typer) -> None:
    """Add this subpackage's verbs to the `quarch` app."""
    app.command("eval")(eval_verb)
