"""The public validation set: shipped rows load and map, the split is fixed, bad rows are named,
and the summary arithmetic holds on hand-made results."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quarch.cli import app
from quarch.measure import (
    PublishedResult,
    PublishedRow,
    kernel_op,
    load_published,
    predict_row,
    scenario_for,
    split_for,
    summarize_published,
    validate_published,
)
from quarch.measure._published_check import _largest_fitting
from quarch.models import load_model_spec
from quarch.perf import OpKind, check_scenario
from quarch.perf._bands import load_bands

SOURCE = {"title": "t", "url": "https://example.org/table", "date": "2025-01-01"}
E2E = {
    "id": "x/1",
    "kind": "e2e",
    "model": "Llama-3.1-8B",
    "device": "h100-sxm",
    "engine": "vllm",
    "engine_version": "0.6",
    "weight_format": "bf16",
    "act_format": "bf16",
    "kv_format": "bf16",
    "batch": 4,
    "prompt_len": 128,
    "output_len": 64,
    "metric": "e2e_latency_s",
    "value": 1.5,
    "unit": "s",
    "section": "Table 1, row 1",
}


def _write(tmp_path: Path, rows: list[dict[str, object]], name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"source": SOURCE, "defaults": {}, "rows": rows}))
    return path


@pytest.fixture(scope="module")
def shipped() -> tuple[PublishedRow, ...]:
    return load_published()


def test_every_shipped_row_loads_with_a_source(shipped: tuple[PublishedRow, ...]) -> None:
    assert len(shipped) >= 350
    assert len({r.id for r in shipped}) == len(shipped)
    for row in shipped:
        assert row.url.startswith("https://"), row.id
        assert row.section.strip(), row.id
        assert row.date or row.revision, row.id


def test_every_shipped_e2e_row_maps_to_an_accepted_scenario(
    shipped: tuple[PublishedRow, ...],
) -> None:
    for row in shipped:
        if row.kind != "e2e":
            op = kernel_op(row)
            assert op.kind is OpKind.MATMUL and op.flops == 2.0 * row.m * row.n * row.k
            continue
        spec = load_model_spec(row.model or "")
        batch = row.batch if row.batch is not None else row.dp  # `max` rows: the smallest batch
        check_scenario(spec, scenario_for(row, batch))


def test_shipped_rows_predict_finite_and_max_rows_fit() -> None:
    report = validate_published("all")
    assert len(report.results) >= 350
    for r in report.results:
        assert r.predicted > 0 and r.error >= 0, r.row.id
        if r.row.kind == "e2e" and r.row.batch is None:
            assert r.batch is not None and r.batch % r.row.dp == 0
            assert r.row.max_batch is None or r.batch <= r.row.max_batch


def test_split_is_the_documented_hash_rule_and_stable(shipped: tuple[PublishedRow, ...]) -> None:
    for row in shipped:
        digest = int(hashlib.sha256(row.id.encode()).hexdigest()[:8], 16)
        assert row.split == ("holdout" if digest % 3 == 0 else "fit")
    # golden values: changing the rule would silently move rows between fit and holdout
    assert split_for("b") == "holdout"
    assert split_for("a") == "fit"
    assert split_for("trtllm-1.0/llama8b-h200/128-128") == "fit"
    holdout = sum(r.split == "holdout" for r in shipped) / len(shipped)
    assert 0.25 < holdout < 0.42


def test_split_filters_rows() -> None:
    holdout = validate_published("holdout")
    assert holdout.results and all(r.row.split == "holdout" for r in holdout.results)
    with pytest.raises(ValueError, match="split must be one of"):
        validate_published("test")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device": "h900"}, "device 'h900' is not a catalog device"),
        ({"model": "Llama-9"}, "unknown model 'Llama-9'"),
        ({"unit": "ms", "metric": "output_tokens_per_s"}, "unit 'ms' does not fit metric"),
        ({"value": -3}, "value must be a positive number"),
        ({"batch": "many"}, "batch must be a positive integer"),
        ({"batch": 0}, "batch must be a positive integer"),
        ({"max_batch": 2.5}, "max_batch must be a positive integer"),
        ({"weight_format": "fp9"}, "fp9"),
        ({"kind": "model"}, "kind must be one of"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"metric": "kernel_time_s"}, "does not fit kind 'e2e'"),
    ],
)
def test_a_malformed_row_is_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = _write(tmp_path, [{**E2E, **change}])
    with pytest.raises(ValueError, match=message) as err:
        load_published([path])
    assert "t.yaml: row 'x/1'" in str(err.value)


def test_a_row_without_date_or_revision_is_named(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    source = {"url": "https://example.org/table"}
    path.write_text(yaml.safe_dump({"source": source, "defaults": {}, "rows": [E2E]}))
    with pytest.raises(ValueError, match="row 'x/1': needs a date or a revision"):
        load_published([path])


def test_a_missing_field_and_a_duplicate_id_are_named(tmp_path: Path) -> None:
    row = {k: v for k, v in E2E.items() if k != "section"}
    with pytest.raises(ValueError, match=r"row 'x/1': missing field\(s\) \['section'\]"):
        load_published([_write(tmp_path, [row])])
    one, two = _write(tmp_path, [E2E], "a.yaml"), _write(tmp_path, [E2E], "b.yaml")
    with pytest.raises(ValueError, match=re.escape("b.yaml: row id 'x/1' already used in a.yaml")):
        load_published([one, two])


def test_defaults_merge_and_units_convert(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    kernel = {"kind": "kernel", "op": "matmul", "device": "h100-sxm", "engine": "cublas"}
    kernel |= {"engine_version": "12", "weight_format": "bf16", "act_format": "bf16"}
    kernel |= {"metric": "kernel_time_s", "unit": "us", "section": "Table 2"}
    rows = [{"id": "k/1", "m": 4096, "n": 4096, "k": 4096, "value": 250.0}]
    path.write_text(yaml.safe_dump({"source": SOURCE, "defaults": kernel, "rows": rows}))
    (row,) = load_published([path])
    assert row.engine == "cublas" and row.url == SOURCE["url"] and row.date == "2025-01-01"
    assert row.value_si == pytest.approx(250e-6)
    result = predict_row(row)
    # the published kernel band (10th-90th percentile of fit residuals; need not contain 1)
    kernel = load_bands().bands[("hopper", "kernel")]
    assert result.predicted > 0 and result.band == kernel[:2]


def _result(
    value: float, predicted: float, *, kind: str = "e2e", time: bool = True
) -> PublishedResult:
    fields = {**E2E, "kind": kind}
    fields["metric"] = (
        ("e2e_latency_s" if kind == "e2e" else "kernel_time_s") if time else "output_tokens_per_s"
    )
    fields["unit"] = "s" if time else "tokens/s"
    fields["value"] = value
    fields.pop("batch")
    row = PublishedRow(
        **{k: v for k, v in fields.items() if k in PublishedRow.__dataclass_fields__},
        url="u",
        file="f",
        batch=4,
        m=1,
        n=1,
        k=1,
    )
    return PublishedResult(row=row, predicted=predicted, band=(0.8, 1.3))


def test_error_ratio_optimism_and_band_of_one_row() -> None:
    slow = _result(2.0, 1.0)  # measured twice the predicted time: optimistic, out of band
    assert slow.error == pytest.approx(0.5) and slow.ratio == pytest.approx(2.0)
    assert slow.optimistic and not slow.in_band
    near = _result(1.2, 1.0)  # inside [0.8, 1.3] x predicted time
    assert near.in_band and near.optimistic
    fast_rate = _result(900.0, 1000.0, time=False)  # a throughput 10 % below the prediction
    assert fast_rate.optimistic and fast_rate.in_band  # band for rates: [1000/1.3, 1000/0.8]
    low_rate = _result(700.0, 1000.0, time=False)  # below 1000 / 1.3
    assert not low_rate.in_band
    pessimistic = _result(1.0, 1.25)
    assert not pessimistic.optimistic and pessimistic.error == pytest.approx(0.25)


def test_summary_arithmetic_on_a_hand_made_set() -> None:
    # errors 0.5, 0.1, 0.2, 0.25 (e2e) and 0.4 (kernel)
    results = [
        _result(2.0, 1.0),
        _result(1.0, 1.1),
        _result(1.0, 0.8),
        _result(1.0, 1.25),
        _result(1.0, 0.6, kind="kernel"),
    ]
    by = {(s.slice, s.key): s for s in summarize_published(results)}
    everything = by["all", "all"]
    assert everything.rows == 5
    assert everything.median_error == pytest.approx(0.25)
    # numpy's linear p90 of [0.1, 0.2, 0.25, 0.4, 0.5]: 0.4 + 0.6 * (0.5 - 0.4)
    assert everything.p90_error == pytest.approx(0.46)
    assert everything.optimistic == 3  # predicted 1.0 < 2.0, 0.8 < 1.0, 0.6 < 1.0
    # in band [0.8, 1.3] x pred: 1.0 in [0.88, 1.43] yes, 1.0 in [0.64, 1.04] yes,
    # 1.0 in [1.0, 1.625] yes, 2.0 in [0.8, 1.3] no, 1.0 in [0.48, 0.78] no
    assert everything.in_band == 3 and everything.band_coverage == pytest.approx(0.6)
    e2e = by["kind", "e2e"]
    assert e2e.rows == 4 and e2e.median_error == pytest.approx(0.225)
    assert by["kind", "kernel"].median_error == pytest.approx(0.4)
    assert by["device", "h100-sxm"].rows == 5
    assert by["batch", "fixed"].rows == 4 and by["batch", "kernel"].rows == 1


def test_cli_published_json_and_table() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["validate", "--published", "--split", "holdout", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["split"] == "holdout" and doc["rows"]
    inside = sum(r["in_band"] for r in doc["rows"]) / len(doc["rows"])
    assert doc["band_coverage"] == {"holdout": inside}
    assert {"all", "split", "kind", "device", "engine", "precision", "batch"} <= {
        s["slice"] for s in doc["summary"]
    }
    res = runner.invoke(app, ["validate", "--published", "--split", "holdout"])
    assert res.exit_code == 0 and "band coverage on holdout rows: " in res.output
    assert f"= {inside:.0%}" in res.output
    res = runner.invoke(app, ["validate", "--published", "--split", "nope"])
    assert res.exit_code == 2 and "split must be one of" in res.output
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 2 and "--hw is required" in res.output


def test_batch_max_is_the_largest_fitting_multiple_of_dp(tmp_path: Path) -> None:
    (row,) = load_published([_write(tmp_path, [{**E2E, "batch": "max", "dp": 4}])])
    assert row.batch is None

    def run(limit: int) -> Any:
        return lambda b: SimpleNamespace(fits=b <= limit, batch=b)

    assert _largest_fitting(row, run(1000)).batch == 1000
    assert _largest_fitting(row, run(1003)).batch == 1000  # a multiple of dp = 4
    assert _largest_fitting(replace(row, max_batch=64), run(1000)).batch == 64
    assert _largest_fitting(replace(row, max_batch=66), run(1000)).batch == 64
    assert _largest_fitting(replace(row, max_batch=2), run(1000)).batch == 4  # at least dp
    with pytest.raises(ValueError, match="even batch 4 does not fit h100-sxm"):
        _largest_fitting(row, run(3))
