"""KL divergence of a model's next-token distributions from a reference model's.

A cheap, low-noise accuracy proxy: run the float model once on a few windows, keep its logits,
and measure how far a quantized model's predictive distributions move from them,
KL(P_ref || P) = sum_v P_ref(v) (log P_ref(v) - log P(v)), averaged over token positions (nats).
"""

from __future__ import annotations

import torch

from quarch._checks import check_positive_int
from quarch.eval._perplexity import window_logits
from quarch.eval._scores import kl_divergence


def reference_logits(
    model: torch.nn.Module, windows: torch.Tensor, *, batch_size: int = 1
) -> torch.Tensor:
    """The model's float32 logits on token windows `[n, seqlen]`, as `[n, seqlen, vocab]` on CPU.

    Memory: `n * seqlen * vocab * 4` bytes (8 windows of 512 with a 49k vocabulary: 0.8 GB).

    Raises:
        ValueError: bad batch size, windows not `[n, seqlen]`, or NaN/Inf logits.
    """
    _check_windows(windows, batch_size)
    with torch.inference_mode():
        parts = [
            window_logits(model, windows[i : i + batch_size]).cpu()
            for i in range(0, windows.shape[0], batch_size)
        ]
    return torch.cat(parts)


def kl_to_reference(
    model: torch.nn.Module, windows: torch.Tensor, logits_ref: torch.Tensor, *, batch_size: int = 1
) -> float:
    """Mean KL (nats per position) of `model` from reference logits on the same windows.

    Computes batch by batch, so the compared model's logits are never all held at once.

    Raises:
        ValueError: the reference does not match the windows, or NaN/Inf logits.
    """
    _check_windows(windows, batch_size)
    if logits_ref.shape[:2] != windows.shape:
        raise ValueError(
            f"reference logits {tuple(logits_ref.shape)} do not match windows "
            f"{tuple(windows.shape)}"
        )
    total = 0.0
    with torch.inference_mode():
        for i in range(0, windows.shape[0], batch_size):
            logits = window_logits(model, windows[i : i + batch_size]).cpu()
            total += kl_divergence(logits_ref[i : i + batch_size], logits) * logits.shape[0]
    return total / windows.shape[0]


def _check_windows(windows: torch.Tensor, batch_size: int) -> None:
    check_positive_int("batch_size", batch_size)
    if windows.ndim != 2 or windows.dtype != torch.long or windows.shape[0] == 0:
        raise ValueError(
            f"windows must be a non-empty int64 tensor [n, seqlen], got {windows.dtype} "
            f"{tuple(windows.shape)}"
        )
