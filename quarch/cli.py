"""The `quarch` command: a thin shell over the Python API, one verb per job.

Each subpackage owns its verbs in a private `_cli.py` exposing `register(app)`. This module only
knows, per verb, its name, the module that registers it and a one-line help (`VERBS`); a verb's
module is imported when that verb runs or its own `--help` is asked, never for `quarch --help` or
`quarch --version`, so those stay fast and import no torch (the lazy-group pattern of click's
documentation, "Lazily Loading Subcommands", on typer's group class).

Adding a verb is one line in `VERBS`: `"name": ("quarch.pkg._cli", "one-line help")`, where
`quarch.pkg._cli.register(app)` adds a command (or a sub-app, like `hw`) called `name`. One module
may register several verbs (each gets its own line). `tests/test_quarch_cli.py` checks that every
line names a command its module really registers, and that every registered command has a line.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

VERBS: dict[str, tuple[str, str]] = {
    "formats": ("quarch.formats._cli", "Quantization error of formats over real weight tensors."),
    "models": ("quarch.models._cli", "The model catalog, or one model's architecture."),
    "hw": ("quarch.hardware._cli", "The hardware catalog: `hw list`, `hw show NAME`."),
    "predict": ("quarch.perf._cli", "Predict latency, throughput, memory, energy and cost."),
    "roofline": ("quarch.perf._cli", "Write a roofline plot of a model's ops on a device."),
    "calibrate": ("quarch.measure._cli", "Time this machine and write a Hardware YAML."),
    "validate": ("quarch.measure._cli", "Compare the perf model's predictions with timings."),
    "quantize": ("quarch.quant._cli", "Quantize a model with a config, then measure perplexity."),
    "sensitivity": ("quarch.quant._cli", "Perplexity change of quantizing each layer group."),
    "eval": ("quarch.eval._cli", "Perplexity of a model on a text."),
    "explore": ("quarch.report._cli", "Search per-layer formats for the Pareto front."),
    "report": ("quarch.report._cli", "Redraw a finished study's report and front table."),
    "export": ("quarch.export._cli", "Write a design as a checkpoint vLLM or transformers loads."),
}
"""verb -> (module whose `register(app)` adds it, one-line help shown by `quarch --help`)."""


def load_verbs(module_name: str) -> dict[str, Any]:
    """Import a verb module and return the click commands its `register(app)` adds, by name."""
    sub = typer.Typer()
    importlib.import_module(module_name).register(sub)
    return dict(typer.main.get_group(sub).commands)


class LazyGroup(TyperGroup):
    """A typer group that lists `VERBS` without importing them and imports a verb on use."""

    _listing = False  # True while help or completion lists the verbs: hand out placeholders

    def list_commands(self, ctx: Any) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in VERBS:
            return None
        if cmd_name not in self.commands:
            if self._listing:
                return TyperCommand(cmd_name, help=VERBS[cmd_name][1])
            for name, command in load_verbs(VERBS[cmd_name][0]).items():
                self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._placeholders():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self._placeholders():
            return super().shell_complete(ctx, incomplete)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # typer suggests near names from the commands loaded so far; suggest from every verb.
        if args and args[0] not in VERBS and not args[0].startswith("-"):
            from difflib import get_close_matches

            close = get_close_matches(args[0], list(VERBS))
            hint = f" Did you mean {', '.join(repr(v) for v in close)}?" if close else ""
            ctx.fail(f"No such command {args[0]!r}.{hint}")
        return super().resolve_command(ctx, args)

    @contextmanager
    def _placeholders(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quarch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from quarch import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"quarch {_version()}")
        raise typer.Exit()


app = typer.Typer(
    name="quarch",
    cls=LazyGroup,
    help="Which number formats should each part of an LLM use, on which hardware, and what does "
    "that cost in accuracy, memory, latency, energy and money?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print quarch's version and exit.",
        ),
    ] = False,
) -> None:
    """Which number formats should each part of an LLM use, on which hardware, at what cost?"""


def main() -> None:
    """Console-script entry point (also `python -m quarch`)."""
    app(prog_name="quarch")


if __name__ == "__main__":
    main()
