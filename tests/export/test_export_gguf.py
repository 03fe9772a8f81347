"""The gguf target: the file reads back with `gguf`, dequantizes bit-exactly to quarch's
emulation, and transformers' GGUF loader gives the same logits as quarch's quantized model.

tiny-llama's rows are 64 or 128 wide, so only the legacy 32-wide block types fit (K-quants need
rows a multiple of 256 and are refused there, naming llama.cpp's fallback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from quarch.export import Target, export_model
from quarch.export._collect import quantize_for_export
from quarch.export._gguf import rope_permute
from quarch.models import tiny_llama
from quarch.quant import QuantConfig, Role, Rule

gguf = pytest.importorskip("gguf")

MIXED = QuantConfig(
    rules=(
        Rule(pattern="layers.0.mlp", role=Role.WEIGHT, format="fp16"),  # one group in F16
        Rule(pattern="q_proj", role=Role.WEIGHT, format="q4_1"),
        Rule(pattern="self_attn", role=Role.WEIGHT, format="q4_0"),
        Rule(pattern="down_proj", role=Role.WEIGHT, format="q5_0"),
        Rule(pattern="mlp", role=Role.WEIGHT, format="q8_0"),
    ),
)


def read_back(path: Path, loaded: Any) -> dict[str, torch.Tensor]:
    """GGUF name -> float32 tensor in HF layout (gguf's dequantizer; q/k rows un-permuted)."""
    from gguf.quants import dequantize

    cfg = loaded.model.config
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        w = dequantize(t.data, t.tensor_type)
        kind = t.name.split(".")[-2]
        if kind in heads:
            w = rope_permute(np.asarray(w), heads[kind], inverse=True)
        out[t.name] = torch.from_numpy(np.array(w, dtype=np.float32))
    return out


def hf_to_gguf_names(loaded: Any) -> dict[str, str]:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, loaded.model.config.num_hidden_layers)
    return {k: names.get_name(k, try_suffixes=(".weight",)) for k in loaded.model.state_dict()}


def test_round_trip_bit_exact_mixed_types(tmp_path: Path) -> None:
    loaded = tiny_llama()
    record = export_model(loaded, MIXED, Target.GGUF, tmp_path / "tiny.gguf")
    path = tmp_path / "tiny.gguf"
    assert record.tensor_types.keys() >= {"Q4_0", "Q4_1", "Q5_0", "Q8_0", "F16", "F32"}
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.1.attn_q.weight"] == "Q4_1"
    assert types["blk.1.attn_k.weight"] == "Q4_0"
    assert types["blk.1.ffn_down.weight"] == "Q5_0"
    assert types["blk.1.ffn_gate.weight"] == "Q8_0"
    assert types["blk.0.ffn_up.weight"] == "F16"
    assert types["blk.0.attn_norm.weight"] == "F32"
    expected = quantize_for_export(loaded.model, MIXED).state_dict
    back = read_back(path, loaded)
    names = hf_to_gguf_names(loaded)
    assert set(back) == {names[k] for k in expected}
    for key, value in expected.items():
        got = back[names[key]].reshape(value.shape)
        assert torch.equal(got, value.to(torch.float32)), key
    # the float model was not changed, and the quantized weights differ from it
    assert not torch.equal(
        back["blk.1.attn_k.weight"],
        loaded.model.state_dict()["model.layers.1.self_attn.k_proj.weight"],
    )
    sidecar = json.loads((tmp_path / "tiny.gguf.quarch_export.json").read_text())
    assert sidecar["target"] == "gguf" and sidecar["tensor_types"]["Q8_0"] > 0


def test_metadata_and_transformers_reload(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quarch.quant import apply_config

    loaded = tiny_llama()
    record = export_model(loaded, MIXED, "gguf", tmp_path)
    assert record.out_dir == str(tmp_path / "model.gguf")
    assert any("tokenizer" in line for line in record.not_expressed)
    reader = gguf.GGUFReader(str(tmp_path / "model.gguf"))
    cfg = loaded.model.config
    fields = {k: f.contents() for k, f in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == cfg.num_hidden_layers
    assert fields["llama.embedding_length"] == cfg.hidden_size
    assert fields["llama.attention.head_count_kv"] == cfg.num_key_value_heads
    assert fields["llama.vocab_size"] == cfg.vocab_size
    assert fields["tokenizer.ggml.model"] == "none"

    reloaded = AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file="model.gguf", dtype=torch.float32
    ).eval()
    ours = tiny_llama()
    apply_config(ours.model, MIXED, progress=False)
    ids = torch.arange(40).reshape(2, 20) % 258
    with torch.no_grad():
        a = reloaded(ids).logits
        b = ours.model(ids).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("fmt", "nearest"),
    [("int4_g32", "q4_0"), ("int8_g32", "q8_0"), ("int4_g128", "q5_0"), ("mxfp4", "q4_0")],
)
def test_refuses_formats_without_gguf_type(tmp_path: Path, fmt: str, nearest: str) -> None:
    # rows of 64: int4_g128's nearest, q4_k, does not fit and names its fallback q5_0
    config = QuantConfig(rules=(Rule(pattern="mlp", role=Role.WEIGHT, format=fmt),))
    with pytest.raises(ValueError, match=f"nearest GGUF type: {nearest}"):
        export_model(tiny_llama(), config, "gguf", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_refuses_k_quant_on_short_rows(tmp_path: Path) -> None:
    config = QuantConfig(rules=(Rule(pattern="mlp", role=Role.WEIGHT, format="q4_k"),))
    with pytest.raises(ValueError, match=r"multiple of 256.*fallback for it is q5_0"):
        export_model(tiny_llama(), config, "gguf", tmp_path / "x.gguf")


def test_rope_permute_inverts() -> None:
    w = np.arange(32 * 3).reshape(32, 3)
    p = rope_permute(w, 4)
    assert not np.array_equal(p, w)
    assert np.array_equal(rope_permute(p, 4, inverse=True), w)
    # llama.cpp's permute: head 0's rows 0..3 (first half) and 4..7 (second half) interleave
    assert list(p[:8, 0]) == [0, 12, 3, 15, 6, 18, 9, 21]


def test_nearest_type_uses_k_quant_where_rows_allow() -> None:
    from quarch.export._gguf import check_format
    from quarch.formats import Format

    with pytest.raises(ValueError, match="nearest GGUF type: q4_k"):
        check_format("w", Format.parse("int4_g128"), 512)
    with pytest.raises(ValueError, match="nearest GGUF type: q6_k"):
        check_format("w", Format.parse("int6_g32"), 512)
    check_format("w", Format.parse("q6_k"), 512)  # fits: no error
    check_format("w", Format.parse("bf16"), 64)


def test_runtime_formats_are_listed_not_written(tmp_path: Path) -> None:
    config = QuantConfig(
        rules=(
            Rule(pattern="mlp", role=Role.WEIGHT, format="q8_0"),
            Rule(pattern="mlp", role=Role.INPUT, format="int8"),
            Rule(pattern="self_attn", role=Role.K_CACHE, format="fp8_e4m3"),
        ),
    )
    record = export_model(tiny_llama(), config, "gguf", tmp_path / "r.gguf")
    notes = " ".join(record.not_expressed)
    assert "linear inputs in int8" in notes and "k_cache in fp8_e4m3" in notes and "-ctk" in notes


def test_cli_writes_gguf(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from quarch.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("default:\n  weight: {format: q4_0}\n")
    out = tmp_path / "out"
    args = ["export", "--model", "tiny-llama", "--config", str(cfg), "--to", "gguf"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["out_dir"] == str(out / "model.gguf") and record["tensor_types"]["Q4_0"] == 14
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(out / "model.gguf")).tensors}
    assert types == {"Q4_0", "F32"}
    bad = CliRunner().invoke(app, [*args[:4], str(cfg), "--to", "ggml", "--out", str(out)])
    assert bad.exit_code != 0 and "gguf" in bad.output


def test_folded_awq_writes_its_folded_norms(tmp_path: Path) -> None:
    """AWQ with fold: true: the GGUF file holds the folded norm weights (F32) that the
    quantized q4_0 weights expect."""
    from quarch.eval import builtin_text, calibration_windows
    from quarch.quant import apply_config

    loaded = tiny_llama()
    # a calibration text on which this random model's AWQ search picks non-unit scales (on the
    # default cross-domain mix it keeps scale 1, and a folded norm would equal the unfolded one)
    text = builtin_text("calibration", domain="python-reference")
    windows = calibration_windows(loaded.tokenizer, text, n=4, seqlen=64, seed=0)
    config = QuantConfig.uniform(weights="q4_0", method="awq", fold=True, clip=False)
    export_model(loaded, config, "gguf", tmp_path, calib_windows=windows)
    reference = tiny_llama()
    apply_config(reference.model, config, calib_windows=windows, progress=False)
    tensors = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "model.gguf")).tensors}
    got = np.array(tensors["blk.0.attn_norm.weight"].data)
    want = reference.model.model.layers[0].input_layernorm.weight.detach().numpy()
    unfolded = tiny_llama().model.model.layers[0].input_layernorm.weight.detach().numpy()
    assert np.array_equal(got, want) and not np.array_equal(got, unfolded)
