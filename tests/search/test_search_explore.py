"""`explore` end to end on the tiny LLaMA: outputs, configs that apply, resuming, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quarch.eval import builtin_text, perplexity
from quarch.models import tiny_llama
from quarch.quant import QuantConfig, apply_config
from quarch.search import explore, study_from_dict

from .conftest import TINY_STUDY


def test_outputs(tiny_result: Any) -> None:
    out = tiny_result.out_dir
    for name in (
        "study.db",
        "sensitivity.json",
        "measured.json",
        "front.csv",
        "front.json",
        "points.json",
        "study.yaml",
        "result.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "report.html").exists()  # the report is quarch.report's, not explore's
    front = tiny_result.front_points
    assert front and all(p.measured is not None and p.config is not None for p in front)
    assert all((out / p.config).is_file() for p in front)
    bits = [p.metrics["bits"] for p in front]
    assert bits == sorted(bits)
    names = {p.name for p in tiny_result.baselines}
    # float, W int8, W mxfp4, A fp8_e4m3_c, KV fp8_e4m3
    assert names == {"float", "W int8", "W mxfp4", "A fp8_e4m3_c", "KV fp8_e4m3"}
    assert all(p.measured is not None for p in tiny_result.baselines)
    assert tiny_result.trials == 16
    err = tiny_result.proxy_error
    assert err["points"] >= 1 and math.isfinite(err["mean_abs_rel"])
    assert all(p.perf for p in front) and all(p.perf for p in tiny_result.baselines)
    rows = json.loads((out / "front.json").read_text())
    assert [r["key"] for r in rows] == [p.key for p in front]


def test_front_configs_apply_and_reproduce_the_measured_perplexity(tiny_result: Any) -> None:
    """Each front YAML loads through quarch.quant and, applied to a fresh model, gives the
    perplexity the study measured, by the pinned protocol of quarch.eval."""
    acc = tiny_result.spec.accuracy
    for p in tiny_result.front_points[:3]:
        config = QuantConfig.load(str(tiny_result.config_path(p)))
        model = tiny_llama(seed=0)
        apply_config(model.model, config, progress=False)
        ref = perplexity(
            model.model,
            model.tokenizer,
            builtin_text("eval"),
            seqlen=acc.eval_seqlen,
            max_windows=acc.eval_windows,
            progress=False,
        )
        assert ref.ppl == pytest.approx(p.measured["ppl"], rel=1e-5), p.name


def test_quarch_quantize_accepts_a_front_config(tiny_result: Any, tmp_path: Path) -> None:
    """`quarch quantize --config` on a front YAML (the tiny model saved as an HF directory)
    reports the perplexity the study measured for that design."""
    from quarch.cli import app

    model = tiny_llama(seed=0)
    folder = tmp_path / "tiny-hf"
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    acc = tiny_result.spec.accuracy
    point = next(p for p in tiny_result.front_points if not p.baseline)
    result = CliRunner().invoke(
        app,
        [
            "quantize",
            "--model",
            str(folder),
            "--config",
            str(tiny_result.config_path(point)),
            "--eval-seqlen",
            str(acc.eval_seqlen),
            "--eval-windows",
            str(acc.eval_windows),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout[result.stdout.index("{") :])
    assert record["perplexity"]["ppl"] == pytest.approx(point.measured["ppl"], rel=1e-5)


def test_resume_measures_nothing_new(tiny_result: Any) -> None:
    out: Path = tiny_result.out_dir
    measured = (out / "measured.json").read_text()
    table = (out / "sensitivity.json").read_text()
    again = explore(tiny_result.spec, out, progress=False)
    assert again.front == tiny_result.front
    assert (out / "measured.json").read_text() == measured
    assert (
        json.loads((out / "sensitivity.json").read_text())["entries"]
        == json.loads(table)["entries"]
    )
    assert again.trials == tiny_result.trials


def test_study_yaml_round_trips(tiny_result: Any) -> None:
    data = yaml.safe_load((tiny_result.out_dir / "study.yaml").read_text())
    assert study_from_dict(data) == tiny_result.spec


def test_cli_explore(tmp_path: Path) -> None:
    from quarch.cli import app

    study = tmp_path / "study.yaml"
    data = {**TINY_STUDY, "space": {**TINY_STUDY["space"], "act": ["float"], "kv": ["float"]}}
    study.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["explore", str(study), "--out", str(out), "--trials", "8", "--quiet", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.output and "configs" in result.output
    assert not (out / "report.html").exists()
    assert len(list((out / "configs").glob("*.yaml"))) >= 1
    # `quarch report` redraws the report and the table from result.json
    again = CliRunner().invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert "Pareto front" in again.output and (out / "report.html").is_file()
    rows = json.loads(CliRunner().invoke(app, ["report", str(out), "--json"]).stdout)
    stored = json.loads((out / "front.json").read_text())
    assert [r["key"] for r in rows] == [r["key"] for r in stored]
    assert all(r["table"]["ppl"] == r["metrics"]["ppl"] for r in rows)
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "holds no finished study" in missing.output
    bad = CliRunner().invoke(
        app, ["explore", str(study), "--out", str(out), "--weights", "float,foo4"]
    )
    assert bad.exit_code == 2
    assert "space.weight[1]: unknown format 'foo4'" in bad.output
    # the same output directory with another space: refused, naming the study
    other = CliRunner().invoke(
        app, ["explore", str(study), "--out", str(out), "--weights", "float,int4", "--quiet"]
    )
    assert other.exit_code == 2 and "another design space" in other.output


_SMALL = {
    "model": "tiny-llama",
    "scenarios": [{"name": "serve", "batch": 2, "prompt_len": 64, "output_len": 16}],
    "space": {"groups": 1, "weight": ["float", "mxfp4"], "act": ["float"], "kv": ["float"]},
    "search": {"trials": 8, "population": 4},
    "accuracy": {
        "eval_seqlen": 48,
        "eval_windows": 2,
        "sensitivity_seqlen": 48,
        "sensitivity_windows": 1,
        "max_final_points": 3,
    },
}


def test_several_devices_are_a_search_dimension(tmp_path: Path) -> None:
    from quarch.report import render_html

    data = {
        **_SMALL,
        "hardware": {"devices": ["h100-sxm", "l40s"], "price_per_hour_usd": 1.0},
        "objectives": ["ppl", "tpot", "cost"],
    }
    result = explore(study_from_dict(data), tmp_path, progress=False)
    assert [p.name for p in result.baselines] == [
        "float @ h100-sxm",
        "W mxfp4 @ h100-sxm",
        "float @ l40s",
        "W mxfp4 @ l40s",
    ]
    devices = {p.design["hw.device"] for p in result.points}
    assert devices == {"h100-sxm", "l40s"}
    # the same formats cost more time on the L40S (864 GB/s against 3.35 TB/s)
    by = {p.name: p for p in result.baselines}
    assert by["float @ l40s"].metrics["tpot@serve"] > by["float @ h100-sxm"].metrics["tpot@serve"]
    html = render_html(result)  # the front table names each design's device
    assert "device=h100-sxm" in html or "device=l40s" in html


def test_accelerator_template_with_ranges(tmp_path: Path) -> None:
    from quarch.report import render_html

    data = {
        **_SMALL,
        "hardware": {
            "template": {
                "systolic_rows": [32, 64],
                "systolic_cols": 64,
                "num_arrays": {"low": 2, "high": 16},
                "clock_hz": {"low": 0.5e9, "high": 1.5e9, "log": True},
                "sram_bytes": 8.0e6,
                "sram_bytes_per_s": 4.0e12,
                "memory_tech": ["lpddr5x", "hbm3e"],
                "memory_stacks_or_channels": 1,
            }
        },
        "objectives": ["ppl", "tpot", "energy"],
    }
    result = explore(study_from_dict(data), tmp_path, progress=False)
    arrays = {p.design["hw.num_arrays"] for p in result.points}
    clocks = {p.design["hw.clock_hz"] for p in result.points}
    assert all(isinstance(a, int) and 2 <= a <= 16 for a in arrays) and len(arrays) > 1
    assert all(0.5e9 <= c <= 1.5e9 for c in clocks)
    # baselines sit at the template's reference point: first choices, low ends of ranges
    ref = result.baselines[0].design
    assert (ref["hw.systolic_rows"], ref["hw.num_arrays"], ref["hw.clock_hz"]) == (32, 2, 0.5e9)
    assert "Roofline on" in render_html(result)
