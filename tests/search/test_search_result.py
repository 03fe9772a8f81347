"""The study result as data: stored, read back equal, refused when wrong; the metric registry;
and the layering rule that `quarch.search` never imports `quarch.report`."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quarch.search import (
    METRICS,
    RESULT_FILE,
    Direction,
    Metric,
    MetricInfo,
    StudyResult,
    metric_info,
    study_from_dict,
)

from .conftest import TINY_STUDY

SEARCH = Path(__file__).resolve().parents[2] / "quarch" / "search"


def test_result_round_trips_exactly(tiny_result: Any, tmp_path: Path) -> None:
    # a copy of the stored file (other tests resume the study, rewriting its timings)
    (tmp_path / RESULT_FILE).write_text((tiny_result.out_dir / RESULT_FILE).read_text())
    loaded = StudyResult.load(tmp_path)
    assert loaded.points == tiny_result.points and loaded.front == tiny_result.front
    tiny_result.save(tmp_path)
    loaded = StudyResult.load(tmp_path)
    assert loaded == tiny_result and loaded.out_dir == tmp_path
    assert loaded.to_dict() == tiny_result.to_dict()
    again = StudyResult.from_dict(json.loads(json.dumps(tiny_result.to_dict())))
    assert again == tiny_result
    # plain data only: the stored file is standard JSON of dicts, lists, strings and numbers
    text = (tmp_path / RESULT_FILE).read_text()
    assert json.loads(text)["schema_version"] == tiny_result.schema_version == 1


def test_result_holds_what_the_report_needs(tiny_result: Any) -> None:
    r = tiny_result
    assert r.front and set(r.front) <= {p.key for p in r.points}
    assert set(r.proxy_front) <= {p.key for p in r.points}
    assert r.num_layers == len(r.points[0].layers)
    assert all(p.summary for p in r.points)
    for p in r.front_points:
        assert p.final is not None and p.perf and p.hardware in r.hardware
        assert {c for lay in p.layers for c in lay.as_tuple()} <= set(r.formats)
    assert r.sensitivity.cost and r.sensitivity.slots and r.sensitivity.choices
    assert r.timings and r.study == r.spec.to_dict()
    assert r.spec == study_from_dict(TINY_STUDY)


def test_result_load_errors(tmp_path: Path, tiny_result: Any) -> None:
    with pytest.raises(ValueError, match="holds no finished study"):
        StudyResult.load(tmp_path)
    (tmp_path / RESULT_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        StudyResult.load(tmp_path)
    data = tiny_result.to_dict()
    (tmp_path / RESULT_FILE).write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ValueError, match="schema version 99"):
        StudyResult.load(tmp_path)
    del data["points"]
    (tmp_path / RESULT_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a study result"):
        StudyResult.load(tmp_path)


def test_save_is_atomic_and_needs_a_folder(tiny_result: Any, tmp_path: Path) -> None:
    path = tiny_result.save(tmp_path)
    assert path == tmp_path / RESULT_FILE and not list(tmp_path.glob(".*.tmp"))
    assert StudyResult.load(tmp_path) == tiny_result
    with pytest.raises(ValueError, match="no output directory"):
        replace(tiny_result, out_dir=None).save()


def test_metric_registry_is_complete_and_consistent() -> None:
    assert set(METRICS) == set(Metric)
    for metric, info in METRICS.items():
        assert info.key == metric.value and metric.info is info
        assert metric.per_scenario == (info.source is not None)
    from quarch.search import PerfMetrics

    fields = set(PerfMetrics.__dataclass_fields__)
    assert all(i.source in fields for i in METRICS.values() if i.per_scenario)
    assert metric_info("tpot@serve") is METRICS[Metric.TPOT]
    with pytest.raises(ValueError, match="unknown metric 'speed'"):
        metric_info("speed")
    tpot = METRICS[Metric.TPOT]
    assert tpot.format(0.0123) == "12.300 ms" and tpot.format(None) == "—"
    assert METRICS[Metric.COST].format(1.5) == "$1.5"
    assert (
        METRICS[Metric.BITS].format(4.25) == "4.25" and METRICS[Metric.PPL].format(23.5) == "23.500"
    )
    assert tpot.axis_title == "time per output token (ms)"


def test_a_maximised_metric_is_negated_into_a_minimised_objective() -> None:
    up = MetricInfo(key="tps", title="throughput", header="tok/s", unit="1/s")
    assert up.sign == 1.0
    assert replace(up, direction=Direction.MAX).sign == -1.0


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_search_never_imports_report() -> None:
    offenders = {
        p.name: sorted(m for m in _imports(p) if m.startswith("quarch.report"))
        for p in SEARCH.glob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}
