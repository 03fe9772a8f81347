"""The accuracy side of a study: the real model, its windows, and measuring designs on it.

`AccuracyLab` holds the loaded model and three fixed sets of token windows:

- **eval**: the first `eval_windows` non-overlapping windows of `eval_seqlen` tokens of the
  evaluation text (the GPTQ protocol of `quarch.eval`, cut short at N windows): the final,
  "real" perplexity of baselines and front points.
- **sensitivity**: the first `sensitivity_windows` windows of `sensitivity_seqlen` tokens of the
  calibration part of the text, which never overlaps the evaluation part: the proxy table is
  measured here, so the search never selects on the text it is finally scored on.
- **calib**: `calib_windows` seeded random windows of the calibration part, for methods that
  need calibration (GPTQ, AWQ, SmoothQuant, LQER).

Every design is applied by `quarch.quant.quantized`, the one way a config is applied, with the
lab's `WeightCache`: a round-to-nearest weight quantized once is reused by every design that
gives its layer that format. Designs with calibrated methods also get the calibration windows
(block-sequential calibration, as `quarch quantize` does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quarch.quant import DEFAULT_CACHE_BYTES, LayerCalib, WeightCache, collect_calib, quantized
from quarch.search._config import design_config
from quarch.search._layout import ModelLayout, model_layout
from quarch.search._space import Design, DesignSpace
from quarch.search._study import AccuracySettings


@dataclass(frozen=True, kw_only=True)
class Measured:
    """One perplexity measurement on the eval windows (GPTQ protocol, first N windows), with
    each window's mean NLL and the 95 % interval of the perplexity over windows
    (`quarch.eval.ppl_interval`); intervals of differences pair these window NLLs."""

    ppl: float
    nll: float
    num_windows: int
    seqlen: int
    num_tokens: int
    wall_s: float
    window_nll: tuple[float, ...] = ()
    ppl_low: float = math.nan
    ppl_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["window_nll"] = list(self.window_nll)
        for end in ("ppl_low", "ppl_high"):  # unbounded with one window; JSON has no inf
            out[end] = out[end] if math.isfinite(out[end]) else None
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Measured:
        d = dict(data)
        d["window_nll"] = tuple(float(x) for x in d.get("window_nll", ()))
        for end in ("ppl_low", "ppl_high"):
            if end in d and d[end] is None:
                d[end] = math.inf
        return Measured(**d)


def _rtn_only(space: DesignSpace, design: Design) -> bool:
    for g in space.groups:
        for part in ("attn", "mlp"):
            opt = space.weight_option(design, g.name, part)
            if opt.format is not None and (opt.method.name != "rtn" or opt.method.params):
                return False
    return True


class AccuracyLab:
    """The loaded model and its windows (see the module doc)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        settings: AccuracySettings,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        from quarch.eval import builtin_text, calibration_windows, text_from_file

        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.layout: ModelLayout = model_layout(model)
        if settings.text == "builtin":
            eval_text, calib_text = builtin_text("eval"), builtin_text("calibration")
        else:  # a user file: the first 90% of it is evaluated, the last 10% calibrates
            whole = text_from_file(settings.text)
            eval_text, calib_text = _split_text(whole)
        self.eval_text = eval_text
        self.calib_text = calib_text
        self.eval_windows = _windows(
            tokenizer, eval_text, settings.eval_seqlen, settings.eval_windows, "accuracy.eval"
        )
        self.sens_windows = _windows(
            tokenizer,
            calib_text,
            settings.sensitivity_seqlen,
            settings.sensitivity_windows,
            "accuracy.sensitivity",
        )
        self._calib_args = (
            calib_text,
            settings.calib_windows,
            settings.calib_seqlen,
            settings.seed,
        )
        self._calib: torch.Tensor | None = None
        self._calibration_windows = calibration_windows
        self.cache = WeightCache(cache_bytes)
        self._float_stats: dict[str, LayerCalib] | None = None

    # ---- windows and scores -----------------------------------------------------------

    @property
    def calib_windows(self) -> torch.Tensor:
        if self._calib is None:
            text, n, seqlen, seed = self._calib_args
            self._calib = self._calibration_windows(
                self.tokenizer, text, n=n, seqlen=seqlen, seed=seed
            )
        return self._calib

    def mean_nll(self, windows: torch.Tensor, batch: int = 4) -> float:
        """Mean NLL per predicted token over `windows` `[n, seqlen]` (nats), as
        `quarch.eval.mean_nll` measures it."""
        from quarch.eval import mean_nll

        return mean_nll(self.model, windows, batch_size=batch)

    def measure(self, space: DesignSpace, design: Design) -> Measured:
        """Real perplexity of a design on the eval windows."""
        t0 = time.perf_counter()
        from quarch.eval import mean_interval, window_nlls

        with self.applied(space, design):
            nll, per_window = window_nlls(self.model, self.eval_windows, batch_size=4)
        w = self.eval_windows
        _, low, high = mean_interval(per_window).exp()
        return Measured(
            ppl=math.exp(nll),
            nll=nll,
            num_windows=int(w.shape[0]),
            seqlen=int(w.shape[1]),
            num_tokens=int(w.shape[0] * (w.shape[1] - 1)),
            wall_s=time.perf_counter() - t0,
            window_nll=per_window,
            ppl_low=low,
            ppl_high=high,
        )

    # ---- applying designs -------------------------------------------------------------

    @contextmanager
    def applied(self, space: DesignSpace, design: Design) -> Iterator[None]:
        """The model quantized as the design says, for the duration of the block."""
        config = design_config(space, design, seed=self.settings.seed)
        windows = None if _rtn_only(space, design) else self.calib_windows
        with quantized(self.model, config, calib_windows=windows, weight_cache=self.cache):
            yield

    # ---- calibration statistics for single-slot sensitivity ----------------------------

    def float_stats(self) -> dict[str, LayerCalib]:
        """Input statistics of every block linear layer from one float pass over the
        calibration windows (each slot is then quantized alone, the rest float, as here)."""
        if self._float_stats is None:
            names = [li.name for layer in self.layout.linears for li in layer]
            windows = [w[None] for w in self.calib_windows]  # [1, seqlen] each
            self._float_stats = collect_calib(self.model, windows, names, seed=self.settings.seed)
        return self._float_stats


def _split_text(whole: Any) -> tuple[Any, Any]:
    from quarch.eval import EvalText

    cut = int(len(whole.text) * 0.9)
    cut = whole.text.rfind(" ", 0, cut) if " " in whole.text[:cut] else cut
    return (
        EvalText(name=f"{whole.name}:eval", text=whole.text[:cut]),
        EvalText(name=f"{whole.name}:calibration", text=whole.text[cut:]),
    )


def _windows(tokenizer: Any, text: Any, seqlen: int, n: int, where: str) -> torch.Tensor:
    from quarch.eval import token_windows, tokenize_text

    ids = tokenize_text(tokenizer, text)
    try:
        windows = token_windows(ids, seqlen, n)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if windows.shape[0] < n:
        raise ValueError(
            f"{where}: the text {text.name!r} has {ids.numel()} tokens, only {windows.shape[0]} "
            f"windows of {seqlen}; asked for {n}"
        )
    return windows
