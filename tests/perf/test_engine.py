"""Serving-engine profiles: loading, validation, and what each engine effect adds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from quarch.hardware import load_hardware
from quarch.perf import (
    IDEAL,
    Engine,
    Scenario,
    engine_from_dict,
    list_engines,
    load_engine,
    predict,
)
from quarch.perf._cli import register
from quarch.perf._engine import ENGINE_DIR

SC = Scenario(batch=8, prompt_len=512, output_len=64, weight_format="fp8_e4m3")
FP8 = replace(SC, act_format="fp8_e4m3")


def _raw(name: str) -> dict[str, Any]:
    with (ENGINE_DIR / f"{name}.yaml").open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def test_shipped_profiles_load_with_sources() -> None:
    assert {"ideal", "vllm", "tensorrt-llm", "sglang"} <= set(list_engines())
    for name in list_engines():
        engine = load_engine(name)
        assert engine.name == name
        assert engine.sources, name
    assert load_engine("ideal") is IDEAL and IDEAL.is_ideal
    assert not load_engine("vllm").is_ideal


def test_profile_from_a_yaml_path(tmp_path: Path) -> None:
    data = _raw("vllm") | {"name": "custom"}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_engine(str(path)).name == "custom"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"turbo": {"value": 1, "source": "x"}}, "unknown engine fields"),
        ({"step_overhead_s": {"value": 1e-3}}, "step_overhead_s has no source"),
        ({"step_overhead_s": 1e-3}, "step_overhead_s must be {value"),
        ({"step_overhead_s": {"value": -1.0, "source": "x"}}, "step_overhead_s must be a number"),
        ({"attention_bandwidth_fraction": {"value": 1.5, "source": "x"}}, "in (0, 1]"),
        ({"attention_fraction": {"value": 0.0, "source": "x"}}, "attention_fraction"),
        ({"cuda_graph_max_batch": {"value": 0, "source": "x"}}, "cuda_graph_max_batch"),
        ({"attention_kernel": "magic"}, "attention_kernel must be one of"),
        ({"decode_cuda_graphs": {"value": "yes", "source": "x"}}, "must be a bool"),
    ],
)
def test_bad_profiles_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        engine_from_dict(_raw("vllm") | change, "test.yaml")


def test_missing_fields_and_names() -> None:
    data = _raw("vllm")
    del data["act_quant_kernel"]
    with pytest.raises(ValueError, match=r"lacks.*act_quant_kernel"):
        engine_from_dict(data)
    with pytest.raises(ValueError, match="has no 'name'"):
        engine_from_dict({"step_overhead_s": {"value": 0.0, "source": "x"}})
    with pytest.raises(ValueError, match="must be a mapping"):
        engine_from_dict([1, 2])
    with pytest.raises(ValueError, match=r"unknown engine 'nope'.*vllm"):
        load_engine("nope")
    with pytest.raises(TypeError, match="profile name"):
        load_engine(3)  # type: ignore[arg-type]


def test_default_engine_is_ideal_and_changes_nothing() -> None:
    base = predict("llama-3.1-8b", "h100-sxm", FP8)
    ideal = predict("llama-3.1-8b", "h100-sxm", FP8, engine="ideal")
    assert base.engine == ideal.engine == "ideal"
    assert (base.ttft_s, base.tpot_s, base.energy_j) == (ideal.ttft_s, ideal.tpot_s, ideal.energy_j)
    assert base.prefill_overhead_s is None and base.step_overhead_s == 0.0


def test_step_overhead_adds_exactly_its_cost() -> None:
    base = predict("llama-3.1-8b", "h100-sxm", SC)
    eng = Engine(name="slow-host", step_overhead_s=1.25e-3)
    p = predict("llama-3.1-8b", "h100-sxm", SC, engine=eng)
    assert p.tpot_s - base.tpot_s == pytest.approx(1.25e-3, rel=1e-9)
    assert p.ttft_s - base.ttft_s == pytest.approx(1.25e-3, rel=1e-9)
    steps = SC.output_len - 1
    assert p.e2e_latency_s - base.e2e_latency_s == pytest.approx(1.25e-3 * (1 + steps), rel=1e-9)


def test_eager_decode_pays_the_eager_launch_per_kernel() -> None:
    base = predict("llama-3.1-8b", "h100-sxm", SC)
    eng = Engine(name="eager", decode_cuda_graphs=False, eager_launch_s=7e-6)
    p = predict("llama-3.1-8b", "h100-sxm", SC, engine=eng)
    kernels = sum(t.op.count for t in base.decode)
    assert p.tpot_s - base.tpot_s == pytest.approx(kernels * (7e-6 - base.overhead_s), rel=1e-9)
    assert p.ttft_s == base.ttft_s  # prefill still captured
    # above the captured batch sizes decode runs eagerly too
    capped = Engine(name="capped", cuda_graph_max_batch=4, eager_launch_s=7e-6)
    assert capped.decode_graphed(4) and not capped.decode_graphed(5)
    assert predict("llama-3.1-8b", "h100-sxm", SC, engine=capped).tpot_s == pytest.approx(p.tpot_s)


def test_attention_bandwidth_slows_only_attention() -> None:
    sc = replace(SC, prompt_len=4096, batch=32)
    base = predict("llama-3.1-8b", "h100-sxm", sc)
    p = predict(
        "llama-3.1-8b",
        "h100-sxm",
        sc,
        engine=Engine(name="paged", attention_bandwidth_fraction=0.5),
    )
    assert p.tpot_s > base.tpot_s
    for a, b in zip(base.decode, p.decode, strict=True):
        if a.op.kind.value != "attention":
            assert a.time_s == b.time_s
        else:
            assert b.memory_s > a.memory_s


def test_high_precision_head_keeps_lm_head_and_embedding_16_bit() -> None:
    eng = Engine(name="hp", high_precision_head=True)
    base = predict("llama-3.1-8b", "h100-sxm", SC)
    p = predict("llama-3.1-8b", "h100-sxm", SC, engine=eng)
    assert p.scenario.weight_format_for("head", "lm_head") == "bf16"
    assert p.scenario.weight_format_for("embed", "embedding") == "bf16"
    assert p.memory.weight_bytes > base.memory.weight_bytes
    # an explicit override wins, and 16-bit weights are left alone
    pinned = replace(SC, weight_overrides={"lm_head": "fp8_e4m3"})
    kept = predict("llama-3.1-8b", "h100-sxm", pinned, engine=eng)
    assert kept.scenario.weight_format_for("head", "lm_head") == "fp8_e4m3"
    wide = replace(SC, weight_format="bf16")
    assert predict("llama-3.1-8b", "h100-sxm", wide, engine=eng).scenario == wide


def test_activation_quantization_kernels_only_for_narrow_activations() -> None:
    eng = Engine(name="q", act_quant_kernel=True)
    base = predict("llama-3.1-8b", "h100-sxm", FP8)
    p = predict("llama-3.1-8b", "h100-sxm", FP8, engine=eng)
    prefill_q, decode_q = p.act_quant_s
    assert decode_q > 0 and prefill_q > decode_q
    assert p.tpot_s == pytest.approx(base.tpot_s + decode_q, rel=1e-12)
    assert p.ttft_s == pytest.approx(base.ttft_s + prefill_q, rel=1e-12)
    # 4 quantized GEMMs per layer in decode: at least one kernel overhead each
    assert decode_q >= 4 * 32 * base.overhead_s
    bf16_acts = predict("llama-3.1-8b", "h100-sxm", SC, engine=eng)
    assert bf16_acts.act_quant_s == (0.0, 0.0)


def test_engines_order_on_small_batch_decode() -> None:
    tpot = {e: predict("llama-3.1-8b", "h100-sxm", FP8, engine=e).tpot_s for e in list_engines()}
    assert tpot["ideal"] <= tpot["tensorrt-llm"] < tpot["vllm"]
    assert tpot["sglang"] < tpot["vllm"]


def test_cli_engine_option() -> None:
    app = typer.Typer()
    register(app)
    args = ["predict", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--batch", "8"]
    ok = CliRunner().invoke(app, [*args, "--engine", "vllm", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["engine"] == "vllm" and data["step_overhead_s"] > 0
    bad = CliRunner().invoke(app, [*args, "--engine", "warp-drive"])
    assert bad.exit_code == 2
    assert "unknown engine 'warp-drive'" in bad.output


def test_published_rows_map_to_engine_profiles() -> None:
    from quarch.measure._published import load_published
    from quarch.measure._published_check import engine_for

    rows = {r.engine: r for r in load_published()}
    assert engine_for(rows["nim"]).name == "tensorrt-llm"
    assert engine_for(rows["vllm"]).name == "vllm"
    assert engine_for(rows["deepgemm"]).name == "ideal"


def test_residual_communication_is_16_bit() -> None:
    eng = Engine(name="res", residual_comm_16bit=True)
    sc = replace(FP8, tp=4)
    base = predict("llama-3.1-70b", "h100-sxm", sc)
    p = predict("llama-3.1-70b", "h100-sxm", sc, engine=eng)
    hw = load_hardware("h100-sxm")
    assert hw.interconnect is not None
    lat = 2 * (4 - 1) * hw.interconnect.latency_s
    for a, b in zip(base.decode, p.decode, strict=True):
        if a.op.comm.value == "allreduce":
            # the payload term doubles (fp8 -> 16-bit), the latency term stays
            assert b.comm_s - lat == pytest.approx(2 * (a.comm_s - lat), rel=1e-9)
        else:
            assert b.comm_s == a.comm_s
    wide = replace(sc, act_format="bf16")
    assert predict("llama-3.1-70b", "h100-sxm", wide, engine=eng).tpot_s == pytest.approx(
        predict("llama-3.1-70b", "h100-sxm", wide).tpot_s, rel=1e-12
    )


def test_cli_summary_names_the_engine_costs() -> None:
    app = typer.Typer()
    register(app)
    args = ["predict", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--weights", "fp8_e4m3"]
    out = CliRunner().invoke(app, [*args, "--acts", "fp8_e4m3", "--engine", "vllm"]).output
    assert "engine vllm: 1.5 ms host time per step" in out
    ideal = CliRunner().invoke(app, args).output
    assert "host time per step" not in ideal


def test_breakdown_plus_engine_terms_add_up_to_ttft_and_tpot() -> None:
    p = predict("llama-3.1-8b", "h100-sxm", replace(FP8, batch=200), engine="sglang")
    assert p.prefill_overhead_s == pytest.approx(5e-6)  # eager prefill
    assert p.overhead_s == pytest.approx(5e-6)  # 200 sequences: above the captured batches
    prefill_q, decode_q = p.act_quant_s
    assert sum(t.total_s for t in p.prefill) + prefill_q + p.step_overhead_s == pytest.approx(
        p.ttft_s, rel=1e-12
    )
    assert sum(t.total_s for t in p.decode) + decode_q + p.step_overhead_s == pytest.approx(
        p.tpot_s, rel=1e-9
    )
