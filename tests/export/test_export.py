"""quarch.export: the checkpoints reload in their consumer library and equal quarch's emulation.

- `hf`: transformers reloads the dequantized checkpoint and gives the same logits as quarch's
  quantized model, bit for bit (same weights, same float32 arithmetic).
- `compressed-tensors`: transformers decompresses the packed codes with the library, and every
  weight equals quarch's dequantized weight bit for bit; the stored codes are quarch's.
- formats, methods and rotations a target cannot express are refused naming the nearest one.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import torch

from quarch.export import SIDECAR, Target, export_model, nearest_supported, weight_args
from quarch.formats import Format
from quarch.models import tiny_llama
from quarch.quant import QuantConfig, Role, Rule, apply_config

# Not importorskip: importing the library takes seconds, and collection should not pay them.
needs_ct = pytest.mark.skipif(
    find_spec("compressed_tensors") is None, reason="needs compressed-tensors (quarch[export])"
)

IDS = torch.arange(40).reshape(2, 20) % 258  # [batch, seq] byte tokens


def _quarch_model(config: QuantConfig) -> Any:
    loaded = tiny_llama()
    apply_config(loaded.model, config, progress=False)
    return loaded.model


def _reload(path: Path, *, dequantize: bool = False) -> Any:
    """transformers' loader. With compressed-tensors it keeps the packed tensors and the library
    decompresses each module (by its own scheme) on the first forward pass; `dequantize=True`
    decompresses while loading instead, which transformers 5 does with one scheme for every
    dense layer, but is the route whose asymmetric zero-points load (the other one shapes the
    packed zero-point tensor as if it were unpacked)."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if dequantize:
        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).eval()
    with torch.no_grad():
        model(IDS[:, :4])
    return model


def _linear_weights(model: Any) -> dict[str, torch.Tensor]:
    return {
        n: m.weight.detach()
        for n, m in model.named_modules()
        if n and hasattr(m, "weight") and isinstance(m.weight, torch.Tensor) and m.weight.dim() == 2
    }


def test_hf_export_reloads_with_identical_logits(tmp_path: Path) -> None:
    config = QuantConfig.uniform(weights="int4_g32")
    record = export_model(tiny_llama(), config, "hf", tmp_path)
    assert record.target is Target.HF
    assert {"config.json", "model.safetensors", SIDECAR, "tokenizer.json"} <= set(record.files)
    reloaded = _reload(tmp_path)
    with torch.no_grad():
        want = _quarch_model(config)(IDS).logits
        got = reloaded(IDS).logits
    assert torch.equal(got, want)
    float_logits = tiny_llama().model(IDS).logits
    assert not torch.equal(got, float_logits)  # the export really holds quantized weights
    assert record.not_expressed == ()


def test_hf_export_names_what_it_cannot_express(tmp_path: Path) -> None:
    config = QuantConfig.uniform(weights="int8", acts="int8", kv="fp8_e4m3")
    record = export_model(tiny_llama(), config, "hf", tmp_path)
    text = " ".join(record.not_expressed)
    assert "int8" in text and "k_cache" in text and "v_cache" in text
    sidecar = json.loads((tmp_path / SIDECAR).read_text())
    assert sidecar["not_expressed"] == list(record.not_expressed)
    assert QuantConfig.from_dict(sidecar["config"]) == config


@needs_ct
@pytest.mark.parametrize(
    "fmt",
    [
        "int4_g32",
        "int8",
        "fp8_e4m3_c",
        "fp8_e4m3_t",
        "fp8_e4m3",
        "int4_g32_asym",
        "int8_t",
        "int8_full_g64",
        "int2",
        "mxfp4",
        "mxfp8_e4m3",
    ],
)
def test_compressed_tensors_weights_are_bit_exact(tmp_path: Path, fmt: str) -> None:
    config = QuantConfig.uniform(weights=fmt)
    export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert stored["quant_method"] == "compressed-tensors"
    want = _linear_weights(_quarch_model(config))
    got = _linear_weights(_reload(tmp_path, dequantize=fmt.endswith("_asym") or fmt == "mxfp4"))
    assert set(got) == set(want)
    for name, w in want.items():
        assert torch.equal(got[name], w), name


@needs_ct
def test_int4_g128_codes_are_quarchs(tmp_path: Path) -> None:
    """int4 in groups of 128 (the tiny model's down_proj has 128 inputs): the packed int32 words
    unpack to quarch's own codes, and decompress to its weights bit for bit."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors.torch import load_file

    from quarch.formats import encode

    config = QuantConfig(
        rules=(Rule(pattern="down_proj", role=Role.WEIGHT, format="int4_g128"),),
    )
    export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    name = "model.layers.1.mlp.down_proj"
    float_w = tiny_llama().model.get_submodule(name).weight.detach()
    codes = encode(Format.parse("int4_g128"), float_w).codes
    signed = torch.where(codes >= 8, codes - 16, codes)
    unpacked = unpack_from_int32(
        tensors[f"{name}.weight_packed"], 4, tensors[f"{name}.weight_shape"]
    )
    assert torch.equal(unpacked.to(torch.int32), signed)
    assert f"{name}.weight" not in tensors and "model.layers.1.mlp.up_proj.weight" in tensors
    got = _reload(tmp_path).get_submodule(name).weight.detach()
    assert torch.equal(got, _quarch_model(config).get_submodule(name).weight.detach())


@needs_ct
def test_mixed_schemes_and_kv_cache(tmp_path: Path) -> None:
    config = QuantConfig(
        rules=(
            Rule(pattern="layers.0", role=Role.WEIGHT, format=None),  # one block left float
            Rule(pattern="self_attn", role=Role.WEIGHT, format="int4_g16"),
            Rule(pattern="mlp", role=Role.WEIGHT, format="fp8_e4m3_c"),
        ),
        default={Role.K_CACHE: _spec("fp8_e4m3"), Role.V_CACHE: _spec("fp8_e4m3")},
    )
    record = export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    groups = qc["config_groups"].values()
    targets = {g["weights"]["type"]: set(g["targets"]) for g in groups}
    assert targets["int"] == {f"model.layers.1.self_attn.{p}_proj" for p in "qkvo"}
    assert targets["float"] == {f"model.layers.1.mlp.{p}_proj" for p in ("gate", "up", "down")}
    assert "model.layers.0.self_attn.q_proj" in qc["ignore"] and "lm_head" in qc["ignore"]
    assert qc["kv_cache_scheme"]["type"] == "float" and qc["kv_cache_scheme"]["num_bits"] == 8
    assert record.warnings == () and record.not_expressed == ()
    want = _linear_weights(_quarch_model(config))
    got = _linear_weights(_reload(tmp_path))
    for name, w in want.items():
        assert torch.equal(got[name], w), name


def _spec(fmt: str) -> Any:
    from quarch.quant import TensorSpec

    return TensorSpec(format=fmt)


@needs_ct
def test_fused_group_with_two_schemes_is_flagged(tmp_path: Path) -> None:
    config = QuantConfig(
        rules=(Rule(pattern="q_proj", role=Role.WEIGHT, format="int8"),),
        default={Role.WEIGHT: _spec("int4_g16")},
    )
    record = export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    assert any("q_proj/k_proj/v_proj" in w and "vLLM" in w for w in record.warnings)


@needs_ct
@pytest.mark.parametrize(
    ("fmt", "nearest"),
    [
        ("mxfp6_e3m2", "fp8_e4m3_c"),
        ("nf4", "int4_g64"),
        ("nvfp4", "int4_g16"),
        ("fp8_e5m2", "fp8_e4m3_c"),
        ("ternary", "int2"),
    ],
)
def test_formats_without_equivalent_are_refused(fmt: str, nearest: str) -> None:
    assert nearest_supported(Format.parse(fmt)) == nearest
    with pytest.raises(ValueError, match=rf"{fmt}.*nearest supported: {nearest}"):
        weight_args(Format.parse(fmt), where="x")


@needs_ct
def test_refusals_of_whole_configs(tmp_path: Path) -> None:
    cases = [
        (QuantConfig.uniform(weights="nf4"), "nearest supported: int4_g64"),
        (QuantConfig.uniform(weights="int4_g128"), "not a multiple of.*groups of 64"),
        (QuantConfig.uniform(weights="int8", rotation="hadamard"), "without `rotation`"),
        (QuantConfig.uniform(kv="fp8_e4m3_c"), "nearest supported: fp8_e4m3"),
        (
            QuantConfig(rules=(Rule(pattern="layers.0", role=Role.K_CACHE, format="fp8_e4m3"),)),
            "one kv_cache_scheme per model",
        ),
        (
            QuantConfig(rules=(Rule(pattern="embed_tokens", role=Role.WEIGHT, format="int8"),)),
            "linear layers only",
        ),
        (QuantConfig.uniform(weights="nvfp4"), "two-level scale.*nearest supported: int4_g16"),
    ]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    with pytest.raises(ValueError, match=r"unknown export target 'ggml'.*gguf"):
        export_model(tiny_llama(), QuantConfig.uniform(weights="int8"), "ggml", tmp_path)
    with pytest.raises(ValueError, match="float32"):
        export_model(
            tiny_llama(dtype=torch.bfloat16), QuantConfig.uniform(weights="int8"), "hf", tmp_path
        )


def test_runtime_input_scales_are_refused(tmp_path: Path) -> None:
    """SmoothQuant keeps a per-input-channel scale the layer applies at run time."""
    from quarch.eval import calibration_windows, select_text

    loaded = tiny_llama()
    windows = calibration_windows(
        loaded.tokenizer, select_text(part="calibration"), n=2, seqlen=32, seed=0
    )
    config = QuantConfig.uniform(weights="int8", acts="int8", method="smoothquant")
    with pytest.raises(
        ValueError,
        match=r"no serving engine applies it.*Nearest exportable: the same method with "
        r"fold: true.*weights int8",
    ):
        export_model(loaded, config, "hf", tmp_path, calib_windows=windows)


@needs_ct
def test_fp8_w8a8_reloads_with_identical_logits(tmp_path: Path) -> None:
    """fp8 weights per channel, fp8 inputs per token: the library's dynamic per-token fp8
    scale (amax / 448) is quarch's, so transformers' forward equals quarch's bit for bit."""
    config = QuantConfig.uniform(weights="fp8_e4m3_c", acts="fp8_e4m3_c")
    export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    (group,) = qc["config_groups"].values()
    assert group["input_activations"]["strategy"] == "token"
    assert group["input_activations"]["dynamic"] is True
    with torch.no_grad():
        got = _reload(tmp_path)(IDS).logits
        want = _quarch_model(config)(IDS).logits
    assert torch.equal(got, want)


@needs_ct
def test_int8_inputs_map_to_dynamic_per_token(tmp_path: Path) -> None:
    """int8 inputs become the library's dynamic per-token int8 scheme. Its scale is
    amax / 127.5 on the full grid [-128, 127] where quarch uses amax / 127 on [-127, 127], so
    the activations differ slightly; the weights are still quarch's bit for bit."""
    config = QuantConfig.uniform(weights="int8", acts="int8")
    record = export_model(tiny_llama(), config, "compressed-tensors", tmp_path)
    assert any("amax / 127.5" in w for w in record.warnings)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    (group,) = qc["config_groups"].values()
    assert group["input_activations"]["type"] == "int"
    assert group["input_activations"]["strategy"] == "token"
    reloaded = _reload(tmp_path)
    want = _quarch_model(config)
    for name, w in _linear_weights(want).items():
        assert torch.equal(_linear_weights(reloaded)[name], w), name
    with torch.no_grad():
        diff = (reloaded(IDS).logits - want(IDS).logits).abs().max()
    assert 0 < float(diff) < 0.05


@needs_ct
def test_gptq_weights_are_bit_exact(tmp_path: Path) -> None:
    """GPTQ picks each group's scale on weights it has already moved, so some groups never
    reach the largest code: the export recovers a scale per group under which the weights are
    exact multiples, and transformers' decompressed weights are quarch's GPTQ weights."""
    from quarch.eval import calibration_windows, select_text

    loaded = tiny_llama()
    windows = calibration_windows(
        loaded.tokenizer, select_text(part="calibration"), n=4, seqlen=64, seed=0
    )
    config = QuantConfig.uniform(weights="int4_g32", method="gptq")
    export_model(loaded, config, "compressed-tensors", tmp_path, calib_windows=windows)
    reference = tiny_llama()
    apply_config(reference.model, config, calib_windows=windows, progress=False)
    want = _linear_weights(reference.model)
    got = _linear_weights(_reload(tmp_path))
    for name, w in want.items():
        assert torch.equal(got[name], w), name


def _calib(loaded: Any) -> Any:
    from quarch.eval import calibration_windows, select_text

    return calibration_windows(
        loaded.tokenizer, select_text(part="calibration"), n=4, seqlen=64, seed=0
    )


@needs_ct
def test_folded_awq_exports_with_its_norms(tmp_path: Path) -> None:
    """AWQ with fold: true keeps no run-time scale: the compressed-tensors checkpoint holds the
    folded norm weights and the quantized folded weights, and transformers' reload gives quarch's
    logits (same weights bit for bit, norms included)."""
    loaded = tiny_llama()
    windows = _calib(loaded)
    config = QuantConfig.uniform(weights="int4_g32", method="awq", fold=True)
    export_model(loaded, config, "compressed-tensors", tmp_path, calib_windows=windows)
    reference = tiny_llama()
    apply_config(reference.model, config, calib_windows=windows, progress=False)
    reloaded = _reload(tmp_path)
    norm = "model.layers.0.input_layernorm.weight"
    got_sd, want_sd = reloaded.state_dict(), reference.model.state_dict()
    assert torch.equal(got_sd[norm], want_sd[norm])
    assert not torch.equal(want_sd[norm], tiny_llama().model.state_dict()[norm])  # folded
    for name, w in _linear_weights(reference.model).items():
        assert torch.equal(_linear_weights(reloaded)[name], w), name
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, reference.model(IDS).logits)


def test_per_layer_awq_is_refused_for_engines(tmp_path: Path) -> None:
    loaded = tiny_llama()
    windows = _calib(loaded)
    for target, fmt in (("compressed-tensors", "int4_g32"), ("gguf", "q4_0")):
        config = QuantConfig.uniform(weights=fmt, method="awq", clip=False)
        with pytest.raises(ValueError, match=r"method 'awq'.*fold: true"):
            export_model(loaded, config, target, tmp_path / target, calib_windows=windows)
