"""apply_config on a tiny random LLaMA: QuantLinear, weights quantized once, activations,
exclusions, errors, report, restore, block-sequential calibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

import quarch.quant._linear as linear_mod
from quarch.formats import Format, quantize
from quarch.quant import (
    LayerCalib,
    QuantConfig,
    QuantLinear,
    Role,
    Rule,
    WeightCache,
    apply_config,
    quantized,
)
from quarch.quant._calib import calibrate_blockwise, collect_calib


def tiny(seed: int = 0, *, kv_heads: int = 2, attn: str = "sdpa") -> LlamaForCausalLM:
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
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


def tokens(seed: int = 1, n: int = 2, seqlen: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x).logits


def sqnr_db(ref: torch.Tensor, y: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - y).pow(2).mean()))


def test_int8_close_int2_far() -> None:
    model, x = tiny(), tokens()
    ref = logits(model, x)
    with quantized(model, QuantConfig.uniform(weights="int8")):
        int8 = sqnr_db(ref, logits(model, x))
    with quantized(model, QuantConfig.uniform(weights="int2")):
        int2 = sqnr_db(ref, logits(model, x))
    # Per-channel int8 rounding noise is ~ -45 dB relative to gaussian weights (uniform noise of
    # step amax/127, amax ~ 3 sigma); measured 45 dB on logits. int2 has 3 levels: measured 5 dB.
    assert int8 > 35.0
    assert int2 < 15.0


def test_weights_stored_dequantized_and_quantized_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = tiny(), tokens()
    fmt = Format.parse("int4_g32")
    w_q = model.model.layers[0].mlp.down_proj.weight.detach().clone()
    apply_config(model, QuantConfig.uniform(weights="int4_g32"), progress=False)
    layer = model.model.layers[0].mlp.down_proj
    assert isinstance(layer, QuantLinear)
    assert layer.weight.dtype == torch.float32
    assert torch.equal(layer.weight, quantize(fmt, w_q))

    calls: list[tuple[int, ...]] = []

    def counting(f: Format, t: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return quantize(f, t, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(linear_mod, "quantize", counting)
    logits(model, x)
    assert calls == []  # weight-only: nothing is quantized during the forward pass


def test_activation_quantization(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = tiny(), tokens()
    apply_config(model, QuantConfig.uniform(weights="int8"), progress=False)
    w_only = logits(model, x)
    model2 = tiny()
    apply_config(model2, QuantConfig.uniform(weights="int8", acts="int4"), progress=False)
    calls: list[tuple[int, ...]] = []

    def counting(f: Format, t: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return quantize(f, t, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(linear_mod, "quantize", counting)
    both = logits(model2, x)
    assert 5.0 < sqnr_db(w_only, both) < 35.0  # int4 per-token activations: a real change
    # 7 linears per block x 2 blocks, each on its [batch, seq, in] input, never a weight
    assert len(calls) == 14
    assert all(c[:2] == (2, 32) for c in calls)

    # One layer by hand: y = Q_act(x) W_q^T
    layer = model2.model.layers[1].self_attn.o_proj
    h = torch.randn(3, 64)
    expected = nn.functional.linear(quantize(Format.parse("int4"), h), layer.weight)
    torch.testing.assert_close(layer(h), expected)


def test_input_scale_and_lowrank() -> None:
    # The WeightResult contract: y = (x / s) W^T + (x / s) A B (+ bias)
    torch.manual_seed(0)
    w, a, b, s = torch.randn(8, 16), torch.randn(16, 2), torch.randn(2, 8), torch.rand(16) + 0.5
    bias = torch.randn(8)
    layer = QuantLinear(weight=w, bias=bias, input_scale=s, lowrank=(a, b))
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), (x / s) @ w.T + (x / s) @ a @ b + bias)
    fmt = Format.parse("int4")
    layer = QuantLinear(weight=w, bias=None, input_format=fmt, input_scale=s, lowrank=(a, b))
    xq = quantize(fmt, x / s)
    torch.testing.assert_close(layer(x), xq @ w.T + xq @ a @ b)
    with pytest.raises(ValueError, match="low-rank factors"):
        QuantLinear(weight=w, bias=None, lowrank=(b, a))


def test_embeddings_and_lm_head_excluded_unless_named() -> None:
    model = tiny()
    emb = model.model.embed_tokens.weight.detach().clone()
    apply_config(model, QuantConfig.uniform(weights="int4"), progress=False)
    assert type(model.lm_head) is nn.Linear
    assert torch.equal(model.model.embed_tokens.weight, emb)

    model = tiny()
    cfg = QuantConfig(
        rules=(Rule(pattern="lm_head", role=Role.WEIGHT, format="int4"),),
        default=QuantConfig.uniform(weights="int8").default,
    )
    report = apply_config(model, cfg, progress=False)
    assert isinstance(model.lm_head, QuantLinear)
    assert torch.equal(model.lm_head.weight, quantize(Format.parse("int4"), emb))
    assert torch.equal(model.model.embed_tokens.weight, emb)  # the tied embedding stays float
    assert {r.name: r.weight_format for r in report.layers}["lm_head"] == "int4"


def test_unmatched_rule_is_an_error() -> None:
    model = tiny()
    cfg = QuantConfig(rules=(Rule(pattern="*.dwn_proj", role=Role.WEIGHT, format="int4"),))
    with pytest.raises(ValueError, match=r"'\*\.dwn_proj'.*matches no layer.*down_proj"):
        apply_config(model, cfg, progress=False)
    kv_on_linear = QuantConfig(rules=(Rule(pattern="q_proj", role=Role.K_CACHE, format="int8"),))
    with pytest.raises(ValueError, match="matches no layer"):
        apply_config(model, kv_on_linear, progress=False)


def test_nan_weight_names_the_layer_and_changes_nothing() -> None:
    model = tiny()
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] = float("nan")
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj.*NaN"):
        apply_config(model, QuantConfig.uniform(weights="int8"), progress=False)
    assert not any(isinstance(m, QuantLinear) for m in model.modules())


def test_calibrated_method_needs_windows() -> None:
    with pytest.raises(ValueError, match="need calibration windows"):
        apply_config(tiny(), QuantConfig.uniform(weights="int4", method="gptq"), progress=False)


def test_report_bits_and_layers() -> None:
    model = tiny()
    cfg = QuantConfig(
        rules=(Rule(pattern="*.down_proj", role=Role.WEIGHT, format=None),),
        default=QuantConfig.uniform(weights="int4_g32", kv="int8").default,
    )
    report = apply_config(model, cfg, progress=False)
    by_name = {r.name: r for r in report.layers}
    # int4_g32 with fp32 scales: 4 + 32/32 bits (docs/formats.md); float fp32 layer: 32
    assert by_name["model.layers.0.self_attn.q_proj"].bits_per_weight == 5.0
    assert by_name["model.layers.0.mlp.down_proj"].bits_per_weight == 32.0
    assert by_name["model.layers.1.self_attn"].k_format == "int8"
    n_down = 2 * 64 * 128
    n_rest = 2 * (2 * 64 * 64 + 2 * 32 * 64 + 2 * 128 * 64)  # q, o; k, v; gate, up
    expected = (5.0 * n_rest + 32.0 * n_down) / (n_rest + n_down)
    assert report.bits_per_weight == pytest.approx(expected)
    assert report.to_dict()["config"] == cfg.to_dict()


def test_quantized_context_restores_the_float_model() -> None:
    model, x = tiny(), tokens()
    ref = logits(model, x)
    with quantized(model, QuantConfig.uniform(weights="int4", acts="int8", kv="int4")):
        assert not torch.equal(logits(model, x), ref)
    assert torch.equal(logits(model, x), ref)
    assert not any(isinstance(m, QuantLinear) for m in model.modules())
    assert model.config._attn_implementation == "sdpa"


def test_block_sequential_calibration_sees_quantized_inputs() -> None:
    model = tiny()
    windows = list(tokens(seed=3, n=3, seqlen=16).split(1))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and "layers" in n]
    float_stats = collect_calib(model, windows, names)
    seen: dict[str, torch.Tensor] = {}

    def quantize_layers(layer_names: list[str], stats: dict) -> None:
        for n in layer_names:
            seen[n] = stats[n].hessian
        for n in layer_names:
            sub = QuantConfig(rules=(Rule(pattern=n, role=Role.WEIGHT, format="int2"),))
            apply_config(model, sub, progress=False)

    protocol = calibrate_blockwise(model, windows, set(names), quantize_layers, names)
    assert protocol.startswith("block-sequential")
    q0, q1 = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    torch.testing.assert_close(seen[q0], float_stats[q0].hessian)  # block 0: float inputs
    assert not torch.allclose(seen[q1], float_stats[q1].hessian, rtol=1e-2)  # after int2 block 0
    assert float_stats[q0].num_tokens == 48
    assert float_stats[q0].samples.shape == (48, 64)


def test_gptq_end_to_end_runs_block_sequentially() -> None:
    model, x = tiny(), tokens()
    ref = logits(model, x)
    cfg = QuantConfig.uniform(weights="int4_g32", method="gptq")
    report = apply_config(model, cfg, calib_windows=tokens(seed=5, n=4, seqlen=32), progress=False)
    assert report.calibration.startswith("block-sequential")
    assert report.calib_tokens == 128
    assert sqnr_db(ref, logits(model, x)) > 10.0


def test_rotation_is_applied_first_and_exact_for_the_float_model() -> None:
    model, x = tiny(), tokens()
    ref = logits(model, x)
    report = apply_config(model, QuantConfig.uniform(rotation="hadamard"), progress=False)
    torch.testing.assert_close(logits(model, x), ref, rtol=1e-4, atol=1e-4)
    assert report.config.rotation == "hadamard"
    model = tiny()
    apply_config(model, QuantConfig.uniform(weights="int8", rotation="hadamard"), progress=False)
    assert sqnr_db(ref, logits(model, x)) > 35.0
    cm = quantized(tiny(), QuantConfig.uniform(weights="int8", rotation="hadamard"))
    with pytest.raises(ValueError, match="rotation cannot be undone"):
        cm.__enter__()


def test_bf16_model_keeps_its_compute_dtype() -> None:
    model, x = tiny().to(torch.bfloat16), tokens()
    ref = logits(model, x).float()
    apply_config(model, QuantConfig.uniform(weights="int8", acts="fp8_e4m3", kv="int8"))
    layer = model.model.layers[0].mlp.up_proj
    assert isinstance(layer, QuantLinear) and layer.weight.dtype == torch.bfloat16
    assert sqnr_db(ref, logits(model, x).float()) > 15.0


def test_calibration_statistics_match_the_captured_inputs() -> None:
    model = tiny()
    windows = list(tokens(seed=3, n=3, seqlen=16).split(1))
    seen: list[torch.Tensor] = []
    attn = model.model.layers[1].self_attn
    handle = attn.k_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    names = ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj"]
    stats = collect_calib(model, windows, names)
    handle.remove()
    want = LayerCalib.from_inputs(torch.cat(seen, 1))  # the methods' own reference
    for name in names:  # q and k read the same input and share one accumulator
        got = stats[name]
        torch.testing.assert_close(got.hessian, want.hessian, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.act_absmean, want.act_absmean)
        assert torch.equal(got.act_absmax, want.act_absmax)
        assert got.num_tokens == 48 and got.samples.shape == (48, 64)
    assert stats[names[0]].hessian is not stats[names[1]].hessian  # each its own tensors


def test_each_format_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config's format strings are parsed when it is built; applying it parses none again,
    however many layers take each format."""
    parsed: list[str] = []
    original = Format.parse

    def counting(text: str) -> Format:
        parsed.append(text)
        return original(text)

    monkeypatch.setattr(Format, "parse", staticmethod(counting))
    config = QuantConfig.uniform(weights="int4_g32", acts="fp8_e4m3_c", kv="int8")
    assert sorted(parsed) == ["fp8_e4m3_c", "int4_g32", "int8"]
    model = tiny()
    report = apply_config(model, config, progress=False)
    assert sorted(parsed) == ["fp8_e4m3_c", "int4_g32", "int8"]
    assert sum(r.weight_format is not None for r in report.layers) == 14


def test_weight_cache_reuses_rtn_weights_exactly() -> None:
    x = tokens()
    config = QuantConfig.from_dict(
        {
            "rules": [
                {"pattern": "layers.0", "role": "weight", "format": "int4_g32"},
                {"pattern": "layers.1", "role": "weight", "format": "mxfp4", "method": "gptq"},
            ],
            "default": {"input": "fp8_e4m3_c"},
        }
    )
    model = tiny()
    windows = tokens(seed=7, n=2, seqlen=16)
    with quantized(model, config, calib_windows=windows):
        expected = logits(model, x)
    cache = WeightCache()
    for round_ in range(2):
        with quantized(model, config, calib_windows=windows, weight_cache=cache):
            assert torch.equal(logits(model, x), expected), round_
    assert (cache.misses, cache.hits) == (7, 7)  # layer 0's RTN linears only; GPTQ not cached
    with pytest.raises(ValueError, match="rotation 'hadamard'"):
        apply_config(tiny(), QuantConfig.uniform(weights="int8", rotation="hadamard"),
                     weight_cache=cache, progress=False)  # fmt: skip
