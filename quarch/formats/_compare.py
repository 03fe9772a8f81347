"""Quantization error of formats over real tensors: what `quarch formats` prints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from quarch.formats._api import quantize
from quarch.formats._spec import Format


@dataclass(frozen=True, kw_only=True)
class FormatError:
    """Error of one format accumulated over tensors.

    mse: mean squared error per element; sqnr_db: 10·log10(Σx² / Σ(x−q)²) over all elements
    (inf when exact); max_abs_error: largest |x − q|; bits_per_element: storage including scales.
    """

    format: str
    bits_per_element: float
    mse: float
    sqnr_db: float
    max_abs_error: float
    num_elements: int
    num_tensors: int
    seconds: float


@dataclass
class _Acc:
    """What differs between formats, summed over tensors: squared error, worst error, time."""

    err2: float = 0.0
    max_abs: float = 0.0
    seconds: float = 0.0


def compare_formats(
    formats: list[Format],
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    on_tensor: Callable[[str], None] | None = None,
) -> list[FormatError]:
    """Quantize every tensor to every format; return one accumulated row per distinct format.

    Raises:
        ValueError: a tensor holds NaN or Inf (its name is given).
    """
    acc = {f: _Acc() for f in formats}
    sig2, n, count = 0.0, 0, 0  # the same for every format: each sees every tensor
    for name, x in tensors:
        if not torch.isfinite(x).all():
            raise ValueError(f"tensor {name!r} holds NaN or Inf; quantization error is undefined")
        xd = x.double()
        sig2 += float(xd.square().sum())
        n += x.numel()
        count += 1
        for fmt, a in acc.items():
            start = time.perf_counter()
            q = quantize(fmt, x)
            a.seconds += time.perf_counter() - start
            diff = q.double() - xd
            a.err2 += float(diff.square().sum())
            a.max_abs = max(a.max_abs, float(diff.abs().max()) if diff.numel() else 0.0)
        if on_tensor is not None:
            on_tensor(name)
    return [_row(f, a, sig2, n, count) for f, a in acc.items()]


def _row(fmt: Format, a: _Acc, sig2: float, n: int, count: int) -> FormatError:
    sqnr = math.inf if a.err2 == 0 else 10 * math.log10(sig2 / a.err2) if sig2 else -math.inf
    return FormatError(
        format=str(fmt),
        bits_per_element=fmt.bits_per_element,
        mse=a.err2 / n if n else math.nan,
        sqnr_db=sqnr,
        max_abs_error=a.max_abs,
        num_elements=n,
        num_tensors=count,
        seconds=a.seconds,
    )
