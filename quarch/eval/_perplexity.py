"""Perplexity with the GPTQ protocol, the one fixed protocol quarch reports.

Protocol ("GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
Frantar et al., https://arxiv.org/abs/2210.17323, evaluation code `llama_eval`/`opt_eval`):

1. tokenize the whole (already joined) text once, with the tokenizer's default special tokens;
2. cut the token sequence into non-overlapping windows of `seqlen` tokens, starting at token 0;
   the last partial window is dropped (`PerplexityResult.dropped_tokens` says how many tokens);
3. run each window with no context from the previous one; every token of a window except its
   first is predicted, so a window contributes `seqlen - 1` predictions;
4. perplexity = exp(mean negative log-likelihood over all predicted tokens).

Every result also carries each window's mean NLL and the 95 % interval of the perplexity they
give (a t-interval over windows, exponentiated: `quarch.eval._interval` says how and why).

GPTQ's code multiplies each window's mean loss by `seqlen` and divides the sum by
`windows * seqlen`; with equal-length windows that is the same mean as here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from quarch._checks import check_positive_int
from quarch.eval._corpus import EvalText
from quarch.eval._interval import CONFIDENCE, mean_interval
from quarch.eval._scores import token_nlls

PROTOCOL = "gptq-nonoverlap"


@dataclass(frozen=True, kw_only=True)
class PerplexityResult:
    """One perplexity measurement and everything needed to reproduce it.

    Fields:
        ppl: perplexity, exp(nll).
        nll: mean negative log-likelihood per predicted token, nats.
        seqlen: window length in tokens.
        num_windows: windows evaluated.
        num_tokens: tokens predicted (`num_windows * (seqlen - 1)`).
        text_tokens: tokens in the whole tokenized text.
        dropped_tokens: tokens not evaluated: the last partial window, and windows past
            `max_windows`.
        text_sha256: sha256 of the text (UTF-8).
        text_name: where the text came from.
        wall_s: wall time of tokenization and evaluation, seconds.
        window_nll: each window's mean NLL per predicted token, in text order.
        ppl_low, ppl_high: the 95 % interval of `ppl` over windows (t-interval on the window
            means, exponentiated; ±inf-wide with one window).
        protocol: always `gptq-nonoverlap` (see this module's docstring).
    """

    ppl: float
    nll: float
    seqlen: int
    num_windows: int
    num_tokens: int
    text_tokens: int
    dropped_tokens: int
    text_sha256: str
    text_name: str
    wall_s: float
    window_nll: tuple[float, ...] = ()
    ppl_low: float = math.nan
    ppl_high: float = math.nan
    confidence: float = CONFIDENCE
    protocol: str = PROTOCOL

    @property
    def tokens_per_s(self) -> float:
        """Tokens run through the model per second of wall time."""
        return self.num_windows * self.seqlen / self.wall_s if self.wall_s > 0 else math.inf


def as_eval_text(text: str | EvalText) -> EvalText:
    """An `EvalText` as is, or a plain string wrapped with the name `<string>`."""
    if isinstance(text, EvalText):
        return text
    if isinstance(text, str):
        return EvalText(name="<string>", text=text)
    raise TypeError(f"text must be a str or an EvalText, got {type(text).__name__}")


def tokenize_text(tokenizer: Any, text: str | EvalText) -> torch.Tensor:
    """The whole text as one token sequence, `[tokens]` int64, default special tokens included."""
    body = as_eval_text(text).text
    encoded = tokenizer(body, return_attention_mask=False, verbose=False)["input_ids"]
    return torch.tensor(encoded, dtype=torch.long)


def token_windows(ids: torch.Tensor, seqlen: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping windows `[n, seqlen]` from token 0; the last partial window is dropped.

    Raises:
        ValueError: `seqlen < 2`, `max_windows < 1`, or the text is shorter than one window.
    """
    if not isinstance(seqlen, int) or seqlen < 2:
        raise ValueError(f"seqlen must be an integer >= 2, got {seqlen!r}")
    if max_windows is not None and (not isinstance(max_windows, int) or max_windows < 1):
        raise ValueError(f"max_windows must be a positive integer or None, got {max_windows!r}")
    available = ids.numel() // seqlen
    if available == 0:
        raise ValueError(
            f"the text has {ids.numel()} tokens, fewer than one window of seqlen={seqlen}"
        )
    n = available if max_windows is None else min(available, max_windows)
    return ids[: n * seqlen].reshape(n, seqlen)


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def window_logits(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """The model's logits for a batch of windows `[b, seqlen]`, as float32 `[b, seqlen, vocab]`.

    Each window is run alone, with `use_cache=False` (no context from other windows, no cache
    object built): a KV-cache format must therefore act inside attention, as `quarch.quant` does.

    Raises:
        ValueError: the logits contain NaN or Inf.
    """
    out = model(input_ids=windows.to(_model_device(model)), use_cache=False)
    logits = out.logits.float()  # [b, seqlen, vocab]
    low, high = torch.aminmax(logits)  # one pass, NaN-propagating; 10x cheaper than isfinite
    if not (torch.isfinite(low) and torch.isfinite(high)):
        bad = (~torch.isfinite(logits)).sum().item()
        raise ValueError(
            f"the model produced {bad} NaN/Inf logits on a window of {windows.shape[-1]} tokens; "
            "the model (or its quantization) is numerically broken"
        )
    return logits


def mean_nll(model: torch.nn.Module, windows: torch.Tensor, *, batch_size: int = 1) -> float:
    """Mean NLL per predicted token (nats) of `model` on token windows `[n, seqlen]`, each window
    run alone (`batch_size` windows per forward pass), as `perplexity` measures it.

    Raises:
        ValueError: a bad batch size, windows not `[n, seqlen]`, or NaN/Inf logits.
    """
    return window_nlls(model, windows, batch_size=batch_size)[0]


def window_nlls(
    model: torch.nn.Module, windows: torch.Tensor, *, batch_size: int = 1
) -> tuple[float, tuple[float, ...]]:
    """(mean NLL per predicted token, each window's mean NLL) of `model` on windows
    `[n, seqlen]`, each window run alone; the first is exactly what `mean_nll` returns.

    Raises:
        ValueError: a bad batch size, windows not `[n, seqlen]`, or NaN/Inf logits.
    """
    check_positive_int("batch_size", batch_size)
    if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [n, seqlen >= 2], got {tuple(windows.shape)}")
    with torch.inference_mode():
        total, sums = _nll_sum(model, windows, batch_size, lambda n: None)
    predicted = windows.shape[1] - 1
    return total / (windows.shape[0] * predicted), tuple(x / predicted for x in sums)


def _nll_sum(
    model: torch.nn.Module, windows: torch.Tensor, batch_size: int, advance: Callable[[int], None]
) -> tuple[float, list[float]]:
    """Sum of NLLs over the windows, and each window's sum; `batch_size` windows per pass."""
    total = 0.0
    per_window: list[float] = []
    for first in range(0, windows.shape[0], batch_size):
        batch = windows[first : first + batch_size]
        nlls = token_nlls(window_logits(model, batch), batch)  # [b, seqlen - 1] float64
        total += float(nlls.sum())
        per_window += [float(x) for x in nlls.sum(dim=1)]
        advance(batch.shape[0])
    return total, per_window


def perplexity(
    model: torch.nn.Module,
    tokenizer: Any,
    text: str | EvalText,
    *,
    seqlen: int = 512,
    max_windows: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
) -> PerplexityResult:
    """Perplexity of a causal LM on a text, GPTQ protocol (see this module's docstring).

    Args:
        model: a causal LM returning `.logits` `[batch, seq, vocab]`; it is not modified.
        tokenizer: its tokenizer.
        text: the text (an `EvalText` carries its name into the result).
        seqlen: window length in tokens.
        max_windows: evaluate only the first N windows (None: all).
        progress: show a progress bar on stderr.
        batch_size: windows per forward pass (same result, different speed and memory).

    Raises:
        ValueError: bad arguments, a text shorter than one window, or NaN/Inf logits.
    """
    check_positive_int("batch_size", batch_size)
    named = as_eval_text(text)
    start = time.perf_counter()
    ids = tokenize_text(tokenizer, named)
    windows = token_windows(ids, seqlen, max_windows)  # [n, seqlen]
    with torch.inference_mode(), _progress_bar(progress, windows.shape[0], named.name) as advance:
        nll_sum, sums = _nll_sum(model, windows, batch_size, advance)
    num_tokens = windows.shape[0] * (seqlen - 1)
    nll = nll_sum / num_tokens
    per_window = tuple(x / (seqlen - 1) for x in sums)
    _, low, high = mean_interval(per_window).exp()
    return PerplexityResult(
        ppl=math.exp(nll),
        nll=nll,
        seqlen=seqlen,
        num_windows=windows.shape[0],
        num_tokens=num_tokens,
        text_tokens=ids.numel(),
        dropped_tokens=ids.numel() - windows.numel(),
        text_sha256=named.sha256,
        text_name=named.name,
        wall_s=time.perf_counter() - start,
        window_nll=per_window,
        ppl_low=low,
        ppl_high=high,
    )


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, name: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over windows on stderr, yielding its `advance(n)`; or nothing."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"perplexity on {name}", total=total)
        yield lambda n: bar.advance(task, n)
