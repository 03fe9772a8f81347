"""The shipped model's "float" weights are a dequantized Q4_1 GGUF: they lie on the Q4_1 grid.

docs/accuracy.md relies on this: RTN to `q4_1` is lossless for the shipped weights, so a
data-driven method on that format can only lose, while int4_g128 is an ordinary rounding.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from quarch.formats import Format, quantize


@pytest.mark.slow  # loads the 135M-parameter GGUF
def test_shipped_decoder_weights_are_exactly_on_the_q4_1_grid() -> None:
    from quarch.models import load_model

    try:
        loaded: Any = load_model()
    except ValueError as e:
        pytest.skip(str(e))
    q4_1, int4 = Format.parse("q4_1"), Format.parse("int4_g128")
    weights = [
        m.weight.detach().float()
        for name, m in loaded.model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}"
    ]
    assert len(weights) == 30 * 7
    for w in weights:
        assert torch.equal(quantize(q4_1, w), w)
    moved = sum(int((quantize(int4, w) != w).sum()) for w in weights[:7])
    assert moved > 0.9 * sum(w.numel() for w in weights[:7])  # int4_g128 is not that grid
