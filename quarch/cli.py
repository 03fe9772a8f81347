"""The `quarch` command: a thin shell over the Python API, one verb per job.

Each subpackage owns its verbs in a private `_cli.py` exposing `register(app)`; this module only
assembles them, so the verbs of one part never import the heavy dependencies of another.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="quarch",
    help="Which number formats should each part of an LLM use, on which hardware, and what does "
    "that cost in accuracy, memory, latency, energy and money?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_VERB_MODULES = (
    "quarch.formats._cli",
    "quarch.models._cli",
    "quarch.hardware._cli",
    "quarch.perf._cli",
    "quarch.measure._cli",
    "quarch.quant._cli",
    "quarch.eval._cli",
    "quarch.report._cli",
)


@app.callback()
def _root() -> None:
    """Which number formats should each part of an LLM use, on which hardware, at what cost?"""


for _name in _VERB_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
