"""AWQ and SmoothQuant with fold=True: one scale per group, folded into the norm or linear before
it; the folded float model computes the same logits, the quantized one has no run-time scale."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from quarch.formats import Format
from quarch.quant import QuantConfig, QuantLinear, Role, Rule, apply_config, get_method, quantized
from quarch.quant._calib import collect_calib
from quarch.quant._fold import FoldSpec, fold_block


def tiny(kv_heads: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms of a trained model are not all ones
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return model


def tokens(seed: int = 1, n: int = 4, seqlen: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x).logits


LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _fold_float(model: nn.Module, method: str, fmt: str, **params: object) -> dict[str, nn.Module]:
    """Fold every block of `model` (float weights kept) and return the replaced modules."""
    names = [n for n, m in model.named_modules() if n.split(".")[-1] in LEAVES]
    calib = collect_calib(model, [tokens(seed=7)], names)
    resolved = get_method(method).resolve_params({**params, "fold": True})
    spec = FoldSpec(
        method=method, params=resolved, weight_format=Format.parse(fmt), input_format=None
    )
    saved: dict[str, nn.Module] = {}
    for i in range(2):
        fold_block(
            model,
            f"model.layers.{i}",
            {n: spec for n in names},
            calib,
            lambda name, m: saved.setdefault(name, m),
        )
    return saved


@pytest.mark.parametrize(
    ("method", "fmt", "params", "kv_heads"),
    [
        ("awq", "int4_g16", {"grid": 6}, 4),
        ("awq", "int4_g16", {"grid": 6}, 2),
        ("smoothquant", "int8", {"alpha": 0.5}, 2),
        ("smoothquant", "int8", {"search": True, "grid": 5}, 4),
    ],
)
def test_folded_float_model_gives_the_same_logits(
    method: str, fmt: str, params: dict[str, object], kv_heads: int
) -> None:
    model = tiny(kv_heads)
    x = tokens()
    ref = logits(model, x)
    norm_before = model.model.layers[0].input_layernorm.weight.detach().clone()
    saved = _fold_float(model, method, fmt, **params)
    after = logits(model, x)
    assert torch.allclose(after, ref, rtol=1e-4, atol=1e-4), float((after - ref).abs().max())
    norm_after = model.model.layers[0].input_layernorm.weight
    assert not torch.allclose(norm_after, norm_before)  # a real, non-unit scale was folded
    folded_o = "model.layers.0.self_attn.o_proj" in saved
    # AWQ folds v -> o only without grouped-query attention, SmoothQuant never (smooth_lm)
    assert folded_o == (method == "awq" and kv_heads == 4)
    assert ("model.layers.0.mlp.down_proj" in saved) == (method == "awq")


def _config(method: str, fmt: str, acts: str | None = None, **params: object) -> QuantConfig:
    extra = {"clip": False} if method == "awq" else {}  # clipping is tested with the method
    return QuantConfig.uniform(weights=fmt, acts=acts, method=method, grid=4, **extra, **params)


@pytest.mark.parametrize(
    ("method", "fmt", "acts"), [("awq", "int4_g16", None), ("smoothquant", "int8", "int8")]
)
def test_folded_model_has_no_run_time_scale_and_is_restored(
    method: str, fmt: str, acts: str | None
) -> None:
    model = tiny(2)
    x = tokens()
    ref = logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    calib = [tokens(seed=9)]
    with quantized(model, _config(method, fmt, acts, fold=True), calib_windows=calib):
        layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
        assert len(layers) == 14 and all(m.input_scale is None for m in layers)
        folded = logits(model, x)
    with quantized(model, _config(method, fmt, acts), calib_windows=calib):
        assert all(m.input_scale is not None for m in model.modules() if isinstance(m, QuantLinear))
        per_layer = logits(model, x)
    for k, v in model.state_dict().items():  # the float model is back, norms included
        assert torch.equal(v, state[k]), k
    # both forms are close to float at these formats (a loose sanity bound, not equality)
    for out in (folded, per_layer):
        assert float((out - ref).square().mean() / ref.square().mean()) < 0.05


def test_a_group_that_folds_only_in_part_is_refused() -> None:
    model = tiny(2)
    cfg = QuantConfig(
        rules=(
            Rule(
                pattern="re:q_proj$",
                role=Role.WEIGHT,
                format="int4_g16",
                method="awq",
                params={"fold": True},
            ),
            Rule(pattern="re:_proj$", role=Role.WEIGHT, format="int4_g16"),
        )
    )
    with pytest.raises(ValueError, match="read one input and fold one scale"):
        apply_config(model, cfg, calib_windows=[tokens()], progress=False)


def test_fold_is_off_by_default() -> None:
    for method in ("awq", "smoothquant"):
        assert get_method(method).resolve_params({})["fold"] is False
