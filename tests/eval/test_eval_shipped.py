"""The shipped model (SmolLM2-135M-Instruct, Q4_1 GGUF): load it and measure perplexity.

Slow: transformers' GGUF loader takes about 35 s for this file on 2 cores (it parses the
49k-token vocabulary three times and dequantizes 272 tensors in numpy).
"""

from __future__ import annotations

import pytest
import torch

from quarch.eval import builtin_text, perplexity
from quarch.models import LoadedModel, ModelKind

pytestmark = pytest.mark.slow


def test_shipped_model_loads(shipped: LoadedModel) -> None:
    assert shipped.kind == ModelKind.GGUF
    assert shipped.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert shipped.note.startswith("weights stored as Q4_1 (210 tensors)")
    config = shipped.model.config
    # SmolLM2-135M: 30 layers, hidden 576, 9 query heads sharing 3 KV heads, 49152-token vocab
    # (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json).
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.vocab_size == len(shipped.tokenizer) == 49152
    assert {p.dtype for p in shipped.model.parameters()} == {torch.float32}
    # no quantizer left on the model (one loaded from the converted cache has no such attribute)
    assert getattr(shipped.model, "hf_quantizer", None) is None


def test_shipped_model_perplexity(shipped: LoadedModel) -> None:
    result = perplexity(
        shipped.model, shipped.tokenizer, builtin_text(), seqlen=256, max_windows=2, progress=False
    )
    assert (result.num_windows, result.num_tokens) == (2, 510)
    # Measured 23.58 on CPython 3.11.7's text (torch 2.13 CPU, transformers 5.23); a broken
    # loader (wrong Q/K permutation, bad dequantization) gives hundreds or thousands.
    assert 10 < result.ppl < 40
