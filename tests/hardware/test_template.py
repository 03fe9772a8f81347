"""The parametric accelerator: derived peaks, memory from the technology table, derived power, and
every derived number's formula in `sources`."""

from __future__ import annotations

import re
from typing import Any

import pytest

from quarch.hardware import DeviceClass, Interconnect, Topology, accelerator, load_memory_tech
from quarch.perf import efficiency_for

DESIGN: dict[str, Any] = {
    "systolic_rows": 128,
    "systolic_cols": 256,
    "num_arrays": 8,
    "clock_hz": 1.5e9,
    "sram_bytes": 128e6,
    "sram_bytes_per_s": 50e12,
    "memory_tech": "hbm3e",
    "memory_stacks_or_channels": 6,
}


def test_peaks_from_the_array() -> None:
    hw = accelerator(**DESIGN)
    # 2 FLOPs x 128 x 256 PEs x 8 arrays x 1.5 GHz = 786.4 TFLOP/s at 16 bits, x2 at 8 bits
    bf16 = 2 * 128 * 256 * 8 * 1.5e9
    assert hw.matrix_flops_per_s == {"bf16": bf16, "fp16": bf16, "fp8": 2 * bf16, "int8": 2 * bf16}
    assert hw.compute_units == 8 and hw.device_class is DeviceClass.ACCELERATOR
    # one FP32 lane per array row: 2 x 1024 lanes x 1.5 GHz
    assert hw.vector_flops_per_s == 2 * 128 * 8 * 1.5e9
    assert hw.source("matrix_flops_per_s.fp8").startswith("derived: 2 x 128 x 256 PEs x 8 arrays")


def test_memory_from_the_technology_table() -> None:
    hw = accelerator(**DESIGN)
    tech = load_memory_tech()["hbm3e"]
    hbm, sram = hw.memory
    # 6 HBM3E stacks of 1.2 TB/s and 36 GB (Micron, memory_tech.yaml); 2.4 pJ/bit = 19.2 pJ/B
    assert hbm.bytes_per_s == pytest.approx(6 * 1.2e12) == 6 * tech["bytes_per_s"]
    assert hbm.capacity_bytes == pytest.approx(216e9)
    assert hbm.pj_per_byte == pytest.approx(19.2)
    assert (sram.capacity_bytes, sram.bytes_per_s) == (128e6, 50e12)
    assert "memory_tech.yaml" in hw.source("memory[0].bytes_per_s")
    assert hw.source("memory[1].bytes_per_s") == "design parameter"


def test_power_derived_or_given() -> None:
    hw = accelerator(**DESIGN)
    # 786.4 TFLOP/s x 0.5 pJ + 7.2 TB/s x 19.2 pJ/B = 393.2 W + 138.2 W
    expected = (2 * 128 * 256 * 8 * 1.5e9 * 0.5 + 7.2e12 * 19.2) * 1e-12
    assert hw.tdp_w == pytest.approx(expected)
    assert hw.idle_w == pytest.approx(0.1 * expected)
    assert hw.source("power.tdp_w").startswith("derived:")
    given = accelerator(**DESIGN, tdp_w=400.0, idle_w=60.0)
    assert (given.tdp_w, given.idle_w) == (400.0, 60.0)
    assert given.source("power.tdp_w") == "design parameter"


def test_options() -> None:
    link = Interconnect(
        name="ring", link_bytes_per_s=200e9, latency_s=1e-6, topology=Topology.RING, max_devices=16
    )
    hw = accelerator(
        **DESIGN,
        format_multipliers={"bf16": 1.0, "fp8": 2.0, "fp4": 4.0},
        vector_lanes=4096,
        interconnect=link,
        price_per_hour_usd=1.5,
        name="my-npu",
    )
    assert set(hw.matrix_flops_per_s) == {"bf16", "fp8", "fp4"}
    assert hw.vector_flops_per_s == 2 * 4096 * 1.5e9
    assert hw.interconnect == link and hw.price_per_hour_usd == 1.5 and hw.name == "my-npu"
    # the array is the tile; fp4 natively means block scales in the array
    eff = efficiency_for(hw)
    assert eff.tiles == ((128, 256),) and eff.tile_k == 128 and eff.block_scaled_mma is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"memory_tech": "hbm9"}, "unknown memory_tech 'hbm9'; valid: ddr5, gddr7, hbf, hbm3e"),
        ({"num_arrays": 0}, "num_arrays must be a positive number, got 0"),
        ({"clock_hz": -1.0}, "clock_hz must be a positive number"),
        ({"systolic_rows": 12.5}, "systolic_rows must be an integer"),
        ({"format_multipliers": {"fp12": 1.0}}, "unknown format 'fp12'"),
        ({"tdp_w": 100.0, "idle_w": 150.0}, "idle_w=150 must be below tdp_w=100"),
        ({"systolic_rows": 10**400}, "systolic_rows must be at most 1e+30"),
        ({"clock_hz": float("inf")}, "clock_hz must be at most 1e+30, got inf"),
        ({"tdp_w": ""}, "tdp_w must be a positive number, got ''"),
        ({"sram_pj_per_byte": 10**400}, "sram_pj_per_byte must be at most"),
        ({"format_multipliers": 1.0}, "format_multipliers needs a mapping"),
        ({"memory_tech": ["hbm3e"]}, "unknown memory_tech ['hbm3e']"),
    ],
)
def test_bad_designs(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        accelerator(**(DESIGN | change))
