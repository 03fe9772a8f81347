"""Intervals and noise marks in a finished study: result.json, front.csv and the report table."""

from __future__ import annotations

import csv
import math
from typing import Any

import pytest

from quarch.eval import paired_interval
from quarch.report import render_html, table_rows
from quarch.search._outputs import NOISE_COLUMNS


def _measured(result: Any) -> list[Any]:
    return [p for p in result.points if p.measured is not None]


def test_every_measured_perplexity_carries_its_interval(tiny_result: Any) -> None:
    points = _measured(tiny_result)
    assert points
    for p in points:
        m = p.measured
        assert len(m["window_nll"]) == m["num_windows"] == 3
        assert math.isfinite(m["ppl_low"]) and math.isfinite(m["ppl_high"])
        assert m["ppl_low"] < m["ppl"] < m["ppl_high"]
        if p.name == "float":
            assert "vs_float" not in m
            continue
        vs = m["vs_float"]
        assert vs["low"] <= vs["ratio"] <= vs["high"]
        assert vs["within_noise"] == (vs["low"] <= 1.0 <= vs["high"])
        assert vs["ratio"] == pytest.approx(m["ppl"] / tiny_result.float_ppl)


def test_front_noise_marks_are_the_paired_intervals(tiny_result: Any) -> None:
    front = tiny_result.front_points
    names = {p.name: p for p in front}
    for p in front:
        same = p.measured["within_noise_of"]
        for q in front:
            if q.key == p.key:
                continue
            iv = paired_interval(p.measured["window_nll"], q.measured["window_nll"])
            assert (q.name in same) == iv.contains_zero
            if q.name in same:  # symmetric
                assert p.name in names[q.name].measured["within_noise_of"]


def test_front_csv_and_report_show_them(tiny_result: Any) -> None:
    assert tiny_result.out_dir is not None
    with (tiny_result.out_dir / "front.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(c in rows[0] for c in NOISE_COLUMNS)
    for row in rows:
        assert float(row["ppl_low"]) < float(row["ppl"]) < float(row["ppl_high"])
    table = table_rows(tiny_result)
    assert all("–" in r["ppl_ci"] for r in table)
    text = render_html(tiny_result)
    assert "within noise of" in text and "ppl 95% CI" in text
