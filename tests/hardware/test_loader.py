"""The Hardware loader: the catalog loads, numbers keep their sources, and every class of
malformed file is refused with a message naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from quarch.hardware import (
    EFFICIENCY_FIELDS,
    DeviceClass,
    Topology,
    hardware_from_dict,
    list_hardware,
    load_hardware,
    load_memory_tech,
)
from quarch.perf import efficiency_for

DATA = Path(__file__).parent / "data"
TOY = DATA / "toy-gpu.yaml"


def _toy() -> dict[str, Any]:
    return yaml.safe_load(TOY.read_text())


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _error(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = _write(tmp_path, doc)
    with pytest.raises(ValueError) as info:
        load_hardware(path)
    return str(info.value)


# --- the catalog ---------------------------------------------------------------------------


def test_every_catalog_device_loads() -> None:
    names = list_hardware()
    assert "h100-sxm" in names and "memory_tech" not in names
    for name in names:
        hw = load_hardware(name)
        assert hw.name == name
        assert hw.memory_bytes_per_s > 0 and hw.matrix_flops_per_s
        # every number the file gives is traceable
        assert hw.source("vector_flops_per_s") and hw.source("memory[0].bytes_per_s")


def test_h100_numbers_and_sources() -> None:
    hw = load_hardware("H100-SXM")  # case-insensitive catalog names
    # NVIDIA H100 datasheet: 3.35 TB/s HBM3, 80 GB; whitepaper: 989.4 dense BF16 TFLOP/s, 132 SMs
    assert hw.memory_bytes_per_s == 3.35e12
    assert hw.memory_capacity_bytes == 80e9
    assert hw.matrix_flops_per_s["bf16"] == pytest.approx(989.4e12)
    assert hw.compute_units == 132
    assert hw.device_class is DeviceClass.GPU
    assert hw.interconnect is not None and hw.interconnect.topology is Topology.SWITCH
    assert "Datasheet" in hw.source("memory[0].bytes_per_s")
    assert hw.source("power.idle_w").startswith("estimate:")
    assert load_hardware("h100-sxm") is hw  # parsed once, cached


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(ValueError, match=r"unknown hardware 'h900'.*h100-sxm"):
        load_hardware("h900")
    with pytest.raises(ValueError, match="unknown hardware 'memory_tech'"):
        load_hardware("memory_tech")


def test_fixture_loads_with_efficiency_overrides() -> None:
    hw = load_hardware(TOY)
    assert hw.matrix_flops_per_s == {"bf16": 1e15, "fp8": 2e15, "int4": 4e15}
    assert hw.memory[0].pj_per_byte == 30.0 and hw.memory[1].pj_per_byte is None
    assert hw.price_per_hour_usd == 2.0
    assert hw.efficiency["tiles"] == ((128, 128), (64, 64))
    assert (
        hw.source("memory[1].bytes_per_s")
        == "estimate: four times the HBM bandwidth, a test figure"
    )
    assert hw.source("matrix_flops_per_s.fp8").endswith("(dense)")
    eff = efficiency_for(hw)
    assert eff.matmul_fraction == 0.9 and eff.bandwidth_fraction == (0.8, 0.6)
    assert eff.band == (0.9, 1.2)
    # fields the file leaves out keep the GPU class defaults
    assert eff.attention_fraction == efficiency_for(load_hardware("h100-sxm")).attention_fraction


def test_file_changes_are_picked_up(tmp_path: Path) -> None:
    doc = _toy()
    path = _write(tmp_path, doc, "toy-gpu.yaml")
    assert load_hardware(path).compute_units == 100
    doc["compute_units"]["value"] = 64
    path.write_text(yaml.safe_dump(doc))
    import os

    os.utime(path, ns=(1, 10**18))  # a distinct mtime even on coarse file systems
    assert load_hardware(path).compute_units == 64


def test_memory_tech_table() -> None:
    table = load_memory_tech()
    assert set(table) == {"hbm3e", "lpddr5x", "gddr7", "ddr5", "hbf"}
    # Micron HBM3E: 1.2 TB/s and 36 GB per 12-high stack (memory_tech.yaml's sources)
    assert table["hbm3e"]["bytes_per_s"] == 1.2e12 and table["hbm3e"]["capacity_bytes"] == 36e9
    assert table["hbm3e"]["sources"]["pj_per_bit"].startswith("estimate:")


# --- one test per class of error -------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    doc = _toy()
    doc["bandwith"] = 1
    msg = _error(tmp_path, doc)
    assert msg.startswith("broken.yaml: bandwith: unknown key")


def test_unknown_nested_key(tmp_path: Path) -> None:
    doc = _toy()
    doc["memory"][0]["latency_s"] = {"value": 1e-7, "source": "ds"}
    assert _error(tmp_path, doc).startswith("broken.yaml: memory[0].latency_s: unknown key")


def test_unknown_format_key(tmp_path: Path) -> None:
    doc = _toy()
    doc["matrix_flops_per_s"]["fp12"] = {"value": 1e15, "source": "ds"}
    assert _error(tmp_path, doc).startswith("broken.yaml: matrix_flops_per_s.fp12: unknown key")


def test_missing_required_field(tmp_path: Path) -> None:
    doc = _toy()
    del doc["memory"][0]["bytes_per_s"]
    msg = _error(tmp_path, doc)
    assert msg == "broken.yaml: memory[0].bytes_per_s: missing required field"
    doc = _toy()
    del doc["power"]
    assert _error(tmp_path, doc) == "broken.yaml: power: missing required field"


def test_wrong_type_string_number(tmp_path: Path) -> None:
    doc = _toy()
    doc["memory"][0]["capacity_bytes"]["value"] = "80.0e9"  # what YAML 1.1 makes of 80.0e9
    msg = _error(tmp_path, doc)
    assert msg.startswith("broken.yaml: memory[0].capacity_bytes: must be a number")
    assert "80.0e+9" in msg  # says how to fix it


def test_wrong_type_bare_number(tmp_path: Path) -> None:
    doc = _toy()
    doc["vector_flops_per_s"] = 5e13  # not wrapped in {value, source}
    msg = _error(tmp_path, doc)
    assert msg.startswith("broken.yaml: vector_flops_per_s: must be a mapping")


def test_unknown_source_id(tmp_path: Path) -> None:
    doc = _toy()
    doc["clock_hz"]["source"] = "wp"
    msg = _error(tmp_path, doc)
    assert msg == "broken.yaml: clock_hz.source: unknown source id 'wp'; declared: ds"


def test_source_and_estimate_both_or_neither(tmp_path: Path) -> None:
    doc = _toy()
    doc["clock_hz"]["estimate"] = "also guessed"
    assert _error(tmp_path, doc).startswith("broken.yaml: clock_hz: needs exactly one of")
    doc = _toy()
    del doc["clock_hz"]["source"]
    assert _error(tmp_path, doc).startswith("broken.yaml: clock_hz: needs exactly one of")


def test_negative_and_zero_numbers(tmp_path: Path) -> None:
    doc = _toy()
    doc["memory"][0]["bytes_per_s"]["value"] = -3
    assert _error(tmp_path, doc) == "broken.yaml: memory[0].bytes_per_s: must be > 0, got -3"
    doc = _toy()
    doc["power"]["tdp_w"]["value"] = 0
    assert _error(tmp_path, doc) == "broken.yaml: power.tdp_w: must be > 0, got 0"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("memory", 0, "bytes_per_s"), 3.35e15),  # a TB/s figure typed with three extra zeros
        (("matrix_flops_per_s", "bf16"), 2e17),
        (("memory", 0, "capacity_bytes"), 8e13),
        (("interconnect", "link_bytes_per_s"), 4.5e15),
    ],
)
def test_absurd_numbers(tmp_path: Path, path: tuple[Any, ...], value: float) -> None:
    doc = _toy()
    node: Any = doc
    for key in path:
        node = node[key]
    node["value"] = value
    msg = _error(tmp_path, doc)
    where = ".".join(str(k) for k in path).replace(".0.", "[0].")
    assert msg.startswith(f"broken.yaml: {where}: must be <=") and "absurd" in msg


def test_clock_out_of_range(tmp_path: Path) -> None:
    doc = _toy()
    doc["clock_hz"]["value"] = 1830  # MHz written as Hz
    assert _error(tmp_path, doc) == "broken.yaml: clock_hz: must be >= 1e+08, got 1830"


def test_non_integer_count(tmp_path: Path) -> None:
    doc = _toy()
    doc["compute_units"]["value"] = 132.5
    assert _error(tmp_path, doc) == "broken.yaml: compute_units: must be a whole number, got 132.5"


def test_unknown_enum_values(tmp_path: Path) -> None:
    doc = _toy()
    doc["device_class"] = "fpga"
    msg = _error(tmp_path, doc)
    assert msg.startswith("broken.yaml: device_class: unknown value 'fpga'; valid: gpu, tpu")
    doc = _toy()
    doc["interconnect"]["topology"] = "hypercube"
    assert _error(tmp_path, doc).startswith("broken.yaml: interconnect.topology: unknown value")


def test_idle_not_below_tdp(tmp_path: Path) -> None:
    doc = _toy()
    doc["power"]["idle_w"]["value"] = 600
    assert (
        _error(tmp_path, doc) == "broken.yaml: power.idle_w: must be below power.tdp_w=500, got 600"
    )


def test_bad_sources_table(tmp_path: Path) -> None:
    doc = _toy()
    doc["sources"]["ds"]["url"] = "example.com/toy.pdf"
    assert _error(tmp_path, doc).startswith("broken.yaml: sources.ds.url: must be an http(s) URL")


def test_bad_efficiency_section(tmp_path: Path) -> None:
    doc = _toy()
    doc["efficiency"]["fudge"] = {"value": 0.5, "estimate": "a global fudge factor"}
    msg = _error(tmp_path, doc)
    assert msg.startswith("broken.yaml: efficiency.fudge: unknown key")
    assert all(name in msg for name in EFFICIENCY_FIELDS)
    doc = _toy()
    doc["efficiency"]["matmul_fraction"]["value"] = 1.5
    msg = _error(tmp_path, doc)
    assert msg == "broken.yaml: efficiency.matmul_fraction.value: must be <= 1, got 1.5"
    doc = _toy()
    doc["efficiency"]["tiles"]["value"] = [[128, 128, 64]]
    assert _error(tmp_path, doc).startswith(
        "broken.yaml: efficiency.tiles.value[0]: must be a pair"
    )


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"garbage\.yaml: not valid YAML"):
        load_hardware(path)
    with pytest.raises(ValueError, match=r"<dict>: not a Hardware description .*got list\)$"):
        hardware_from_dict(["not", "a", "mapping"])


def test_hardware_from_dict_matches_file() -> None:
    doc = _toy()
    assert hardware_from_dict(copy.deepcopy(doc), where="toy-gpu.yaml") == load_hardware(TOY)
