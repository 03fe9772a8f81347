"""The `quarch` command as a whole: lazy verbs, `--help` without torch, `--version`, completion,
the one error path, `roofline --json`, and `hw list` at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from quarch._cli_util import fail, user_errors
from quarch.cli import VERBS, app, load_verbs

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run this interpreter in the repository root, so this checkout's `quarch` is imported."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


# The top-level help (and `--version`) in a fresh interpreter, then report which heavy modules
# the run imported.
_PROBE = """
import json, sys
from quarch.cli import main
sys.argv = ["quarch", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("torch", "transformers", "numpy", "optuna") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_top_level_imports_no_torch(flag: str) -> None:
    run = _python("-c", _PROBE, flag)
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout.strip().splitlines()[-1])
    assert probe == {"code": 0, "heavy": []}
    if flag == "--help":
        for verb in VERBS:  # every verb listed, with its one-line help
            assert verb in run.stdout
        assert "--install-completion" in run.stdout


def test_python_dash_m_and_version() -> None:
    run = _python("-m", "quarch", "--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"quarch {version('quarch')}"


def test_completion_lists_verbs_without_loading_them() -> None:
    env = {"_QUARCH_COMPLETE": "complete_bash", "COMP_WORDS": "quarch pre", "COMP_CWORD": "1"}
    run = _python("-m", "quarch", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["predict"]


def test_the_verb_table_matches_the_modules() -> None:
    """Every `VERBS` line names a command its module registers, and every command has a line."""
    for module in sorted({module for module, _ in VERBS.values()}):
        listed = {verb for verb, (m, _) in VERBS.items() if m == module}
        assert set(load_verbs(module)) == listed, module
    for verb, (_, help_line) in VERBS.items():
        assert help_line and "\n" not in help_line and len(help_line) <= 60, verb


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_loads_on_its_own_help(verb: str) -> None:
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"quarch {verb}" in result.output or "Usage" in result.output


def test_unknown_verb_suggests_a_near_one() -> None:
    result = CliRunner().invoke(app, ["prdict"])
    assert result.exit_code == 2
    assert "No such command 'prdict'" in result.output and "'predict'" in result.output


def test_fail_prints_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = fail(ValueError("unknown format 'a[/x]b' [bold]"))
    assert isinstance(exit_, typer.Exit) and exit_.exit_code == 2
    err = capsys.readouterr().err
    assert err == "error: unknown format 'a[/x]b' [bold]\n"


def test_user_errors_turns_api_errors_into_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for problem in (ValueError("bad [/x]"), TypeError("bad type"), FileNotFoundError(2, "x", "f")):
        with pytest.raises(typer.Exit) as caught, user_errors():
            raise problem
        assert caught.value.exit_code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: bad [/x]", "error: bad type", "error: no such file: f"]
    with pytest.raises(KeyError), user_errors():  # a bug keeps its traceback
        raise KeyError("not a user error")


@pytest.mark.parametrize(
    "args",
    [
        ["models", "no[/x]model"],
        ["predict", "--model", "llama-3.1-8b", "--hw", "dev[/x].yaml"],
        ["hw", "show", "[/x]"],
        ["formats", "--formats", "int4_[/x]"],
    ],
)
def test_markup_in_user_input_is_printed_not_parsed(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert "[/x]" in result.output


def test_roofline_json_is_one_document(tmp_path: Path) -> None:
    args = ["roofline", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--no-png", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)  # the whole output is one JSON document
    assert Path(data["files"]["html"]) == tmp_path / "roofline.html"
    assert (tmp_path / "roofline.html").is_file()
    decode = {p["name"]: p for p in data["points"] if p["phase"] == "decode"}
    # a batch-1 bf16 GEMV does 2 FLOPs per 2-byte weight: intensity just under 1 FLOP/byte
    assert 0.9 < decode["dense.mlp.gate_up"]["intensity_flops_per_byte"] < 1.0
    assert "embed" in data["skipped"]


def test_hw_list_shows_whole_names_at_80_columns() -> None:
    from quarch.hardware import list_hardware, load_hardware

    result = CliRunner().invoke(app, ["hw", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in result.output
    words = result.output.split()
    for name in list_hardware():
        hw = load_hardware(name)
        assert name in words
        # the device column may wrap a long name over lines, but keeps every word of it
        for word in hw.display_name.split():
            assert word in words, (name, word)
