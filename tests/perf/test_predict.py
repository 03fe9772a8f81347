"""The machine model: hand-computed op times on a toy device, native-rate selection,
communication, the TPOT integration against the step-by-step sum, and sanity on real devices."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from quarch.hardware import (
    DeviceClass,
    Hardware,
    Interconnect,
    MemoryLevel,
    Topology,
    load_hardware,
)
from quarch.models import load_model_spec
from quarch.perf import (
    Bound,
    CommKind,
    Op,
    OpKind,
    Scenario,
    comm_time_s,
    decode_ops,
    matrix_rate,
    op_time,
    predict,
)
from quarch.perf._bands import load_bands
from quarch.perf._predict import affine_mean_of_max

# A device with round numbers and ideal efficiency, so op times can be worked out by hand.
IDEAL = {
    "matmul_fraction": 1.0,
    "attention_fraction": 1.0,
    "vector_fraction": 1.0,
    "bandwidth_fraction": (1.0,),
    "comm_fraction": 1.0,
    "launch_overhead_s": 1e-6,
    "tiles": ((128, 128),),
    "tile_k": 64,
    "saturating_tile_intensity": 0.0,
    "attention_tile": (128, 128),
    "block_scaled_mma": False,
}


def toy(
    *,
    rates: dict[str, float] | None = None,
    topology: Topology = Topology.SWITCH,
    interconnect: bool = True,
    units: int = 100,
    **efficiency: Any,
) -> Hardware:
    return Hardware(
        name="toy",
        display_name="toy",
        vendor="test",
        device_class=DeviceClass.GPU,
        matrix_flops_per_s=rates or {"bf16": 1e15, "fp8": 2e15},
        vector_flops_per_s=1e13,
        compute_units=units,
        clock_hz=1e9,
        memory=(MemoryLevel(name="hbm", capacity_bytes=100e9, bytes_per_s=1e12),),
        interconnect=Interconnect(
            name="link",
            link_bytes_per_s=400e9,
            latency_s=2e-6,
            topology=topology,
            max_devices=8,
        )
        if interconnect
        else None,
        tdp_w=1000.0,
        idle_w=100.0,
        price_per_hour_usd=4.0,
        efficiency={**IDEAL, **efficiency},
    )


def gemm(m: int, n: int, k: int, weight: str = "bf16", act: str = "bf16", **kw: Any) -> Op:
    bits = {"bf16": 16, "int4_g128": 4.25, "fp8_e4m3": 8}[weight]
    return Op(
        name="gemm",
        kind=OpKind.MATMUL,
        group="dense",
        count=1,
        m=m,
        n=n,
        k=k,
        flops=2.0 * m * n * k,
        weight_bytes=n * k * bits / 8,
        act_bytes=m * (n + k) * 2.0,
        weight_format=weight,
        act_format=act,
        **kw,
    )


# --- one op by hand ---------------------------------------------------------------------------


def test_memory_bound_decode_gemv() -> None:
    hw = toy()
    op = gemm(1, 4096, 4096)
    t = op_time(op, hw)
    # 4096 x 4096 bf16 weights (33,554,432 B) + 1 x 8192 activations (16,384 B) at 1e12 B/s
    assert t.memory_s == pytest.approx((33_554_432 + 16_384) / 1e12)
    # compute: 33.55 MFLOP x shape factor 137.5 (m padded to 128, split-K 3, see
    # test_efficiency.test_split_k_fills_the_units) at 1e15 FLOP/s = 4.61 us < 33.57 us
    assert t.compute_s == pytest.approx(2 * 4096 * 4096 * 137.5 / 1e15)
    assert t.bound is Bound.MEMORY
    assert t.time_s == pytest.approx(t.memory_s + 1e-6)
    assert "memory-bound" in t.why


def test_compute_bound_large_gemm() -> None:
    hw = toy()
    t = op_time(gemm(8192, 8192, 8192), hw)
    # 2 x 8192^3 FLOPs, 41 waves for 4096 tiles on 100 units (factor 4100/4096), at 1e15 FLOP/s
    assert t.compute_s == pytest.approx(2 * 8192**3 * (4100 / 4096) / 1e15)
    assert t.memory_s == pytest.approx(3 * 8192 * 8192 * 2 / 1e12)
    assert t.bound is Bound.COMPUTE and t.rate_key == "bf16"
    assert t.time_s == pytest.approx(t.compute_s + 1e-6)


def test_tile_and_wave_quantization_in_op_time() -> None:
    hw = toy()
    aligned = op_time(gemm(1280, 1280, 4096), hw)  # 100 tiles, one wave, no padding
    assert aligned.compute_s == pytest.approx(2 * 1280 * 1280 * 4096 / 1e15)
    ragged = op_time(gemm(1280, 1281, 4096), hw)  # 110 tiles: two waves, 1408 padded columns
    assert ragged.compute_s == pytest.approx(
        2 * 1280 * 1281 * 4096 * (200 / 110) * 1408 / 1281 / 1e15
    )
    assert ragged.shape_factor == pytest.approx(200 / 110 * 1408 / 1281)


def test_overhead_bound_tiny_op() -> None:
    t = op_time(gemm(1, 64, 64), toy())
    assert t.bound is Bound.OVERHEAD and t.time_s == pytest.approx(
        max(t.compute_s, t.memory_s) + 1e-6
    )


def test_fractions_scale_times() -> None:
    slow = toy(matmul_fraction=0.5, bandwidth_fraction=(0.8,))
    assert op_time(gemm(8192, 8192, 8192), slow).compute_s == pytest.approx(
        2 * 8192**3 * (4100 / 4096) / 0.5e15
    )
    assert op_time(gemm(1, 4096, 4096), slow).memory_s == pytest.approx(33_570_816 / 0.8e12)


# --- which rate a format pair runs at ------------------------------------------------------------


def test_w4a16_without_4bit_units_dequantizes() -> None:
    hw = toy()  # bf16 and fp8 only
    plan = matrix_rate(hw, "int4_g128", "bf16")
    assert (plan.key, plan.converts) == ("bf16", True)
    t = op_time(gemm(256, 4096, 4096, weight="int4_g128"), hw)
    # 4096 x 4096 weights dequantized once per 128-row output tile (2 of them), 2 vector FLOPs
    # each (the GPU default) at 1e13 FLOP/s
    assert t.convert_s == pytest.approx(4096 * 4096 * 2 * 2 / 1e13)
    matrix = 2 * 256 * 4096 * 4096 / 1e15  # 64 tiles, split-K 1: one wave of 64 in 100 slots
    assert t.compute_s == pytest.approx(matrix * 100 / 64 + t.convert_s)
    # the weights move at 4.25 bits per element, scales included
    assert t.op.weight_bytes == 4096 * 4096 * 4.25 / 8


def test_w4a16_with_4bit_units_still_runs_at_16_bits() -> None:
    # A 4-bit unit needs 4-bit activations too: W4A16 dequantizes, W4A4 runs natively
    hw = toy(rates={"bf16": 1e15, "int8": 2e15, "int4": 4e15})
    assert matrix_rate(hw, "int4_g128", "bf16").key == "bf16"
    w4a4 = matrix_rate(hw, "int4", "int4")
    assert (w4a4.key, w4a4.flops_per_s, w4a4.converts) == ("int4", 4e15, False)
    # group scales along k without block-scaling hardware: partial sums rescaled per group
    assert matrix_rate(hw, "int4_g128", "int4").promote_group == 128
    assert matrix_rate(hw, "int8", "int8").promote_group == 0  # per-channel: epilogue


def test_native_rates_on_catalog_devices() -> None:
    h100, a100, b200 = (load_hardware(n) for n in ("h100-sxm", "a100-sxm", "b200"))
    assert matrix_rate(h100, "fp8_e4m3", "fp8_e4m3").key == "fp8"
    assert matrix_rate(h100, "fp8_e4m3_g128", "fp8_e4m3_g128").promote_group == 128
    # no fp8 on A100: both operands run at bf16, the stored one converted
    plan = matrix_rate(a100, "fp8_e4m3", "fp8_e4m3")
    assert (plan.key, plan.converts) == ("bf16", True)
    assert matrix_rate(a100, "int8", "int8").key == "int8"
    # Blackwell: fp4 x fp8 natively at the fp8 rate, block scales in the MMA
    plan = matrix_rate(b200, "mxfp4", "mxfp8_e4m3")
    assert (plan.key, plan.converts, plan.promote_group) == ("fp8", False, 0)
    assert matrix_rate(b200, "nvfp4", "nvfp4").key == "fp4"
    # codebooks have no unit anywhere
    assert matrix_rate(h100, "nf4", "bf16") == matrix_rate(h100, "int4_g128", "bf16")
    # a wider stored operand (bf16 KV with int8 activations) upcasts the activations instead
    plan = matrix_rate(h100, "bf16", "int8")
    assert (plan.key, plan.converts) == ("bf16", False)
    # Apple M2 Ultra lists fp16 and fp32 only: bf16 runs at the fp16 rate
    assert matrix_rate(load_hardware("m2-ultra"), "bf16", "bf16").key == "fp16"


# --- communication -----------------------------------------------------------------------------


def comm(kind: CommKind, group: int, payload: float) -> Op:
    return Op(
        name="comm",
        kind=OpKind.COMM,
        group="dense",
        count=1,
        m=1,
        n=1,
        k=0,
        comm=kind,
        comm_bytes=payload,
        comm_group=group,
    )


def test_tp_allreduce_ring_time() -> None:
    payload = 16 * 8192 * 2  # 16 tokens of an 8192-wide bf16 hidden state
    t = comm_time_s(comm(CommKind.ALLREDUCE, 4, payload), toy())
    # ring: 2 (g-1)/g x B / 400 GB/s + 2 (g-1) x 2 us
    assert t == pytest.approx(2 * 3 / 4 * payload / 400e9 + 2 * 3 * 2e-6)
    op = op_time(comm(CommKind.ALLREDUCE, 4, payload), toy())
    assert op.bound is Bound.COMMUNICATION and op.time_s == pytest.approx(t + 1e-6)


def test_alltoall_p2p_and_topologies() -> None:
    b = 1e6
    assert comm_time_s(comm(CommKind.ALLTOALL, 8, b), toy()) == pytest.approx(
        7 / 8 * b / 400e9 + 2e-6
    )
    assert comm_time_s(comm(CommKind.P2P, 2, b), toy()) == pytest.approx(b / 400e9 + 2e-6)
    # fully connected mesh of 8: a group of 4 uses 3 of the 7 links
    mesh = comm_time_s(comm(CommKind.ALLREDUCE, 4, b), toy(topology=Topology.MESH))
    assert mesh == pytest.approx(2 * 3 / 4 * b / (400e9 * 3 / 7) + 6 * 2e-6)
    assert comm_time_s(comm(CommKind.NONE, 1, 0.0), toy()) == 0.0


def test_comm_errors() -> None:
    with pytest.raises(ValueError, match="toy has no interconnect"):
        comm_time_s(comm(CommKind.ALLREDUCE, 2, 1e6), toy(interconnect=False))
    with pytest.raises(ValueError, match="scale-up domain of 8"):
        comm_time_s(comm(CommKind.ALLREDUCE, 16, 1e6), toy())


# --- TPOT: closed-form mean over the decode steps vs the step-by-step sum -----------------------


# no tile padding, no waves, negligible overhead: op times exactly affine in their sizes
EXACT = toy(
    rates={"bf16": 3.5e12},
    units=1,
    tiles=((1, 1),),
    tile_k=1,
    attention_tile=(1, 1),
    launch_overhead_s=1e-12,
)


def step_by_step_tpot(spec: Any, hw: Hardware, sc: Scenario) -> float:
    steps = range(sc.prompt_len, sc.prompt_len + sc.output_len - 1)
    total = sum(sum(op_time(op, hw).total_s for op in decode_ops(spec, sc, kv)) for kv in steps)
    return total / len(steps)


def test_affine_mean_of_max() -> None:
    # a = x, b = 10 - x over x = 0..10: max is 10,9,..,5,..,9,10 -> mean 85/11
    assert affine_mean_of_max(0, 10, 10, 0, 11) == pytest.approx(85 / 11)
    assert affine_mean_of_max(1, 3, 0, 0, 5) == pytest.approx(2.0)


def test_tpot_exact_when_attention_crosses_from_memory_to_compute() -> None:
    # Llama-3.1-8B decode attention at batch 1 over kv cached tokens: 16,384 (kv + 1) FLOPs
    # and 16,384 + 4,096 (kv + 2) bytes (Q and O; K and V read and the new ones written). At
    # 3.5 FLOPs per byte of bandwidth it is memory-bound for short caches and compute-bound
    # past about 60 tokens.
    # 1 x 1 tiles on one unit make compute time exactly affine in the KV length.
    hw = EXACT
    spec = load_model_spec("llama-3.1-8b")
    sc = Scenario(batch=1, prompt_len=10, output_len=60)
    first = {t.op.name: t for t in (op_time(o, hw) for o in decode_ops(spec, sc, 10))}
    last = {t.op.name: t for t in (op_time(o, hw) for o in decode_ops(spec, sc, 68))}
    name = "dense.attn.attention"
    assert first[name].bound is Bound.MEMORY and last[name].bound is Bound.COMPUTE
    assert predict(spec, hw, sc).tpot_s == pytest.approx(step_by_step_tpot(spec, hw, sc), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "device", "scenario"),
    [
        ("llama-3.1-8b", "h100-sxm", Scenario(batch=1, prompt_len=1000, output_len=200)),
        ("llama-3.1-8b", "h100-sxm", Scenario(batch=64, prompt_len=100, output_len=300)),
        ("mixtral-8x7b", "h100-sxm", Scenario(batch=32, prompt_len=500, output_len=100, tp=2)),
        ("deepseek-v2-lite", "a100-sxm", Scenario(batch=128, prompt_len=64, output_len=200)),
    ],
)
def test_tpot_matches_step_by_step_on_real_devices(
    model: str, device: str, scenario: Scenario
) -> None:
    spec, hw = load_model_spec(model), load_hardware(device)
    # memory-bound decode attention: exact; a compute-bound one would differ by at most the
    # key-axis tile staircase
    assert predict(spec, hw, scenario).tpot_s == pytest.approx(
        step_by_step_tpot(spec, hw, scenario), rel=1e-9
    )


def test_tpot_with_a_sliding_window_is_split_at_the_window() -> None:
    # attention stops growing once the cache passes the window: not affine over the whole run
    spec = replace(load_model_spec("llama-3.1-8b"), sliding_window=100)
    hw = EXACT
    sc = Scenario(batch=4, prompt_len=20, output_len=300)
    assert predict(spec, hw, sc).tpot_s == pytest.approx(step_by_step_tpot(spec, hw, sc), rel=1e-12)


# --- whole predictions ---------------------------------------------------------------------------


def test_llama_8b_decode_on_h100_is_memory_bound() -> None:
    p = predict("llama-3.1-8b", "h100-sxm", Scenario(batch=1, prompt_len=512, output_len=128))
    assert p.decode_bound is Bound.MEMORY and p.fits
    # 16.06 GB of bf16 weights can not stream faster than 3.35 TB/s: 4.8 ms is a hard floor;
    # vLLM-class engines measure about 6-8 ms per token here
    assert p.tpot_s > 16.06e9 / 3.35e12
    assert 5e-3 < p.tpot_s < 15e-3
    assert p.prefill_bound is Bound.COMPUTE


def test_prediction_is_consistent() -> None:
    hw = toy()
    spec = load_model_spec("llama-3.1-8b")
    sc = Scenario(batch=8, prompt_len=256, output_len=64, tp=2)
    p = predict(spec, hw, sc)
    assert p.num_devices == 2
    assert p.ttft_s == pytest.approx(sum(t.total_s for t in p.prefill))
    assert p.tpot_s == pytest.approx(sum(t.total_s for t in p.decode))
    assert p.e2e_latency_s == pytest.approx(p.ttft_s + 63 * p.tpot_s)
    tokens = 8 * (256 + 64)
    assert p.throughput_tokens_per_s == pytest.approx(tokens / p.e2e_latency_s)
    assert p.tokens_per_s_per_device == pytest.approx(p.throughput_tokens_per_s / 2)
    assert p.decode_tokens_per_s == pytest.approx(8 / p.tpot_s)
    # energy between all devices idling and all at TDP for the whole request
    assert 2 * 100 * p.e2e_latency_s < p.energy_j < 2 * 1000 * p.e2e_latency_s
    assert p.energy_per_token_j == pytest.approx(p.energy_j / tokens)
    # $4 per device-hour x 2 devices x latency, per million tokens
    assert p.cost_per_million_tokens_usd == pytest.approx(
        4 * 2 * p.e2e_latency_s / 3600 / tokens * 1e6
    )
    # a device with no published rows: the envelope of every validated latency band
    latency = [b for (_, fam), b in load_bands().bands.items() if fam == "latency"]
    assert p.band == (min(b[0] for b in latency), max(b[1] for b in latency))
    assert "no published rows for device toy" in p.band_note
    assert "decode is" in p.why() and "prefill is" in p.why()


def test_single_output_token_has_no_decode_steps() -> None:
    p = predict("llama-3.1-8b", "h100-sxm", Scenario(batch=2, prompt_len=128, output_len=1))
    assert p.e2e_latency_s == p.ttft_s and p.tpot_s > 0


def test_formats_change_the_answer_the_right_way() -> None:
    sc = Scenario(batch=1, prompt_len=512, output_len=128)
    bf16 = predict("llama-3.1-8b", "h100-sxm", sc)
    int4 = predict("llama-3.1-8b", "h100-sxm", replace(sc, weight_format="int4_g128"))
    # memory-bound decode: 4.25-bit weights stream about 3.8x fewer bytes
    assert int4.tpot_s < 0.5 * bf16.tpot_s
    big = Scenario(batch=16, prompt_len=2048, output_len=16)
    fp8 = replace(big, weight_format="fp8_e4m3", act_format="fp8_e4m3")
    # compute-bound prefill: fp8 doubles the H100's rate, the A100 has no fp8 units
    assert (
        predict("llama-3.1-8b", "h100-sxm", fp8).ttft_s
        < 0.7 * predict("llama-3.1-8b", "h100-sxm", big).ttft_s
    )
    assert (
        predict("llama-3.1-8b", "a100-sxm", fp8).ttft_s
        >= 0.99 * predict("llama-3.1-8b", "a100-sxm", big).ttft_s
    )


def test_fit_and_tensor_parallel() -> None:
    big = predict("llama-3.1-405b", "h100-sxm", Scenario(batch=1, prompt_len=128, output_len=8))
    assert not big.fits and big.memory.weight_bytes > 80e9
    sc = Scenario(batch=16, prompt_len=2048, output_len=256, tp=4, weight_format="int4_g128")
    p70 = predict("llama-3.1-70b", "h100-sxm", replace(sc, kv_format="fp8_e4m3"))
    assert p70.fits and p70.num_devices == 4
    tp1 = predict("llama-3.1-8b", "h100-sxm", Scenario(batch=1, prompt_len=512, output_len=64))
    tp2 = predict(
        "llama-3.1-8b", "h100-sxm", Scenario(batch=1, prompt_len=512, output_len=64, tp=2)
    )
    # half the weights per device, plus all-reduces: faster, but less than twice
    assert 0.5 * tp1.tpot_s < tp2.tpot_s < tp1.tpot_s
    assert any(t.op.comm is CommKind.ALLREDUCE and t.comm_s > 0 for t in tp2.decode)
    with pytest.raises(ValueError, match="no interconnect"):
        predict("llama-3.1-8b", "m2-ultra", Scenario(batch=1, tp=2))


@pytest.mark.parametrize("device", ["h100-sxm", "tpu-v6e", "mi300x", "m2-ultra", "b200", "gaudi3"])
def test_every_kind_of_device_predicts(device: str) -> None:
    p = predict("qwen2.5-7b", device, Scenario(batch=4, prompt_len=256, output_len=32))
    assert p.ttft_s > 0 and p.tpot_s > 0 and p.energy_per_token_j > 0
    # catalog devices with a sourced rental price (quarch/hardware/prices.yaml) are costed
    price = load_hardware(device).price_per_hour_usd
    if price is None:
        assert p.cost_per_million_tokens_usd is None
    else:
        tokens = 4 * (256 + 32)
        expected = price * p.e2e_latency_s / 3600 / tokens * 1e6
        assert p.cost_per_million_tokens_usd == pytest.approx(expected)


def test_sram_resident_design_reads_from_sram() -> None:
    from quarch.hardware import accelerator

    hw = accelerator(
        systolic_rows=128,
        systolic_cols=128,
        num_arrays=16,
        clock_hz=1e9,
        sram_bytes=2e9,
        sram_bytes_per_s=100e12,
        memory_tech="lpddr5x",
        memory_stacks_or_channels=4,
    )
    small = predict("smollm2-135m", hw, Scenario(batch=1, prompt_len=128, output_len=32))
    large = predict("llama-3.1-8b", hw, Scenario(batch=1, prompt_len=128, output_len=32))
    assert small.memory_level == 1 and large.memory_level == 0


def test_continuous_batching_tpot_carries_the_other_clients_prefills() -> None:
    sc = Scenario(batch=8, prompt_len=1024, output_len=128)
    p = predict("llama-3.1-8b", "h100-sxm", sc, engine="vllm")
    per_prompt = (p.ttft_s - p.step_overhead_s) / 8
    assert p.tpot_continuous_s == pytest.approx(p.tpot_s + 7 / 128 * per_prompt, rel=1e-12)
    assert p.tpot_continuous_s > p.tpot_s
    one = predict("llama-3.1-8b", "h100-sxm", replace(sc, batch=1), engine="vllm")
    assert one.tpot_continuous_s == one.tpot_s  # a lone client's next prefill waits for it
