"""`quarch calibrate` and `quarch validate` end to end, on tiny grids and models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarch.cli import app
from quarch.hardware import load_hardware
from quarch.measure import _calibrate, _validate
from quarch.measure._calibrate import Grid
from quarch.measure._validate import Plan
from quarch.models import spec_from_dict

TINY_GRID = Grid(
    ms=(1, 4),
    nks=((64, 64),),
    working_sets=(2**18, 2**20),
    silu_shapes=((1, 256),),
    attention=((1, 32, 1),),
    budget_s=0.01,
)


def _tiny_plan() -> Plan:
    spec = spec_from_dict(
        {
            "name": "tiny",
            "family": "llama",
            "vocab_size": 128,
            "hidden_size": 32,
            "num_layers": 1,
            "num_heads": 2,
            "num_kv_heads": 2,
            "head_dim": 16,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
        }
    )
    return Plan(
        small=spec,
        large=spec,
        large_tp=2,
        formats=("fp32",),
        decode_kv=(4, 8),
        prefill_tokens=(4,),
        large_decode_kv=(4,),
        batch=(1,),
        budget_s=0.005,
    )


def test_calibrate_then_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_calibrate, "grid_for", lambda quick, hst: TINY_GRID)
    monkeypatch.setattr(_validate, "QUICK", _tiny_plan())
    runner = CliRunner()
    out = tmp_path / "local.yaml"
    res = runner.invoke(
        app, ["calibrate", "--quick", "--threads", "1", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["file"] == str(out) and payload["params"]["matrix.fp32"] > 0
    assert load_hardware(out).name == payload["hardware"]

    res = runner.invoke(app, ["validate", "--hw", str(out), "--quick", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert {r["op_class"] for r in report["rows"]} == {
        "matmul",
        "attention",
        "elementwise",
        "layer",
        "model",
    }
    assert report["summary"]["all"]["rows"] == len(report["rows"])

    res = runner.invoke(app, ["validate", "--hw", str(out), "--quick", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "absolute percentage error per op class" in res.output


def test_validate_reports_a_missing_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["validate", "--hw", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    assert "no Hardware file" in res.output


def test_calibrate_rejects_a_bad_name_before_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timing(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("timed before checking the name")

    monkeypatch.setattr(_calibrate, "run_steps", no_timing)
    result = CliRunner().invoke(app, ["calibrate", "--name", "My CPU"])
    assert result.exit_code == 2
    assert "lowercase with no spaces" in result.output
