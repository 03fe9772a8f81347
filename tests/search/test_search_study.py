"""Study files: defaults, round trip, and an error naming the field for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarch.search import (
    FLOAT,
    Metric,
    Sampler,
    default_study,
    load_study,
    study_from_dict,
)


def test_defaults_are_the_main_job() -> None:
    spec = default_study()
    assert spec.model == "shipped"
    assert spec.hardware.devices == ("h100-sxm",)
    assert spec.search.sampler is Sampler.NSGA2
    assert [o.key for o in spec.objectives] == ["ppl", "tpot@serve", "memory@serve"]
    assert spec.space.weight[0] == FLOAT


def test_round_trip_through_dict() -> None:
    data = {
        "name": "rt",
        "model": "tiny-llama",
        "scenarios": [{"name": "chat", "batch": 2}, {"name": "bulk", "batch": 32}],
        "space": {
            "groups": [{"layers": "0-0", "weight": ["float", "int8"]}, "1-1"],
            "methods": ["rtn", {"name": "lqer", "rank": [4, 8]}],
        },
        "objectives": ["ppl", "tpot@bulk", "bits"],
        "constraints": {"tpot_slo_s": 0.05, "ppl_max_increase": 0.1},
        "search": {"sampler": "tpe", "trials": 10},
    }
    spec = study_from_dict(data)
    assert study_from_dict(spec.to_dict()) == spec
    assert [m.label for m in spec.space.methods] == ["rtn", "lqer(rank=4)", "lqer(rank=8)"]
    assert spec.objectives[1].scenario == "bulk"
    assert spec.objectives[2].metric is Metric.BITS


def test_load_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: tiny-llama\nsearch: {trials: 5}\n")
    assert load_study(path).search.trials == 5
    path.write_text("model: tiny-llama\nsearch: {trails: 5}\n")
    with pytest.raises(ValueError, match=r"s\.yaml: search: unknown key\(s\) \['trails'\]"):
        load_study(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_study(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"space": {"weight": ["int8", "int9x"]}}, r"space\.weight\[1\]: unknown format 'int9x'"),
        ({"space": {"weight": ["int8", "int8"]}}, r"space\.weight: duplicate"),
        ({"space": {"act": []}}, r"space\.act: must not be empty"),
        ({"space": {"groups": 0}}, r"space\.groups: must be >= 1"),
        ({"space": {"groups": ["3-1"]}}, r"space\.groups\[0\]: expected a layer range"),
        (
            {"space": {"groups": [{"layers": "0-1", "wieght": ["int8"]}]}},
            r"space\.groups\[0\]: unknown key\(s\) \['wieght'\]",
        ),
        ({"space": {"methods": ["gptqq"]}}, r"space\.methods\[0\]\.name: unknown method"),
        ({"space": {"methods": [{"name": "lqer", "rank": [0]}]}}, r"space\.methods\[0\]"),
        ({"space": {"methods": [{"name": "lqer", "rnak": 4}]}}, r"unknown key\(s\) \['rnak'\]"),
        ({"objectives": ["ppl", "latency"]}, r"objectives\[1\]: unknown metric 'latency'"),
        ({"objectives": ["tpot", "memory"]}, r"objectives: must include ppl"),
        ({"objectives": ["ppl"]}, r"objectives: need ppl and at least one cost"),
        ({"objectives": ["ppl", "tpot@nowhere"]}, r"objectives\[1\]: unknown scenario"),
        ({"objectives": ["ppl@serve", "tpot"]}, r"objectives\[0\]: ppl does not depend"),
        (  # catalog devices with a sourced rental price are costed; the Jetson has none
            {"objectives": ["ppl", "cost"], "hardware": {"devices": ["jetson-agx-orin"]}},
            r"objectives: cost needs a price",
        ),
        ({"scenarios": [{"batch": 0}]}, r"scenarios\[0\]\.batch: must be >= 1"),
        ({"scenarios": [{"batch": 3, "dp": 2}]}, r"scenarios\[0\]: .*divisible by dp"),
        ({"scenarios": [{"name": "a"}, {"name": "a"}]}, r"scenarios: duplicate names"),
        ({"hardware": {"devices": ["h100-sxmm"]}}, r"hardware\.devices\[0\]"),
        (
            {"hardware": {"devices": ["h100-sxm"], "template": {"clock_hz": 1e9}}},
            r"hardware: give either devices or template",
        ),
        ({"hardware": {"template": {"clock_hz": 1e9}}}, r"hardware\.template: missing required"),
        (
            {"hardware": {"template": {"systolic_rows": {"low": 256, "high": 64}}}},
            r"hardware\.template\.systolic_rows: low=256 is above high=64",
        ),
        (
            {"hardware": {"template": {"memory_tech": {"low": 1, "high": 2}}}},
            r"memory_tech takes a list of choices",
        ),
        ({"constraints": {"tpot_slo_s": -1}}, r"constraints\.tpot_slo_s: must be positive"),
        ({"search": {"sampler": "cmaes"}}, r"search\.sampler: unknown value 'cmaes'"),
        ({"search": {"storage": "study.db"}}, r"search\.storage: expected a database URL"),
        ({"search": {"trials": 2.5}}, r"search\.trials: expected an integer"),
        ({"accuracy": {"eval_seqlen": 1}}, r"accuracy\.eval_seqlen: must be >= 2"),
        ({"accuracy": {"text": "/nonexistent.txt"}}, r"accuracy\.text"),
        ({"serving_dtype": "bf17"}, r"serving_dtype: unknown format"),
    ],
)
def test_bad_fields_are_named(data: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        study_from_dict(data)


def test_template_study() -> None:
    spec = study_from_dict(
        {
            "hardware": {
                "template": {
                    "systolic_rows": [64, 128],
                    "systolic_cols": 128,
                    "num_arrays": {"low": 8, "high": 64, "log": True},
                    "clock_hz": 1.0e9,
                    "sram_bytes": [64e6, 256e6],
                    "sram_bytes_per_s": 20e12,
                    "memory_tech": ["hbm3e", "lpddr5x"],
                    "memory_stacks_or_channels": [2, 4],
                    "price_per_hour_usd": 1.5,
                }
            },
            "objectives": ["ppl", "tpot", "cost"],
        }
    )
    params = {p.name: p for p in spec.hardware.template or ()}
    assert params["num_arrays"].integer and params["num_arrays"].low == 8
    assert params["systolic_rows"].reference == 64
    with pytest.raises(ValueError, match=r"grid cannot sample hardware\.template ranges"):
        study_from_dict({**spec.to_dict(), "search": {"sampler": "grid"}})


def test_explore_cli_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from quarch.cli import app

    bad = tmp_path / "study.yaml"
    bad.write_text("model: [unclosed\n")
    result = CliRunner().invoke(app, ["explore", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "not valid YAML (line 2" in result.output
    assert not (tmp_path / "out").exists()


def test_cost_objective_uses_the_catalog_price() -> None:
    # h100-sxm carries its sourced median on-demand price (quarch/hardware/prices.yaml)
    spec = study_from_dict({"objectives": ["ppl", "cost"]})
    assert spec.hardware.devices == ("h100-sxm",)
