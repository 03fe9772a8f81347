"""Acceptance of the compressed-tensors export on the shipped SmolLM2-135M (slow).

A mixed design (int4 attention, fp8 MLP, fp8 KV cache, the first block left in float) exports
to compressed-tensors; transformers loads the export and its perplexity on the built-in text is
within 0.5 % of quarch's quantized model. Attention uses groups of 64: SmolLM2's hidden size of
576 is not a multiple of 128, and compressed-tensors (like vLLM's kernels) needs whole groups.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("compressed_tensors")

SEQLEN, WINDOWS = 256, 4


@pytest.mark.slow
def test_smollm2_mixed_export_perplexity(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quarch.eval import perplexity, select_text
    from quarch.export import export_model
    from quarch.models import load_model
    from quarch.quant import QuantConfig, Role, Rule, TensorSpec, apply_config

    config = QuantConfig(
        rules=(
            Rule(pattern="layers.0", role=Role.WEIGHT, format=None),
            Rule(pattern="self_attn", role=Role.WEIGHT, format="int4_g64"),
            Rule(pattern="mlp", role=Role.WEIGHT, format="fp8_e4m3_c"),
        ),
        default={
            Role.K_CACHE: TensorSpec(format="fp8_e4m3"),
            Role.V_CACHE: TensorSpec(format="fp8_e4m3"),
        },
    )
    text = select_text()
    loaded = load_model(None, dtype=torch.float32)
    record = export_model(loaded, config, "compressed-tensors", tmp_path)
    assert record.warnings == () and record.not_expressed == ()
    apply_config(loaded.model, config, progress=False)
    want = perplexity(
        loaded.model, loaded.tokenizer, text, seqlen=SEQLEN, max_windows=WINDOWS, progress=False
    )
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    got = perplexity(
        model, loaded.tokenizer, text, seqlen=SEQLEN, max_windows=WINDOWS, progress=False
    )
    print(f"quarch ppl {want.ppl:.4f}, transformers (compressed-tensors) ppl {got.ppl:.4f}")
    assert abs(got.ppl / want.ppl - 1) < 0.005
