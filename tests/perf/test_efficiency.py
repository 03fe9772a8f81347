"""Shape-dependent efficiency: tile quantization, tile choice, wave quantization, split-K, and the
per-class defaults with their overrides. Expected factors are worked out by hand in comments."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quarch.hardware import DeviceClass, Efficiency, load_hardware
from quarch.perf import DEFAULT_EFFICIENCY, efficiency_for
from quarch.perf._efficiency import (
    attention_tile_factor,
    bandwidth_fraction,
    gemm_tile_factor,
    systolic_side,
)

ONE_TILE = replace(
    DEFAULT_EFFICIENCY[DeviceClass.GPU],
    tiles=((128, 128),),
    tile_k=64,
    saturating_tile_intensity=0.0,
    attention_tile=(128, 128),
)


def test_every_device_class_has_defaults() -> None:
    assert set(DEFAULT_EFFICIENCY) == set(DeviceClass)
    for eff in DEFAULT_EFFICIENCY.values():
        assert 0 < eff.matmul_fraction <= 1 and 0 < eff.attention_fraction <= 1
        assert all(0 < f <= 1 for f in eff.bandwidth_fraction)
        assert eff.band[0] < 1 < eff.band[1]


def test_exact_multiples_have_no_padding() -> None:
    # 1280 x 1280 outputs in 128 x 128 tiles = 100 tiles on 100 units: one full wave, k = 4096
    # a multiple of 64
    assert gemm_tile_factor(1280, 1280, 4096, 1, ONE_TILE, 100) == (1.0, 128)


def test_tile_quantization() -> None:
    # n = 1281 needs 11 column tiles: 10 x 11 = 110 tiles on 110 units (one wave), padded work
    # 1280 x 1408 x 4096 over real 1280 x 1281 x 4096
    factor, _ = gemm_tile_factor(1280, 1281, 4096, 1, ONE_TILE, 110)
    assert factor == pytest.approx(1408 / 1281)
    # k = 4097 walks 65 steps of 64: 4160 / 4097
    factor, _ = gemm_tile_factor(1280, 1280, 4097, 1, ONE_TILE, 100)
    assert factor == pytest.approx(4160 / 4097)


def test_wave_quantization() -> None:
    # 101 tiles on 100 units take two waves: 200 unit-slots for 101 tiles of work
    factor, _ = gemm_tile_factor(128, 128 * 101, 4096, 1, ONE_TILE, 100)
    assert factor == pytest.approx(200 / 101)
    # 8192^3: 64 x 64 = 4096 tiles, 41 waves of 100: 4100 / 4096
    factor, _ = gemm_tile_factor(8192, 8192, 8192, 1, ONE_TILE, 100)
    assert factor == pytest.approx(4100 / 4096)


def test_split_k_fills_the_units() -> None:
    # 1 x 4096 x 4096 (a decode GEMV): 32 tiles < 100 units, split k in 3 (100 // 32); the 64
    # k-steps round up to 66 (22 per split); 96 work items in one wave of 100 slots.
    # factor = (100 / 96) * (128 x 4096 x 66·64) / (1 x 4096 x 4096) = 137.5
    factor, rows = gemm_tile_factor(1, 4096, 4096, 1, ONE_TILE, 100)
    assert factor == pytest.approx(137.5) and rows == 128


def test_batched_gemms_count_all_tiles() -> None:
    # 8 experts of 128 x 1280 x 4096: 8 x 10 = 80 tiles on 100 units: split-K by 1 (100 // 80),
    # one wave of 80 items in 100 slots: 100 / 80
    factor, _ = gemm_tile_factor(128, 1280, 4096, 8, ONE_TILE, 100)
    assert factor == pytest.approx(100 / 80)


def test_small_tiles_win_skinny_gemms_at_their_rate() -> None:
    eff = replace(ONE_TILE, tiles=((128, 128), (16, 128)), saturating_tile_intensity=64.0)
    # the 16 x 128 tile stages 2·16·128 / 144 = 28.44 FLOPs per element: 0.444 of full rate
    factor, rows = gemm_tile_factor(1, 4096, 4096, 1, eff, 100)
    big, _ = gemm_tile_factor(1, 4096, 4096, 1, ONE_TILE, 100)
    assert rows == 16 and factor < big
    # 16 x 128 tiles: 32 of them, split-K 3, 66 k-steps of 64, one wave:
    # (100 / 96) * (16 x 4096 x 4224) / (4096 x 4096) / (28.444 / 64)
    assert factor == pytest.approx((100 / 96) * 16 * 4224 / 4096 / ((2 * 16 * 128 / 144) / 64))
    # a large GEMM keeps the full-rate tile
    assert gemm_tile_factor(8192, 8192, 8192, 1, eff, 100)[1] == 128


def test_attention_factor() -> None:
    # prefill: 4 problems of 1024 query rows over 1024 keys, 128 x 128 tiles: 32 row tiles on
    # 32 units, no padding
    assert attention_tile_factor(1024, 1024, 4, ONE_TILE, 32) == pytest.approx(1.0)
    # decode: 8 problems (sequence x KV head) of 4 packed query rows over 1000 keys; rows pad
    # to the smallest GEMM tile (128 here) and keys to 1024; 8 row tiles on 100 units split
    # the 8 key tiles 8 ways (min(100 // 8, 8)): 64 items in one wave of 100
    factor = attention_tile_factor(4, 1000, 8, ONE_TILE, 100)
    assert factor == pytest.approx((100 / 64) * (128 * 1024) / (4 * 1000))


def test_class_defaults_and_overrides() -> None:
    h100 = load_hardware("h100-sxm")
    assert efficiency_for(h100) == replace(
        DEFAULT_EFFICIENCY[DeviceClass.GPU], block_scaled_mma=False
    )
    # B200 runs fp4 natively: its matrix unit applies MX block scales
    assert efficiency_for(load_hardware("b200")).block_scaled_mma is True
    assert bandwidth_fraction(efficiency_for(h100), 0) == 0.85
    assert bandwidth_fraction(efficiency_for(h100), 5) == 0.7  # the last value repeats


def test_systolic_tiles_derived_from_the_peak() -> None:
    # TPU v6e: 918 TFLOP/s / (4 MXUs x 2 x 1.75 GHz) = 65,571 = 256^2 (catalog/tpu-v6e.yaml)
    v6e = load_hardware("tpu-v6e")
    assert systolic_side(v6e) == 256
    eff = efficiency_for(v6e)
    assert eff.tiles == ((256, 256),) and eff.tile_k == 256
    assert efficiency_for(load_hardware("tpu-v5e")).tiles == ((128, 128),)


def test_efficiency_is_a_spec() -> None:
    with pytest.raises(TypeError):
        Efficiency(matmul_fraction=0.5)  # type: ignore[call-arg]


def test_matmul_fraction_by_format_family_and_architecture() -> None:
    from quarch.perf._efficiency import ARCHITECTURE, FAMILY_FRACTION, matmul_fraction_for

    h100, a100 = load_hardware("h100-sxm"), load_hardware("a100-sxm")
    default = efficiency_for(h100).matmul_fraction
    assert ARCHITECTURE["h100-sxm"] == ARCHITECTURE["h200-sxm"] == "hopper"
    assert matmul_fraction_for(h100, "fp8") == FAMILY_FRACTION[("hopper", "fp8")] == 0.67
    assert matmul_fraction_for(h100, "bf16") == default  # no source says otherwise
    assert matmul_fraction_for(a100, "fp8") == efficiency_for(a100).matmul_fraction
    # a device outside the architecture table, and a calibrated device, keep their own fraction
    custom = replace(h100, name="my-hopper")
    assert matmul_fraction_for(custom, "fp8") == default
    calibrated = replace(h100, name="h100-sxm", efficiency={"matmul_fraction": 0.7})
    assert matmul_fraction_for(calibrated, "fp8") == 0.7


def test_fp8_gemm_priced_at_its_family_fraction() -> None:
    from quarch.perf import Op, OpKind, op_time

    h100 = load_hardware("h100-sxm")
    m = n = k = 8192

    def gemm(fmt: str) -> Op:
        return Op(
            name="g",
            kind=OpKind.MATMUL,
            group="g",
            count=1,
            m=m,
            n=n,
            k=k,
            flops=2.0 * m * n * k,
            weight_bytes=k * n,
            act_bytes=m * (k + n),
            weight_format=fmt,
            act_format=fmt,
            kv_format=fmt,
        )

    fp8, bf16 = op_time(gemm("fp8_e4m3"), h100), op_time(gemm("bf16"), h100)
    assert fp8.rate_key == "fp8" and bf16.rate_key == "bf16"
    peak = h100.matrix_flops_per_s
    expected = (2.0 * m * n * k * fp8.shape_factor) / (peak["fp8"] * 0.67)
    assert fp8.compute_s == pytest.approx(expected, rel=1e-12)
    frac = efficiency_for(h100).matmul_fraction
    assert bf16.compute_s == pytest.approx(
        2.0 * m * n * k * bf16.shape_factor / (peak["bf16"] * frac), rel=1e-12
    )


def test_device_entries_take_precedence_over_the_architecture() -> None:
    from quarch.perf._efficiency import FAMILY_FRACTION, matmul_fraction_for

    mi300x, mi325x = load_hardware("mi300x"), load_hardware("mi325x")
    # AMD's max-achievable FLOPs over the dense peaks: the hotter-clocked MI325X attains more
    assert matmul_fraction_for(mi300x, "bf16") == pytest.approx(708.0 / 1307.4)
    assert matmul_fraction_for(mi300x, "fp8") == FAMILY_FRACTION[("mi300x", "fp8")]
    for family in ("fp16", "bf16", "fp8"):
        assert matmul_fraction_for(mi325x, family) > matmul_fraction_for(mi300x, family)
    # a family without an entry keeps the class default
    assert matmul_fraction_for(mi300x, "int8") == efficiency_for(mi300x).matmul_fraction
