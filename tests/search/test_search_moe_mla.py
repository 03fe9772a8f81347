"""`explore` on the tiny mixture-of-experts and MLA models: the example studies, cut to a few
trials, run end to end and write a front and a report; their experts are quantized linears."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from quarch.models import LinearExperts, spec_from_hf_config, tiny_model, unfuse_experts
from quarch.report import write_report
from quarch.search import (
    PerfModel,
    build_space,
    explore,
    layout_from_spec,
    load_study,
    model_layout,
)

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("name", ["moe", "mla"])
def test_example_explores_end_to_end(name: str, tmp_path: Path) -> None:
    spec = load_study(EXAMPLES / f"explore-tiny-{name}.yaml")
    spec = dataclasses.replace(
        spec,
        search=dataclasses.replace(spec.search, trials=8, population=4),
        accuracy=dataclasses.replace(
            spec.accuracy, eval_windows=2, sensitivity_windows=1, max_final_points=2
        ),
    )
    write_report(explore(spec, tmp_path, progress=False))
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "front.csv").read_text().count("\n") >= 2  # a header and a point
    assert json.loads((tmp_path / "points.json").read_text())


@pytest.mark.parametrize("name", ["moe", "mla"])
def test_quantized_experts_shrink_the_predicted_weights(name: str) -> None:
    study = load_study(EXAMPLES / f"explore-tiny-{name}.yaml")
    loaded = tiny_model(f"tiny-{name}")
    spec = spec_from_hf_config(loaded.model.config.to_dict(), name=name)
    space = build_space(study, model_layout(loaded.model))
    perf = PerfModel(space, spec, study.scenarios)
    designs = dict(space.baselines())
    fp = perf.evaluate(designs["float"])["serve"]
    w8 = perf.evaluate(designs["W int8"])["serve"]
    # int8 weights in every linear layer, experts included; embeddings, LM head and the
    # routers (not linear layers in transformers >= 5) stay bf16
    moe = spec.moe
    assert moe is not None
    routers = sum(moe.is_moe_layer(i) for i in range(spec.num_layers)) * moe.num_experts * 64 * 2
    embeddings = 2 * spec.vocab_size * spec.hidden_size * 2
    norms = fp.weight_bytes - (embeddings + routers + space.layout.numel(tuple(range(2))) * 2)
    assert w8.weight_bytes == pytest.approx(
        embeddings + routers + norms + space.layout.numel((0, 1)) * 1, rel=1e-12
    )


@pytest.mark.parametrize("name", ["tiny-moe", "tiny-mla"])
def test_tiny_models_lay_out_like_their_spec(name: str) -> None:
    loaded = tiny_model(name)
    spec = spec_from_hf_config(loaded.model.config.to_dict(), name=name)
    assert spec.moe is not None and (spec.mla is not None) == (name == "tiny-mla")
    found, expect = model_layout(loaded.model), layout_from_spec(spec)
    assert found.prefix == expect.prefix and found.part_modules == expect.part_modules
    for a, b in zip(found.linears, expect.linears, strict=True):
        assert sorted((li.name, li.part, li.shape) for li in a) == sorted(
            (li.name, li.part, li.shape) for li in b
        )


def test_unfused_experts_compute_the_same() -> None:
    from transformers import AutoModelForCausalLM

    from quarch.models._tiny import _config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config("tiny-moe", 258, 256, 257)).eval()
    x = torch.randint(0, 258, (2, 12))
    with torch.no_grad():
        fused = model(x).logits
        with pytest.raises(ValueError, match="unfuse_experts"):
            model_layout(model)
        assert unfuse_experts(model) == 2
        assert isinstance(model.model.layers[0].mlp.experts, LinearExperts)
        assert torch.equal(model(x).logits, fused)
