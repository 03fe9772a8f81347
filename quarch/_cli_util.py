"""What every `quarch` verb shares: the one way a user error ends a command.

A verb calls the Python API inside `with user_errors():`; a `ValueError`, `TypeError` or
`FileNotFoundError` from it (bad input, by the API's contract), or any other `OSError` (a full
disk, a read-only directory: the machine's refusal, not a bug), becomes one red line
`error: <message>` on stderr and exit code 2, never a traceback. A verb that finds a problem
itself raises `fail("...")`. The message goes through `rich.markup.escape`, so user text such as
a file named `a[/x].yaml` prints as written instead of being read as rich markup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

USER_ERRORS = (ValueError, TypeError, FileNotFoundError)
"""The exceptions the API raises for bad input; anything else is a bug and keeps its traceback."""

# The options of every verb that loads a model and scores it on a text (eval, quantize,
# sensitivity): one declaration each, so they read and behave alike.
ModelOption = Annotated[
    str | None,
    typer.Option(help="HF model directory, .gguf file, or cached hub id [default: SmolLM2]"),
]
TextFileOption = Annotated[
    Path | None, typer.Option(help="UTF-8 text file to evaluate on [default: built-in text]")
]
DatasetOption = Annotated[
    str | None, typer.Option(help="cached `datasets` name, e.g. wikitext-2-raw-v1")
]
# `quarch.eval.DTYPES`, written out so that `--help` imports no torch
DtypeOption = Annotated[
    str | None,
    typer.Option(
        help="weight dtype: float32, bfloat16, float16 [default: bfloat16 on GPUs, float32 on CPU]"
    ),
]
DeviceOption = Annotated[str, typer.Option(help="where the model runs: cpu, cuda, cuda:N, mps")]
JsonRecordOption = Annotated[bool, typer.Option("--json", help="print a JSON record")]

EXIT_USER_ERROR = 2
"""The exit code of a command stopped by bad input (click uses 2 for usage errors too)."""


def fail(problem: BaseException | str) -> typer.Exit:
    """Print `error: <problem>` in red on stderr; return the `typer.Exit` for the caller to raise.

    Use as `raise fail(err) from None` (or `raise fail("no tensor matches")`).
    """
    from rich.console import Console
    from rich.markup import escape

    # soft_wrap: the terminal folds a long message, rich does not cut it into lines.
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error:[/red] {escape(_message(problem))}"
    )
    return typer.Exit(EXIT_USER_ERROR)


def _message(problem: BaseException | str) -> str:
    if isinstance(problem, str):
        return problem
    if isinstance(problem, FileNotFoundError) and problem.filename is not None:
        return f"no such file: {problem.filename}"
    if isinstance(problem, OSError) and problem.strerror:
        # the machine refused a read or write (full disk, permissions, file too large)
        where = f": {problem.filename}" if problem.filename is not None else ""
        return f"{problem.strerror}{where}"
    return str(problem) or type(problem).__name__


@contextmanager
def user_errors(*also: type[Exception]) -> Iterator[None]:
    """Turn the API's bad-input exceptions raised inside the block into `fail(...)`, and those
    of the types in `also` (`ImportError` where a verb needs an optional extra)."""
    caught: tuple[type[Exception], ...] = (*USER_ERRORS, *also)
    try:
        yield
    except caught as err:
        raise fail(err) from None
    except OSError as err:  # the file system, not a bug: one line, not a traceback
        raise fail(err) from None
