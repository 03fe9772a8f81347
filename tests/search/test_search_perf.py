"""A design's performance is `quarch.perf.predict` of its `Plan`: uniform designs equal the
uniform scenario, mixed ones the layer-weighted mix, on dense, MoE and MLA models."""

from __future__ import annotations

import math

import pytest

from quarch.models import load_model_spec
from quarch.perf import LayerPlan, Plan, Scenario, predict
from quarch.search import Design, PerfModel, build_space, layout_from_spec, study_from_dict


@pytest.fixture(scope="module")
def setup():
    spec = load_model_spec("smollm2-135m")
    study = study_from_dict(
        {
            "space": {
                "groups": 3,
                "weight": ["float", "int8", "mxfp4"],
                "methods": ["rtn", {"name": "lqer", "rank": 16}],
            },
            "scenarios": [{"name": "s", "batch": 4, "prompt_len": 256, "output_len": 64}],
        }
    )
    space = build_space(study, layout_from_spec(spec))
    return spec, space, PerfModel(space, spec, study.scenarios)


def _uniform(space, w_attn: str, w_mlp: str, act: str = "float", kv: str = "float") -> Design:
    values = {"hw.device": "h100-sxm"}
    for g in space.groups:
        values[f"w.{g.name}.attn"], values[f"w.{g.name}.mlp"] = w_attn, w_mlp
        values[f"a.{g.name}"], values[f"kv.{g.name}"] = act, kv
    return Design.of(values)


def _predict(spec, wa: str, wm: str, act: str, kv: str):
    return predict(
        spec,
        "h100-sxm",
        Scenario(
            batch=4,
            prompt_len=256,
            output_len=64,
            weight_format="bf16",
            weight_overrides={"attn": wa, "mlp": wm},
            act_format=act,
            kv_format=kv,
        ),
    )


@pytest.mark.parametrize(
    ("wa", "wm", "kv"),
    [("float", "float", "float"), ("int8", "mxfp4", "fp8_e4m3"), ("mxfp4", "mxfp4", "fp8_e4m3")],
)
def test_uniform_and_role_split_designs_equal_predict(setup, wa, wm, kv) -> None:
    spec, space, perf = setup
    m = perf.evaluate(_uniform(space, wa, wm, "float", kv))["s"]
    f = space.perf_format
    p = _predict(spec, f(wa), f(wm), "bf16", f(kv))
    assert m.ttft_s == pytest.approx(p.ttft_s, rel=1e-12)
    assert m.tpot_s == pytest.approx(p.tpot_s, rel=1e-12)
    assert m.memory_bytes == pytest.approx(p.memory.total_bytes, rel=1e-12)
    assert m.energy_per_token_j == pytest.approx(p.energy_per_token_j, rel=1e-12)
    assert m.fits == p.fits


def test_quantized_activations_stop_at_the_blocks(setup) -> None:
    # the LM head's input is never quantized by a design (its rules name block linears only),
    # so the non-block ops are priced at the serving dtype: layer ops from the fp8-activation
    # prediction, embedding / final norm / LM head from the all-bf16 one
    spec, space, perf = setup
    m = perf.evaluate(_uniform(space, "int8", "int8", "fp8_e4m3_c", "float"))["s"]
    act = _predict(spec, "int8", "int8", "fp8_e4m3_c", "bf16")
    ref = _predict(spec, "bf16", "bf16", "bf16", "bf16")

    def part(pred, phase: str, layers: bool) -> float:
        ops = getattr(pred, phase)
        return sum(t.total_s for t in ops if (t.op.group == "dense") == layers)

    for phase, got in (("prefill", m.ttft_s), ("decode", m.tpot_s)):
        expect = part(act, phase, True) + part(ref, phase, False)
        assert got == pytest.approx(expect, rel=1e-12)


def test_mixed_design_is_the_layer_weighted_mix(setup) -> None:
    _, space, perf = setup
    lo = perf.evaluate(_uniform(space, "mxfp4", "mxfp4"))["s"]
    hi = perf.evaluate(_uniform(space, "int8", "int8"))["s"]
    values = dict(_uniform(space, "int8", "int8").values)
    first = space.groups[0]
    values[f"w.{first.name}.attn"] = values[f"w.{first.name}.mlp"] = "mxfp4"
    mixed = perf.evaluate(Design.of(values))["s"]
    share = len(first.layers) / space.layout.num_layers  # 10 of 30 layers
    # the layer ops mix linearly; the embedding and LM head are the same in all three
    assert mixed.tpot_s == pytest.approx(share * lo.tpot_s + (1 - share) * hi.tpot_s, rel=1e-12)
    assert mixed.weight_bytes == pytest.approx(
        share * lo.weight_bytes + (1 - share) * hi.weight_bytes, rel=1e-12
    )


def test_lqer_factors_cost_time_and_bytes(setup) -> None:
    _, space, perf = setup
    plain = perf.evaluate(_uniform(space, "mxfp4", "mxfp4"))["s"]
    lqer = perf.evaluate(_uniform(space, "mxfp4+lqer(rank=16)", "mxfp4+lqer(rank=16)"))["s"]
    # SmolLM2: h=576, q=576, kv=192, ffn=1536; rank-16 factors in bf16 per layer
    per_layer = 16 * ((576 + 576) * 2 + (576 + 192) * 2 + 3 * (576 + 1536)) * 2
    assert lqer.weight_bytes - plain.weight_bytes == pytest.approx(30 * per_layer)
    assert lqer.tpot_s > plain.tpot_s and lqer.ttft_s > plain.ttft_s


def test_template_memory_levels_agree() -> None:
    spec = load_model_spec("smollm2-135m")
    study = study_from_dict(
        {
            "space": {"groups": 2, "weight": ["float", "mxfp4"]},
            "hardware": {
                "template": {
                    "systolic_rows": 128,
                    "systolic_cols": 128,
                    "num_arrays": 16,
                    "clock_hz": 1e9,
                    "sram_bytes": 150e6,
                    "sram_bytes_per_s": 50e12,
                    "memory_tech": "lpddr5x",
                    "memory_stacks_or_channels": 4,
                }
            },
            "scenarios": [{"name": "s", "batch": 1, "prompt_len": 64, "output_len": 16}],
        }
    )
    space = build_space(study, layout_from_spec(spec))
    perf = PerfModel(space, spec, study.scenarios)
    ref = space.reference_hardware()[0]
    values = dict(ref)
    for g in space.groups:
        values[f"w.{g.name}.attn"] = values[f"w.{g.name}.mlp"] = "mxfp4"
        values[f"a.{g.name}"], values[f"kv.{g.name}"] = "float", "float"
    small = perf.evaluate(Design.of(values))["s"]
    values[f"w.{space.groups[0].name}.attn"] = values[f"w.{space.groups[0].name}.mlp"] = "float"
    mixed = perf.evaluate(Design.of(values))["s"]
    # all 4-bit (~115 MB, bf16 embeddings) fits the 150 MB SRAM; half the layers float do not
    assert small.memory_bytes < 150e6 < mixed.memory_bytes
    assert small.memory_level == "sram" and mixed.memory_level == "lpddr5x"
    assert math.isfinite(mixed.tpot_s) and mixed.tpot_s > small.tpot_s


def _space_for(model: str, scenario: dict, **space: object):
    spec = load_model_spec(model)
    study = study_from_dict({"space": {"groups": 2, **space}, "scenarios": [scenario]})
    built = build_space(study, layout_from_spec(spec))
    return spec, built, PerfModel(built, spec, study.scenarios)


@pytest.mark.parametrize(
    ("model", "kv"), [("mixtral-8x7b", ["float", "fp8_e4m3"]), ("deepseek-v2-lite", ["float"])]
)
def test_moe_and_mla_designs_are_their_plans(model: str, kv: list[str]) -> None:
    scen = {"name": "s", "batch": 8, "prompt_len": 512, "output_len": 64}
    spec, space, perf = _space_for(model, scen, weight=["float", "mxfp4"], kv=kv)
    values = dict(_uniform(space, "mxfp4", "mxfp4", "float", kv[-1]).values)
    values[f"w.{space.groups[1].name}.mlp"] = "float"  # experts of the second half float
    m = perf.evaluate(Design.of(values))["s"]
    half = spec.num_layers // 2 + spec.num_layers % 2
    fp8 = "fp8_e4m3" if kv[-1] != "float" else None
    lo = LayerPlan(attn="mxfp4", mlp="mxfp4", router="bf16", act="bf16", kv=fp8 or "bf16")
    hi = LayerPlan(attn="mxfp4", mlp="bf16", router="bf16", act="bf16", kv=fp8 or "bf16")
    plan = Plan.of([lo] * half + [hi] * (spec.num_layers - half))
    p = predict(spec, "h100-sxm", Scenario(batch=8, prompt_len=512, output_len=64), plan)
    assert (m.ttft_s, m.tpot_s, m.memory_bytes) == (p.ttft_s, p.tpot_s, p.memory.total_bytes)
    assert m.energy_per_token_j == p.energy_per_token_j
    uniform = perf.evaluate(_uniform(space, "mxfp4", "mxfp4", "float", kv[-1]))["s"]
    assert uniform.weight_bytes < m.weight_bytes  # float experts weigh more


def test_mla_refuses_kv_cache_formats() -> None:
    scen = {"name": "s", "batch": 1, "prompt_len": 64, "output_len": 8}
    with pytest.raises(ValueError, match="MLA"):
        _space_for("deepseek-v2-lite", scen, kv=["float", "fp8_e4m3"])


def test_lqer_factors_shard_like_their_layer() -> None:
    # tp = 3 on SmolLM2 (9 heads, 3 KV heads): column-parallel q/k/v/gate/up keep A [in, r]
    # whole and split B [r, out / 3]; row-parallel o/down split A [in / 3, r] and keep B
    scen = {"name": "s", "batch": 3, "prompt_len": 64, "output_len": 8, "tp": 3}
    _, space, perf = _space_for(
        "smollm2-135m", scen, weight=["mxfp4"], methods=["rtn", {"name": "lqer", "rank": 16}]
    )
    plain = perf.evaluate(_uniform(space, "mxfp4", "mxfp4"))["s"]
    lqer = perf.evaluate(_uniform(space, "mxfp4+lqer(rank=16)", "mxfp4+lqer(rank=16)"))["s"]
    col = (576 + 576 / 3) + 2 * (576 + 192 / 3) + 2 * (576 + 1536 / 3)
    row = (576 / 3 + 576) + (1536 / 3 + 576)
    assert lqer.weight_bytes - plain.weight_bytes == pytest.approx(30 * 16 * (col + row) * 2)


def test_pipeline_stages_hold_their_own_layers() -> None:
    scen = {"name": "s", "batch": 4, "prompt_len": 64, "output_len": 8, "pp": 2}
    _, space, perf = _space_for("smollm2-135m", scen, weight=["float", "mxfp4"])
    values = dict(_uniform(space, "float", "float").values)
    values[f"w.{space.groups[0].name}.attn"] = values[f"w.{space.groups[0].name}.mlp"] = "mxfp4"
    mixed = perf.evaluate(Design.of(values))["s"]
    flt = perf.evaluate(_uniform(space, "float", "float"))["s"]
    # the second stage (float layers, final norm, LM head) is the most loaded, as when all float
    assert mixed.weight_bytes == flt.weight_bytes
    assert mixed.tpot_s < flt.tpot_s
