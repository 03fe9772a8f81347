"""`quarch hw list` and `quarch hw show` end to end."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from quarch.hardware._cli import register

app = typer.Typer()
register(app)


def test_list() -> None:
    result = CliRunner().invoke(app, ["hw", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "h100-sxm" in result.output and "tpu-v6e" in result.output
    h100 = next(line for line in result.output.splitlines() if "h100-sxm" in line)
    assert "989.4" in h100 and "TFLOP/s" in result.output  # H100 SXM dense BF16 (whitepaper)


def test_show_prints_every_number_with_its_source() -> None:
    result = CliRunner().invoke(app, ["hw", "show", "h100-sxm"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "memory[0].bytes_per_s" in result.output and "3.35 TB/s" in result.output
    assert "H100 Tensor Core GPU Datasheet" in result.output
    assert "estimate:" in result.output  # idle power is an assumption, and says so
    assert "efficiency in use" in result.output


def test_show_json_and_errors() -> None:
    result = CliRunner().invoke(app, ["hw", "show", "a100-sxm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["memory"][0]["bytes_per_s"] == 2.039e12  # A100 80GB datasheet: 2,039 GB/s
    assert "memory[0].bytes_per_s" in data["sources"]
    assert data["efficiency_resolved"]["matmul_fraction"] == 0.75
    bad = CliRunner().invoke(app, ["hw", "show", "h900"])
    assert bad.exit_code == 2 and "unknown hardware 'h900'" in bad.output
