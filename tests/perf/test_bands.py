"""Which uncertainty band a prediction carries (quarch/perf/_bands.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quarch.hardware import load_hardware
from quarch.perf import Scenario, predict
from quarch.perf._bands import (
    ALL,
    band_for,
    band_table_from_dict,
    load_bands,
)

TABLE = {
    "quantiles": [10, 90],
    "min_rows": 8,
    "validated_devices": ["h100-sxm", "a100-sxm"],
    "validated_engines": ["vllm"],
    "bands": [
        {"architecture": "hopper", "family": "latency", "low": 1.1, "high": 2.0, "fit_rows": 9},
        {"architecture": ALL, "family": "latency", "low": 0.9, "high": 3.0, "fit_rows": 20},
        {"architecture": "ampere", "family": "latency", "low": 0.5, "high": 1.5, "fit_rows": 8},
        {"architecture": ALL, "family": "kernel", "low": 1.2, "high": 1.4, "fit_rows": 5},
    ],
}


def test_validated_device_and_engine_get_their_architecture_band() -> None:
    table = band_table_from_dict(TABLE)
    b = band_for(load_hardware("h100-sxm"), "vllm", "latency", table)
    assert (b.low, b.high, b.validated) == (1.1, 2.0, True)
    assert "9 published latency fit rows (hopper)" in b.note


def test_family_without_an_architecture_band_falls_back_to_all() -> None:
    table = band_table_from_dict(TABLE)
    b = band_for(load_hardware("a100-sxm"), "vllm", "kernel", table)  # kernels take no engine
    assert (b.low, b.high, b.validated) == (1.2, 1.4, True)


def test_unvalidated_device_or_engine_widens_to_the_envelope() -> None:
    table = band_table_from_dict(TABLE)
    for hw, engine, missing in (
        ("h100-pcie", "vllm", "device h100-pcie"),
        ("h100-sxm", "ideal", "engine ideal"),
    ):
        b = band_for(load_hardware(hw), engine, "latency", table)
        assert (b.low, b.high, b.validated) == (0.5, 3.0, False)
        assert f"no published rows for {missing}" in b.note and "envelope" in b.note


def test_family_with_no_band_uses_the_class_default() -> None:
    table = band_table_from_dict(TABLE)
    b = band_for(load_hardware("h100-sxm"), "vllm", "throughput", table)
    assert (b.low, b.high, b.validated) == (0.8, 1.3, False)


def test_calibrated_device_keeps_its_own_band() -> None:
    hw = load_hardware("h100-sxm")
    own = replace(hw, name="mine", efficiency={**dict(hw.efficiency), "band": (0.9, 1.2)})
    b = band_for(own, "ideal", "latency", band_table_from_dict(TABLE))
    assert (b.low, b.high) == (0.9, 1.2) and "calibration" in b.note


def test_bad_tables_and_families_raise() -> None:
    with pytest.raises(ValueError, match="family must be one of"):
        band_for(load_hardware("h100-sxm"), "vllm", "energy")
    with pytest.raises(ValueError, match="'bands' list"):
        band_table_from_dict({"bands": 3})
    bad = {**TABLE, "bands": [{**TABLE["bands"][0], "low": 2.5}]}
    with pytest.raises(ValueError, match="0 < low <= high"):
        band_table_from_dict(bad)


def test_prediction_carries_the_shipped_bands() -> None:
    table = load_bands()
    sc = Scenario(batch=8, prompt_len=512, output_len=64, tp=2)
    p = predict("llama-3.1-8b", "h100-sxm", sc, engine="vllm")
    lat, rate = table.bands[("hopper", "latency")], table.bands[("hopper", "throughput")]
    assert p.band == lat[:2] and p.throughput_band == rate[:2]
    assert "hopper" in p.band_note
    ideal = predict("llama-3.1-8b", "h100-sxm", sc)
    assert ideal.band[0] <= p.band[0] and ideal.band[1] >= p.band[1]
    assert "engine ideal" in ideal.band_note
