"""A `Plan` prices a mixed design in one `predict` call, exactly as the uniform pieces add up."""

from __future__ import annotations

import pytest

from quarch.models import load_model_spec
from quarch.perf import (
    ExtraGemm,
    LayerPlan,
    Overhead,
    Plan,
    Scenario,
    build_ops,
    memory_per_device,
    predict,
    prefill_ops,
)

SCEN = Scenario(batch=4, prompt_len=128, output_len=32)
LOWRANK = Overhead(
    gemms=(
        ExtraGemm(name="lowrank_a", k="in", n=16, weight_format="bf16"),
        ExtraGemm(name="lowrank_b", k=16, n="out", weight_format="bf16"),
    )
)


def _same(a, b) -> None:
    assert a.ttft_s == b.ttft_s
    assert a.tpot_s == b.tpot_s
    assert a.memory == b.memory
    assert a.energy_j == b.energy_j
    assert a.memory_level == b.memory_level


@pytest.mark.parametrize("model", ["smollm2-135m", "mixtral-8x7b", "deepseek-v2-lite"])
def test_uniform_plan_equals_the_scenario(model: str) -> None:
    spec = load_model_spec(model)
    n = spec.num_layers
    _same(
        predict(spec, "h100-sxm", SCEN, Plan.uniform(LayerPlan(), n)),
        predict(spec, "h100-sxm", SCEN),
    )
    layer = LayerPlan(attn="int8", mlp="mxfp4", kv="fp8_e4m3")
    scen = Scenario(
        batch=4,
        prompt_len=128,
        output_len=32,
        kv_format="fp8_e4m3",
        weight_overrides={
            "attn": "int8",
            "mlp": "mxfp4",
            "experts": "mxfp4",
            "shared_experts": "mxfp4",
            "router": "mxfp4",
        },
    )
    _same(predict(spec, "h100-sxm", SCEN, Plan.uniform(layer, n)), predict(spec, "h100-sxm", scen))


def _layer_time(pred, phase: str, layers: bool) -> float:
    return sum(t.total_s for t in getattr(pred, phase) if (t.op.group == "dense") == layers)


def test_mixed_plan_is_the_layer_weighted_mix() -> None:
    spec = load_model_spec("smollm2-135m")  # 30 layers
    lo, hi = (
        LayerPlan(attn="mxfp4", mlp="mxfp4", act="fp8_e4m3"),
        LayerPlan(attn="int8", mlp="int8"),
    )
    plan = Plan.of([lo] * 10 + [hi] * 20)
    assert plan.runs == ((0, 10, lo), (10, 30, hi))
    mixed = predict(spec, "h100-sxm", SCEN, plan)
    a = predict(spec, "h100-sxm", SCEN, Plan.uniform(lo, 30))
    b = predict(spec, "h100-sxm", SCEN, Plan.uniform(hi, 30))
    for phase, got in (("prefill", mixed.ttft_s), ("decode", mixed.tpot_s)):
        expect = _layer_time(a, phase, False)
        expect += _layer_time(a, phase, True) / 3 + _layer_time(b, phase, True) * 2 / 3
        assert got == pytest.approx(expect, rel=1e-12)
    m, ma, mb = mixed.memory, a.memory, b.memory
    assert m.weight_bytes == pytest.approx(ma.weight_bytes / 3 + mb.weight_bytes * 2 / 3, rel=1e-12)
    assert m.kv_cache_bytes == ma.kv_cache_bytes
    names = [op.name for op in prefill_ops(spec, SCEN, plan)]
    assert "dense[0-9].attn.qkv_proj" in names and "dense[10-29].mlp.down" in names
    assert {op.group for op in prefill_ops(spec, SCEN, plan)} == {"embed", "dense", "head"}


def test_pipeline_stages_take_their_own_layers() -> None:
    spec = load_model_spec("smollm2-135m")
    scen = Scenario(batch=4, prompt_len=128, output_len=32, pp=2)
    small, big = LayerPlan(attn="mxfp4", mlp="mxfp4"), LayerPlan()
    bf16 = memory_per_device(spec, scen)
    assert bf16.stage == 1  # the last stage also holds the final norm
    late = memory_per_device(spec, scen, Plan.of([small] * 15 + [big] * 15))
    assert late.stage == 1 and late.weight_bytes == bf16.weight_bytes
    early = memory_per_device(spec, scen, Plan.of([big] * 15 + [small] * 15))
    h_bytes = spec.hidden_size * 2  # the final norm, at bf16
    assert early.stage == 0 and early.weight_bytes == pytest.approx(bf16.weight_bytes - h_bytes)


def test_overhead_adds_named_gemms_and_resident_bytes() -> None:
    spec = load_model_spec("smollm2-135m")  # h=576, q=576, kv=192, ffn=1536
    plain = Plan.uniform(LayerPlan(attn="mxfp4", mlp="mxfp4"), 30)
    lqer = Plan.uniform(
        LayerPlan(attn="mxfp4", mlp="mxfp4", attn_overhead=LOWRANK, mlp_overhead=LOWRANK), 30
    )
    per_layer = 16 * ((576 + 576) * 2 + (576 + 192) * 2 + 3 * (576 + 1536)) * 2
    a, b = memory_per_device(spec, SCEN, plain), memory_per_device(spec, SCEN, lqer)
    assert b.weight_bytes - a.weight_bytes == pytest.approx(30 * per_layer)
    ops = {op.name: op for op in build_ops(spec, SCEN, "decode", kv_len=128, tokens=1, plan=lqer)}
    qa, db = ops["dense.attn.q_proj.lowrank_a"], ops["dense.mlp.down_proj.lowrank_b"]
    assert (qa.m, qa.k, qa.n, qa.count, qa.weight_format) == (4, 576, 16, 30, "bf16")
    assert (db.k, db.n) == (16, 576)
    slow, fast = predict(spec, "h100-sxm", SCEN, lqer), predict(spec, "h100-sxm", SCEN, plain)
    assert slow.tpot_s > fast.tpot_s and slow.ttft_s > fast.ttft_s


def test_overhead_shards_like_its_layer() -> None:
    spec = load_model_spec("smollm2-135m")
    scen = Scenario(batch=4, prompt_len=128, output_len=32, tp=3)  # 9 heads, 3 KV heads
    plain = Plan.uniform(LayerPlan(), 30)
    lqer = Plan.uniform(LayerPlan(attn_overhead=LOWRANK), 30)
    extra = memory_per_device(spec, scen, lqer).weight_bytes
    extra -= memory_per_device(spec, scen, plain).weight_bytes
    # column-parallel q, k, v keep A [576, 16] whole and split B; row-parallel o splits A
    per_layer = 16 * ((576 + 192) + 2 * (576 + 64) + (192 + 576)) * 2
    assert extra == pytest.approx(30 * per_layer)


def test_moe_overhead_runs_on_the_touched_experts() -> None:
    spec = load_model_spec("mixtral-8x7b")
    plan = Plan.uniform(LayerPlan(mlp_overhead=LOWRANK), spec.num_layers)
    ops = {op.name: op for op in build_ops(spec, SCEN, "decode", kv_len=128, tokens=1, plan=plan)}
    experts, lowrank = ops["moe.experts.gate_up"], ops["moe.experts.gate_proj.lowrank_a"]
    assert lowrank.batch == experts.batch and lowrank.m == experts.m
    assert "moe.router.lowrank_b" in ops


def test_memory_level_can_be_forced() -> None:
    spec = load_model_spec("smollm2-135m")
    auto = predict(spec, "h100-sxm", SCEN)
    assert auto.memory_level == 0
    _same(predict(spec, "h100-sxm", SCEN, memory_level=0), auto)
    l2 = predict(spec, "h100-sxm", SCEN, memory_level=1)  # as if the model sat in L2
    assert l2.memory_level == 1 and l2.tpot_s < auto.tpot_s
    with pytest.raises(ValueError, match="memory_level"):
        predict(spec, "h100-sxm", SCEN, memory_level=2)


def test_bad_plans_are_named() -> None:
    spec = load_model_spec("smollm2-135m")
    with pytest.raises(ValueError, match="29 layers"):
        predict(spec, "h100-sxm", SCEN, Plan.uniform(LayerPlan(), 29))
    with pytest.raises(TypeError, match="Plan"):
        predict(spec, "h100-sxm", SCEN, [LayerPlan()] * 30)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LayerPlan\.attn"):
        LayerPlan(attn="int3_nonsense")
    with pytest.raises(ValueError, match=r"ExtraGemm\.k"):
        ExtraGemm(name="a", k=0, n="out", weight_format="bf16")
    with pytest.raises(ValueError, match="contiguously"):
        Plan(((0, 3, LayerPlan()), (4, 30, LayerPlan())))


def test_formats_may_be_given_as_values() -> None:
    from quarch.formats import Format

    by_value = LayerPlan(attn=Format.parse("mxfp4"), kv=Format.parse("fp8_e4m3"))  # type: ignore[arg-type]
    assert by_value == LayerPlan(attn="mxfp4", kv="fp8_e4m3")
    gemm = ExtraGemm(name="a", k="in", n=4, weight_format=Format.parse("bf16"))  # type: ignore[arg-type]
    assert gemm.weight_format == "bf16"
