"""Acceptance of the gguf export on the shipped SmolLM2-135M (slow).

A mixed design (q8_0 gate/up, q4_k down, q4_0 attention, the first block's MLP in F16) exports
to GGUF; `gguf`'s reader and dequantizer give back quarch's quantized weights bit for bit, the
tokenizer is the source GGUF's, and transformers' GGUF loader gives the perplexity of quarch's
quantized model. SmolLM2's hidden size of 576 is not a multiple of 256, so K-quants fit only
down_proj (rows of 1536).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SEQLEN, WINDOWS = 256, 4


@pytest.mark.slow
def test_smollm2_mixed_gguf_round_trip_and_perplexity(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    from test_export_gguf import hf_to_gguf_names, read_back  # tests/export is on sys.path
    from transformers import AutoModelForCausalLM

    from quarch.eval import perplexity, select_text
    from quarch.export import export_model
    from quarch.export._collect import quantize_for_export
    from quarch.models import load_model, shipped_gguf_path
    from quarch.quant import QuantConfig, Role, Rule, apply_config

    config = QuantConfig(
        rules=(
            Rule(pattern="layers.0.mlp", role=Role.WEIGHT, format="fp16"),
            Rule(pattern="down_proj", role=Role.WEIGHT, format="q4_k"),
            Rule(pattern="mlp", role=Role.WEIGHT, format="q8_0"),
            Rule(pattern="self_attn", role=Role.WEIGHT, format="q4_0"),
        ),
    )
    loaded = load_model(None, dtype=torch.float32)
    path = tmp_path / "smollm2.gguf"
    record = export_model(loaded, config, "gguf", path)
    assert record.not_expressed == ()
    assert set(record.tensor_types) == {"F16", "Q4_K", "Q8_0", "Q4_0", "F32"}

    expected = quantize_for_export(loaded.model, config).state_dict
    back = read_back(path, loaded)
    names = hf_to_gguf_names(loaded)
    for key, value in expected.items():
        if key == "lm_head.weight":  # tied: llama.cpp reuses token_embd
            assert "output.weight" not in back
            continue
        assert torch.equal(back[names[key]].reshape(value.shape), value), key

    source = gguf.GGUFReader(str(shipped_gguf_path())).fields
    ours = gguf.GGUFReader(str(path)).fields
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        assert ours[key].contents() == source[key].contents(), key

    text = select_text()

    def ppl(model: object) -> float:
        args = {"seqlen": SEQLEN, "max_windows": WINDOWS, "progress": False}
        return perplexity(model, loaded.tokenizer, text, **args).ppl  # type: ignore[arg-type]

    reloaded = AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file=path.name, dtype=torch.float32
    ).eval()
    exported = ppl(reloaded)
    apply_config(loaded.model, config, progress=False)
    quarch_ppl = ppl(loaded.model)
    print(f"perplexity: quarch {quarch_ppl:.4f}, gguf export in transformers {exported:.4f}")
    assert abs(exported / quarch_ppl - 1) < 1e-5
