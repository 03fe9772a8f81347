"""Per-layer sensitivity on a tiny LLaMA: values against an independent computation, invariants,
JSON round trip, and the additivity measurement."""

from __future__ import annotations

import math

import pytest
import torch
from test_apply_model import tiny, tokens

from quarch.quant import QuantConfig, quantized
from quarch.quant._sensitivity import (
    SensitivityTable,
    WindowEval,
    layer_groups,
    layer_sensitivity,
    measure_additivity,
)

GROUPS = [
    "model.layers.0.self_attn",
    "model.layers.0.mlp",
    "model.layers.1.self_attn",
    "model.layers.1.mlp",
]


@torch.no_grad()
def hf_nll(model: torch.nn.Module, windows: torch.Tensor) -> float:
    """Mean next-token NLL from transformers' own loss (labels = inputs, shifted inside)."""
    losses = [float(model(input_ids=w[None], labels=w[None]).loss) for w in windows]
    return sum(losses) / len(losses)


def test_groups() -> None:
    model = tiny()
    assert layer_groups(model) == GROUPS
    assert layer_groups(model, "k_cache") == GROUPS[0::2]


def test_table_matches_independent_nll_and_kl_is_sane() -> None:
    model, windows = tiny(), tokens(seed=4, n=2, seqlen=24)
    table = layer_sensitivity(model, windows, format="int3")
    assert [e.group for e in table.entries] == GROUPS
    assert table.base_nll == pytest.approx(hf_nll(model, windows), rel=1e-5)
    assert table.num_tokens == 2 * 23
    e = table.entry("model.layers.1.mlp")
    cfg = QuantConfig.from_dict(
        {"rules": [{"pattern": "model.layers.1.mlp", "role": "weight", "format": "int3"}]}
    )
    with quantized(model, cfg):
        assert e.nll == pytest.approx(hf_nll(model, windows), rel=1e-5)
    assert e.delta_ppl == pytest.approx(math.exp(e.nll) - math.exp(table.base_nll))
    assert e.num_weights == 3 * 64 * 128
    assert all(x.kl > 0 for x in table.entries)


def test_lossless_format_costs_nothing() -> None:
    model, windows = tiny(), tokens(seed=4, n=1, seqlen=16)
    table = layer_sensitivity(model, windows, format="fp32", groups=GROUPS[:2])
    for e in table.entries:  # quantizing fp32 weights to fp32 is the identity
        assert e.delta_nll == 0.0
        assert abs(e.kl) < 1e-6


def test_kv_and_activation_roles() -> None:
    model, windows = tiny(), tokens(seed=4, n=1, seqlen=16)
    ev = WindowEval(model, windows)
    kv = layer_sensitivity(model, ev, format="int2", role="k_cache")
    assert [e.group for e in kv.entries] == GROUPS[0::2]
    assert all(e.kl > 0 and e.num_weights == 0 for e in kv.entries)
    acts = layer_sensitivity(model, ev, format="int4", role="input", groups=GROUPS[:1])
    assert acts.entries[0].kl > 0


def test_json_round_trip() -> None:
    model, windows = tiny(), tokens(seed=4, n=1, seqlen=16)
    table = layer_sensitivity(model, windows, format="int4", groups=GROUPS[:2], model_name="tiny")
    assert SensitivityTable.from_json(table.to_json()) == table


def test_additivity_measures_real_configs() -> None:
    model, windows = tiny(), tokens(seed=4, n=2, seqlen=24)
    ev = WindowEval(model, windows)
    table = layer_sensitivity(model, ev, format="int3")
    add = measure_additivity(model, table, ev, num_subsets=3, seed=0)
    assert [len(p.groups) for p in add.points] == [2, 3, 4]
    full = add.points[-1]
    with quantized(model, QuantConfig.uniform(weights="int3")):
        measured = hf_nll(model, windows) - table.base_nll
        assert full.measured_delta_nll == pytest.approx(measured, abs=1e-6)
    assert full.predicted_delta_nll == pytest.approx(sum(e.delta_nll for e in table.entries))
    assert -1.0 <= add.pearson_delta_nll <= 1.0
    assert add.to_dict()["points"][0]["groups"] == list(add.points[0].groups)


def test_prefix_cache_gives_the_full_models_costs() -> None:
    """Running each group from its own block on the cached float prefix costs what running the
    whole model costs (the cache is used: it is exact on this model)."""
    model, windows = tiny(), tokens(seed=4, n=2, seqlen=24)
    cached = WindowEval(model, windows, batch_size=2)
    assert cached.prefix_exact and len(cached.batches) == 1
    full = WindowEval(model, windows, prefix_cache=False)
    assert not full.prefix_exact
    a = layer_sensitivity(model, cached, format="int3")
    b = layer_sensitivity(model, full, format="int3")
    for x, y in zip(a.entries, b.entries, strict=True):
        assert x.nll == pytest.approx(y.nll, rel=1e-6) and x.kl == pytest.approx(y.kl, rel=1e-4)
    assert cached.first_block(["model.layers.1.mlp.up_proj", "model.layers.1.self_attn"]) == 1
    assert cached.first_block(["model.layers.1.mlp", "lm_head"]) == 0
