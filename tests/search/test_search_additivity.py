"""The additivity check and its pair-term correction, on the tiny LLaMA."""

from __future__ import annotations

import pytest

from quarch.models import tiny_llama
from quarch.search import AccuracyLab, Design, build_space, build_table, study_from_dict
from quarch.search._additivity import check_additivity, group_pairs, measure_pairs
from quarch.search._proxy import ProxyTable

from .conftest import TINY_STUDY


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    spec = study_from_dict(TINY_STUDY)
    m = tiny_llama(seed=0)
    lab = AccuracyLab(m.model, m.tokenizer, spec.accuracy)
    space = build_space(spec, lab.layout)
    table = build_table(lab, space, None, model_id="tiny")
    return lab, space, table


def _design(space, w: str, a: str, kv: str) -> Design:  # type: ignore[no-untyped-def]
    values = {"hw.device": "h100-sxm"}
    for g in space.groups:
        values[f"w.{g.name}.attn"] = w
        values[f"w.{g.name}.mlp"] = w
        values[f"a.{g.name}"], values[f"kv.{g.name}"] = a, kv
    return Design.of(values)


def test_single_slot_designs_are_exactly_additive(setup) -> None:  # type: ignore[no-untyped-def]
    lab, space, table = setup
    g = space.groups[0].name
    values = dict(_design(space, "float", "float", "float").values)
    values[f"w.{g}.attn"] = "mxfp4"
    report = check_additivity(lab, space, table, [Design.of(values)])
    # one slot quantized: the group's measurement is the table's entry itself
    first = report.groups[0]
    assert first.designs == 1
    assert first.measured[0] == pytest.approx(first.predicted[0], rel=1e-9)
    assert report.groups[1].designs == 0
    assert report.whole_measured[0] == pytest.approx(report.groups_sum[0], rel=1e-9)


def test_pair_terms_make_a_group_exact(setup) -> None:  # type: ignore[no-untyped-def]
    lab, space, table = setup
    table = ProxyTable.from_dict(table.to_dict())  # a copy: the fixture's stays pair-free
    g = space.groups[0].name
    values = dict(_design(space, "float", "float", "float").values)
    values[f"w.{g}.attn"], values[f"a.{g}"] = "mxfp4", "fp8_e4m3_c"
    design = Design.of(values)
    assert len(group_pairs(space, [design])) == 1
    before = check_additivity(lab, space, table, [design])
    new = measure_pairs(lab, space, table, [design])
    assert len(new) == 1 and table.pairs
    # two slots of one group: the sum plus the pair term is the measurement
    measured = before.groups[0].measured[0]
    d = table.deltas(design)
    assert sum(d.values()) == pytest.approx(measured, rel=1e-6, abs=1e-9)
    again = ProxyTable.from_dict(table.to_dict())
    assert again.pairs == table.pairs
    assert measure_pairs(lab, space, table, [design]) == {}  # measured once


def test_whole_design_report(setup) -> None:  # type: ignore[no-untyped-def]
    lab, space, table = setup
    designs = [
        _design(space, "mxfp4", "fp8_e4m3_c", "fp8_e4m3"),
        _design(space, "int8", "float", "fp8_e4m3"),
    ]
    report = check_additivity(lab, space, table, designs)
    assert [g.designs for g in report.groups] == [2, 2]
    assert all(v > 0 for v in report.whole_measured)
    data = report.to_dict()
    assert set(data) >= {"cross_group_ratio", "groups", "whole_measured"}
    assert report.worst_group() is not None
