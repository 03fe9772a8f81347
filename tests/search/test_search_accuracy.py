"""The accuracy side: the cached RTN path equals apply_config, the proxy table, calibration."""

from __future__ import annotations

import math

import pytest
import torch

from quarch.formats import Format, quantize
from quarch.models import tiny_llama
from quarch.quant import (
    LayerCalib,
    QuantConfig,
    Role,
    Rule,
    WeightCache,
    apply_config,
    config_cost,
    quantized,
)
from quarch.search import (
    AccuracyLab,
    Design,
    build_space,
    build_table,
    design_config,
    study_from_dict,
)
from quarch.search._proxy import needed_entries, sensitivity_eval, slot_kind, slot_roles

from .conftest import TINY_STUDY


@pytest.fixture(scope="module")
def lab_space():
    spec = study_from_dict(TINY_STUDY)
    m = tiny_llama(seed=0)
    lab = AccuracyLab(m.model, m.tokenizer, spec.accuracy)
    return lab, build_space(spec, lab.layout)


def _design(space, w: str, a: str, kv: str) -> Design:
    values = {"hw.device": "h100-sxm"}
    for i, g in enumerate(space.groups):
        values[f"w.{g.name}.attn"] = w
        values[f"w.{g.name}.mlp"] = "int8" if i else w
        values[f"a.{g.name}"], values[f"kv.{g.name}"] = a, kv
    return Design.of(values)


def test_cached_rtn_path_equals_apply_config(lab_space) -> None:
    lab, space = lab_space
    design = _design(space, "mxfp4", "fp8_e4m3_c", "fp8_e4m3")
    w = lab.eval_windows[:1]
    with lab.applied(space, design), torch.inference_mode():
        fast = lab.model(input_ids=w, use_cache=False).logits
    fresh = tiny_llama(seed=0)
    apply_config(fresh.model, design_config(space, design), progress=False)
    with torch.inference_mode():
        ref = fresh.model(input_ids=w, use_cache=False).logits
    assert torch.equal(fast, ref)
    with torch.inference_mode():  # and the lab's model is float again afterwards
        back = lab.model(input_ids=w, use_cache=False).logits
        orig = tiny_llama(seed=0).model(input_ids=w, use_cache=False).logits
    assert torch.equal(back, orig)


def test_weight_cache_keeps_exact_bf16_and_evicts() -> None:
    w = torch.randn(64, 128)
    mxfp4, int4 = Format.parse("mxfp4"), Format.parse("int4_g128")
    cache = WeightCache(budget_bytes=64 * 128 * 4 + 64 * 128 * 2)
    mx = cache.get("a", mxfp4, w)
    assert torch.equal(mx, quantize(mxfp4, w))
    assert cache.bytes == 64 * 128 * 2  # MX values are exact in bfloat16
    i4 = cache.get("b", int4, w)
    assert torch.equal(i4, quantize(int4, w))
    assert cache.bytes == 64 * 128 * 6  # fp32 scales: kept at fp32
    cache.get("c", int4, w + 1)  # over budget: the least recently used goes
    assert ("a", mxfp4) not in cache and cache.misses == 3
    assert torch.equal(cache.get("c", int4, w + 1), quantize(int4, w + 1))
    assert cache.hits == 1


def test_float_stats_match_from_inputs(lab_space) -> None:
    lab, _ = lab_space
    name = lab.layout.linears[0][0].name
    windows = lab.calib_windows
    stats = lab.float_stats()[name]
    seen = []
    hook = lab.model.get_submodule(name).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].reshape(-1, args[0].shape[-1]))
    )
    with torch.inference_mode():
        for i in range(windows.shape[0]):
            lab.model(input_ids=windows[i : i + 1], use_cache=False)
    hook.remove()
    ref = LayerCalib.from_inputs(torch.cat(seen))
    assert torch.allclose(stats.hessian, ref.hessian, rtol=1e-5, atol=1e-6)
    assert torch.allclose(stats.act_absmean, ref.act_absmean, rtol=1e-5)
    assert torch.equal(stats.act_absmax, ref.act_absmax)
    assert stats.num_tokens == ref.num_tokens and stats.samples.shape[1] == ref.samples.shape[1]


def test_sensitivity_prefix_path_is_exact(lab_space) -> None:
    lab, space = lab_space
    ev = sensitivity_eval(lab)
    assert ev.prefix_exact
    nll_full = lab.mean_nll(lab.sens_windows)
    assert ev.base_nll == pytest.approx(nll_full, rel=1e-6)
    # quantizing group 2's weights: running from its first block equals running everything
    g = space.groups[1]
    rule = Rule(pattern=f"re:^model\\.layers\\.{g.layers[0]}\\.", role=Role.WEIGHT, format="mxfp4")
    config = QuantConfig(rules=(rule,))
    with quantized(lab.model, config):
        nll_from, kl_from = ev.evaluate(start=g.layers[0])
        nll_all, kl_all = ev.evaluate(start=0)
    assert nll_from == pytest.approx(nll_all, rel=1e-6) and kl_from > 0
    assert kl_from == pytest.approx(kl_all, rel=1e-5)
    # config_cost finds that start itself, and the cached RTN weights change nothing
    assert config_cost(ev, config, weight_cache=lab.cache) == (nll_from, kl_from)


def test_table_entries_and_cache(lab_space, tmp_path) -> None:
    lab, space = lab_space
    path = tmp_path / "t.json"
    table = build_table(lab, space, path, model_id="tiny")
    assert len(table.entries) == len(needed_entries(space)) == 2 * (2 * 2 + 1 + 1)
    assert all(e.kl >= 0 for e in table.entries.values())
    again = build_table(lab, space, path, model_id="tiny")
    assert again.entries == table.entries  # read back, nothing measured
    other = build_table(lab, space, path, model_id="another model")
    assert other.entries != table.entries or other.meta != table.meta


def test_fit_alpha_least_squares(lab_space) -> None:
    lab, space = lab_space
    table = build_table(lab, space, None, model_id="tiny")
    table.eval_float_nll = 5.0
    designs = [d for name, d in space.baselines() if name.startswith("W ")]
    preds = [table.deltas(d)["weight"] for d in designs]
    measured = [(d, 5.0 + 2.0 * p) for d, p in zip(designs, preds, strict=True)]
    alpha = table.fit_alpha(measured)
    assert alpha["weight"] == pytest.approx(2.0) and alpha["act"] == 1.0
    assert table.proxy_nll(designs[0]) == pytest.approx(5.0 + 2.0 * preds[0])
    assert math.exp(table.proxy_nll(space.baselines()[0][1])) == pytest.approx(math.exp(5.0))


@pytest.mark.slow
def test_calibrated_method_designs(tmp_path) -> None:
    """A space with GPTQ: the sensitivity uses float statistics, the final measure the
    block-sequential calibration of apply_config, and the config says gptq."""
    from quarch.search import explore, model_layout

    data = {
        **TINY_STUDY,
        "space": {
            "groups": 1,
            "weight": ["float", "int4_g128"],
            "methods": ["gptq"],
            "act": ["float"],
            "kv": ["float"],
        },
        "search": {"trials": 4, "population": 2},
        "accuracy": {**TINY_STUDY["accuracy"], "calib_windows": 4, "calib_seqlen": 64},
    }
    result = explore(study_from_dict(data), tmp_path, progress=False)
    gptq = next(p for p in result.baselines if p.name == "W int4_g128+gptq")
    assert gptq.measured is not None and math.isfinite(gptq.measured["ppl"])
    space = build_space(result.spec, model_layout(tiny_llama(seed=0).model))
    config = design_config(space, Design.of(gptq.design))
    assert {r.method for r in config.rules} == {"gptq"}


def test_slots_name_their_tensors_by_role() -> None:
    assert slot_roles("w.l0-4.attn") == (Role.WEIGHT,) and slot_kind("w.l0-4") == "weight"
    assert slot_roles("a.l0-4") == (Role.INPUT,) and slot_kind("a.l0-4") == "act"
    assert slot_roles("kv.l0-4") == (Role.K_CACHE, Role.V_CACHE) and slot_kind("kv.l5") == "kv"
    with pytest.raises(ValueError, match=r"hw\.device"):
        slot_kind("hw.device")
