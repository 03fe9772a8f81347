"""A study's engine constrains its designs: fused groups share one scheme, kernels must exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quarch.perf import engine_from_dict, find_kernel, kernel_class, load_engine
from quarch.quant import QuantConfig, Role, Rule
from quarch.search import SearchSettings, design_config, run_search
from quarch.search._engine_rules import (
    check_fused_slots,
    fused_conflicts,
    fused_members,
    kernel_exclusion,
)
from quarch.search._layout import ATTN, MLP, LinearInfo, ModelLayout
from quarch.search._runner import COMPLETE

from .synthetic import synthetic


@pytest.mark.parametrize(
    ("fmt", "cls"),
    [
        (None, "float"),
        ("bf16", "float"),
        ("int4_g128", "int4"),
        ("int4_g128_asym", "int4"),
        ("int8", "int8"),
        ("fp8_e4m3", "fp8"),
        ("fp8_e4m3_c", "fp8"),
        ("mxfp8_e4m3", "mxfp8"),
        ("nvfp4", "nvfp4"),
        ("mxfp4", "mxfp4"),
        ("q4_k", "q4_k"),
        ("nf4", "nf4"),
    ],
)
def test_kernel_class(fmt: str | None, cls: str) -> None:
    assert kernel_class(fmt) == cls


def test_vllm_table_follows_its_supported_hardware_page() -> None:
    k = load_engine("vllm").kernels
    assert find_kernel(k, "int4_g128", None, "ampere") is not None  # Marlin W4A16, SM 8.0+
    assert find_kernel(k, "fp8_e4m3", "fp8_e4m3_c", "hopper") is not None
    assert find_kernel(k, "fp8_e4m3", "fp8_e4m3_c", "ampere") is None  # FP8 W8A8 needs SM 8.9
    assert find_kernel(k, "fp8_e4m3", None, "ampere") is not None  # ... W8A16 via FP8 Marlin
    assert find_kernel(k, "nvfp4", "nvfp4", "blackwell") is not None
    assert find_kernel(k, "nvfp4", "nvfp4", "hopper") is None
    assert find_kernel(k, "int8", "fp8_e4m3_c", "hopper") is None
    assert find_kernel(k, "nf4", None, "hopper") is None


def test_every_kernel_row_and_fused_group_has_a_source() -> None:
    for name in ("vllm", "sglang", "tensorrt-llm"):
        e = load_engine(name)
        assert e.fused_groups and e.kernels
        assert all(g.source.strip() for g in e.fused_groups)
        assert all(r.source.strip() and r.archs for r in e.kernels)
    assert not load_engine("ideal").kernels and not load_engine("ideal").fused_groups


def _profile(**extra: Any) -> dict[str, Any]:
    base = {"name": "x"}
    for key in (
        "step_overhead_s",
        "eager_launch_s",
        "cuda_graph_max_batch",
        "attention_fraction",
        "attention_bandwidth_fraction",
    ):
        base[key] = {"value": {"cuda_graph_max_batch": None}.get(key, 0.0), "source": "s"}
    base["attention_fraction"]["value"] = None
    base["attention_bandwidth_fraction"]["value"] = 1.0
    for key in ("prefill_cuda_graphs", "decode_cuda_graphs"):
        base[key] = {"value": True, "source": "s"}
    for key in ("high_precision_head", "act_quant_kernel", "residual_comm_16bit"):
        base[key] = {"value": False, "source": "s"}
    base.update(extra)
    return base


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fused_groups", [{"name": "qkv", "members": ["q_proj"], "source": "s"}], "two or more"),
        ("fused_groups", [{"name": "qkv", "members": ["q_proj", "k_proj"]}], "exactly"),
        ("kernels", [{"weight": "int4", "act": "float", "archs": [], "kernel": "k"}], "exactly"),
        (
            "kernels",
            [{"weight": "int4", "act": "float", "archs": [], "kernel": "k", "source": "s"}],
            "non-empty list",
        ),
        ("kernels", {"weight": "int4"}, "must be a list"),
    ],
)
def test_bad_deployment_rows_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine_from_dict(_profile(**{field: value}), "x.yaml")


def test_a_space_that_splits_a_fused_group_is_refused() -> None:
    _spec, ev = synthetic({"engine": "vllm"})
    space = ev.space
    linears = list(space.layout.linears)
    # move layer 0's k_proj into the MLP part: q/k/v would then take two slots
    moved = tuple(
        LinearInfo(
            name=li.name, part=MLP if li.name.endswith("k_proj") else li.part, shape=li.shape
        )
        for li in linears[0]
    )
    layout = ModelLayout(
        prefix=space.layout.prefix,
        num_layers=space.layout.num_layers,
        part_modules=space.layout.part_modules,
        linears=(moved, *linears[1:]),
    )
    from dataclasses import replace

    with pytest.raises(ValueError, match="qkv_proj"):
        check_fused_slots(replace(space, layout=layout))


def test_fused_conflicts_are_found_in_a_config() -> None:
    _spec, ev = synthetic({"engine": "vllm"})
    layout, engine = ev.space.layout, load_engine("vllm")
    groups = fused_members(layout, engine)
    assert len(groups) == 2 * layout.num_layers  # qkv_proj and gate_up_proj per layer
    uniform = QuantConfig.uniform(weights="int4_g128")
    assert fused_conflicts(uniform, layout, engine) == []
    mixed = QuantConfig(
        rules=(
            Rule(pattern="re:layers\\.3\\.self_attn\\.v_proj$", role=Role.WEIGHT, format="int8"),
            Rule(pattern="re:.*", role=Role.WEIGHT, format="int4_g128"),  # first match wins
        )
    )
    found = fused_conflicts(mixed, layout, engine)
    assert len(found) == 1 and "layers.3.self_attn.qkv_proj" in found[0] and "int8" in found[0]


def _design(space: Any, device: str, weight: str, act: str) -> Any:
    values: dict[str, Any] = {"hw.device": device}
    for g in space.groups:
        values[f"w.{g.name}.{ATTN}"] = values[f"w.{g.name}.{MLP}"] = weight
        values[f"a.{g.name}"], values[f"kv.{g.name}"] = act, "float"
    return space.design({k: v for k, v in values.items() if k in {p.name for p in space.params}})


def test_kernel_exclusion_names_the_pair_and_the_alternatives() -> None:
    _spec, ev = synthetic({"engine": "vllm", "hardware": {"devices": ["h100-sxm", "a100-sxm"]}})
    space = ev.space
    assert kernel_exclusion(space, _design(space, "h100-sxm", "int4_g128", "float")) is None
    why = kernel_exclusion(space, _design(space, "h100-sxm", "int8", "fp8_e4m3_c"))
    assert why is not None and "int8 weights x fp8 activations on hopper" in why
    assert "float or int8 activations" in why
    why = kernel_exclusion(space, _design(space, "a100-sxm", "float", "fp8_e4m3_c"))
    assert why is not None and "on ampere" in why
    ev_ok = ev.evaluate(_design(space, "h100-sxm", "mxfp4", "float"))
    ev_bad = ev.evaluate(_design(space, "a100-sxm", "int8", "fp8_e4m3_c"))
    assert ev_ok.excluded is None and ev_bad.excluded is not None
    assert ev_ok.constraints[-1] < 0 < ev_bad.constraints[-1]
    assert ev.constraint_names()[-1] == "kernel@vllm"


def test_no_engine_adds_no_constraint() -> None:
    _spec, ev = synthetic()
    assert "kernel@" not in " ".join(ev.constraint_names())


def test_search_with_an_engine_never_splits_a_fused_group(tmp_path: Path) -> None:
    """Every trial of a search under vLLM: no fused group with two schemes, and every design
    without a kernel is infeasible."""
    spec, ev = synthetic(
        {
            "engine": "vllm",
            "space": {
                "groups": 3,
                "weight": ["float", "int8", "int4_g128", "mxfp4", "nvfp4"],
                "act": ["float", "fp8_e4m3_c", "int8"],
                "kv": ["float", "fp8_e4m3"],
            },
        }
    )
    settings = SearchSettings(**{**spec.search.__dict__, "trials": 30})
    study = run_search(
        name="e",
        url=f"sqlite:///{tmp_path / 'e.db'}",
        settings=settings,
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
    )
    trials = study.get_trials(deepcopy=False, states=COMPLETE)
    assert len(trials) >= 30
    engine = load_engine("vllm")
    excluded = 0
    for t in trials:
        design = ev.space.design(dict(t.params))
        assert fused_conflicts(design_config(ev.space, design), ev.space.layout, engine) == []
        why = kernel_exclusion(ev.space, design)
        excluded += why is not None
        assert (t.system_attrs["constraints"][-1] > 0) == (why is not None)
    assert excluded > 0
