"""Confidence intervals for perplexity and for paired differences of perplexity, over windows.

The unit of sampling is the **window**, not the token. The GPTQ protocol cuts the text into
non-overlapping windows that are run with no shared context; inside a window, token NLLs are
strongly correlated (one hard passage lifts many neighbouring tokens), so treating tokens as
independent would give intervals far too narrow. Windows of one text are taken as independent
draws of "a window of this kind of text", and each contributes its mean NLL per predicted token.
All windows have the same length, so the mean of the window means is exactly the protocol's
mean NLL over all predicted tokens.

**Method: a Student-t interval on the window means, exponentiated.** With `n` window means
`x_i`, mean `m` and sample standard deviation `s`, the 95 % interval of the mean NLL is
`m ± t(0.975, n−1) · s / √n`, and the perplexity interval is `exp` of its ends (exp is
monotone, so the coverage carries over). The t-interval is used rather than a bootstrap because
a study measures few windows (a bootstrap over 2-8 windows has only a handful of distinct
resamples and undercovers badly, Efron & Tibshirani, "An Introduction to the Bootstrap", 1993,
ch. 13), while the t-interval is exact for normal window means and robust to moderate skew
(window means are averages of hundreds of token NLLs, so close to normal by the central limit
theorem). Quantiles come from `scipy.stats.t`.

**Paired differences.** Two models scored on the *same* windows differ far less from window to
window than either one's NLL does: the text's difficulty cancels. The interval of a difference
is therefore the t-interval of the per-window differences `d_i = x_i − y_i` (a paired t-test,
Student 1908), and a difference is **within noise** when that interval contains 0. As a
perplexity ratio `ppl_x / ppl_y = exp(mean d)`, its interval is `exp` of the ends. One window
gives no spread: the interval is then unbounded (±inf), never a false zero width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
"""The confidence level every reported interval uses."""

METHOD = "t-interval over per-window mean NLL (paired for differences), exponentiated"


def _t_quantile(level: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def _check(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{what}: no windows")
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what}: a window value is not finite ({bad[0]!r})")
    return out


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")


@dataclass(frozen=True, kw_only=True)
class MeanInterval:
    """A mean over windows with its t-interval (nats per token).

    Fields:
        mean: mean of the window values.
        low, high: the interval's ends (±inf with one window).
        sd: sample standard deviation of the window values (nan with one window).
        n: windows.
        level: confidence level.
    """

    mean: float
    low: float
    high: float
    sd: float
    n: int
    level: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return self.high - self.mean

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def exp(self) -> tuple[float, float, float]:
        """(exp(mean), exp(low), exp(high)): a perplexity or a perplexity ratio and its ends."""
        return _exp(self.mean), _exp(self.low), _exp(self.high)


def _exp(x: float) -> float:
    return math.inf if x > 700 else math.exp(x)


def mean_interval(values: Sequence[float], level: float = CONFIDENCE) -> MeanInterval:
    """The t-interval of the mean of per-window values (see the module doc).

    Raises:
        ValueError: no values, a non-finite value, or a level outside (0, 1).
    """
    _check_level(level)
    xs = _check(values, "mean_interval")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return MeanInterval(mean=mean, low=-math.inf, high=math.inf, sd=math.nan, n=1, level=level)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = _t_quantile(level, n - 1) * sd / math.sqrt(n)
    return MeanInterval(mean=mean, low=mean - half, high=mean + half, sd=sd, n=n, level=level)


def paired_interval(
    a: Sequence[float], b: Sequence[float], level: float = CONFIDENCE
) -> MeanInterval:
    """The t-interval of the mean of `a_i − b_i` over the same windows (paired; nats).

    Raises:
        ValueError: lengths differ, no windows, or a non-finite value.
    """
    xs, ys = _check(a, "paired_interval"), _check(b, "paired_interval")
    if len(xs) != len(ys):
        raise ValueError(
            f"paired_interval: {len(xs)} and {len(ys)} windows; a paired difference needs the "
            "same windows on both sides"
        )
    return mean_interval([x - y for x, y in zip(xs, ys, strict=True)], level)


def _finite(x: float) -> float | None:
    """`x`, or None for an unbounded end (JSON has no infinity)."""
    return x if math.isfinite(x) else None


def ppl_interval(window_nll: Sequence[float], level: float = CONFIDENCE) -> dict[str, Any]:
    """A perplexity and its interval from per-window mean NLLs, as JSON-ready data:
    `{"ppl", "low", "high", "level", "windows", "method"}` (an unbounded end, with one window,
    is None)."""
    iv = mean_interval(window_nll, level)
    ppl, low, high = iv.exp()
    return {
        "ppl": ppl,
        "low": _finite(low) if iv.n > 1 else None,
        "high": _finite(high),
        "level": level,
        "windows": iv.n,
        "method": METHOD,
    }


def ratio_interval(
    window_nll: Sequence[float], reference_nll: Sequence[float], level: float = CONFIDENCE
) -> dict[str, Any]:
    """The perplexity ratio to a reference on the same windows, with its paired interval, as
    JSON-ready data: `{"ratio", "low", "high", "within_noise", "level", "windows", "method"}`
    (`ratio − 1` is the relative perplexity difference; within noise when the interval holds 1;
    an unbounded end, with one window, is None).
    """
    iv = paired_interval(window_nll, reference_nll, level)
    ratio, low, high = iv.exp()
    return {
        "ratio": ratio,
        "low": _finite(low) if iv.n > 1 else None,
        "high": _finite(high),
        "within_noise": iv.contains_zero,
        "level": level,
        "windows": iv.n,
        "method": METHOD,
    }


def windows_needed(
    sd: float, difference: float, level: float = CONFIDENCE, max_windows: int = 10_000
) -> int:
    """The fewest windows `n >= 2` whose paired t-interval half-width `t(n−1)·sd/√n` is below
    `|difference|`: how many windows separate two designs whose per-window differences have
    standard deviation `sd` and mean `difference` (nats). `max_windows` when none up to it do.

    Raises:
        ValueError: a negative or non-finite `sd`.
    """
    _check_level(level)
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"windows_needed: sd must be finite and >= 0, got {sd!r}")
    target = abs(difference)
    for n in range(2, max_windows + 1):
        if _t_quantile(level, n - 1) * sd / math.sqrt(n) < target:
            return n
    return max_windows
