"""Acceptance of the compressed-tensors export on the shipped SmolLM2-135M (slow).

A mixed design (int4 attention, fp8 MLP, fp8 KV cache, the first block left in float) exports
to compressed-tensors; transformers loads the export and its perplexity on the built-in text is
within 0.5 % of quarch's quantized model. Attention uses groups of 64: SmolLM2's hidden size of
576 is not a multiple of 128, and compressed-tensors (like vLLM's kernels) needs whole groups.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

needs_ct = pytest.mark.skipif(
    find_spec("compressed_tensors") is None, reason="needs compressed-tensors (quarch[export])"
)

SEQLEN, WINDOWS = 256, 4


@pytest.mark.slow
@needs_ct
def test_smollm2_mixed_export_perplexity(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quarch.eval import perplexity, select_text
    from quarch.export import export_model
    from quarch.models import load_model
    from quarch.quant import QuantConfig, Role, Rule, TensorSpec, apply_config

    weights = QuantConfig(
        rules=(
            Rule(pattern="layers.0", role=Role.WEIGHT, format=None),
            Rule(pattern="self_attn", role=Role.WEIGHT, format="int4_g64"),
            Rule(pattern="mlp", role=Role.WEIGHT, format="fp8_e4m3_c"),
        ),
    )
    kv = {Role.K_CACHE: TensorSpec(format="fp8_e4m3"), Role.V_CACHE: TensorSpec(format="fp8_e4m3")}
    config = QuantConfig(rules=weights.rules, default=kv)
    text = select_text()
    loaded = load_model(None, dtype=torch.float32)
    record = export_model(loaded, config, "compressed-tensors", tmp_path)
    assert record.warnings == () and record.not_expressed == ()

    def ppl(model: object) -> float:
        args = {"seqlen": SEQLEN, "max_windows": WINDOWS, "progress": False}
        return perplexity(model, loaded.tokenizer, text, **args).ppl  # type: ignore[arg-type]

    apply_config(loaded.model, weights, progress=False)
    quarch_weights_only = ppl(loaded.model)
    apply_config(loaded.model, QuantConfig(default=kv), progress=False)  # then the fp8 KV cache
    quarch_full = ppl(loaded.model)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    exported = ppl(model)
    print(
        f"perplexity: quarch {quarch_full:.4f} (weights only {quarch_weights_only:.4f}), "
        f"compressed-tensors export in transformers {exported:.4f}"
    )
    assert abs(exported / quarch_full - 1) < 0.005
    # transformers keeps the KV cache in float: the export runs as quarch's weights-only model
    assert abs(exported / quarch_weights_only - 1) < 1e-5
