"""Calibration data: seeded random windows of tokens from a calibration text.

As in GPTQ's `get_wikitext2`/`get_c4` ("GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", https://arxiv.org/abs/2210.17323): each sample is `seqlen` consecutive
tokens starting at a uniformly random position of the tokenized calibration text. Samples may
overlap each other; they never come from the evaluation text when the calibration part of a
corpus is used (`builtin_text("calibration")`, or a dataset's train split).
"""

from __future__ import annotations

from typing import Any

import torch

from quarch._checks import check_positive_int
from quarch.eval._corpus import EvalText
from quarch.eval._perplexity import tokenize_text


def calibration_windows(
    tokenizer: Any, text: str | EvalText, *, n: int, seqlen: int, seed: int
) -> torch.Tensor:
    """`n` windows of `seqlen` tokens at seeded random positions of `text`, `[n, seqlen]` int64.

    The same tokenizer, text, `n`, `seqlen` and seed always give the same windows; the global
    torch RNG is not used.

    Raises:
        ValueError: `n < 1`, `seqlen < 1`, or the text has fewer than `seqlen` tokens.
    """
    check_positive_int("n", n)
    check_positive_int("seqlen", seqlen)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    ids = tokenize_text(tokenizer, text)  # [tokens]
    if ids.numel() < seqlen:
        raise ValueError(
            f"the calibration text has {ids.numel()} tokens, fewer than seqlen={seqlen}"
        )
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen + 1, (n,), generator=generator)  # [n]
    offsets = torch.arange(seqlen)  # [seqlen]
    return ids[starts[:, None] + offsets[None, :]]  # [n, seqlen]
