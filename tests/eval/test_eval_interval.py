"""Confidence intervals over windows: known answers, pairing, coverage, and the perplexity
result's window NLLs."""

from __future__ import annotations

import math
import random

import pytest

from quarch.eval import (
    mean_interval,
    paired_interval,
    perplexity,
    ppl_interval,
    ratio_interval,
    windows_needed,
)
from quarch.models import LoadedModel

TEXT = ("Perplexity is the exponential of the mean negative log-likelihood. " * 11)[:700]


def test_t_interval_known_answer() -> None:
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302652729749464
    # (Student's t table, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2)
    iv = mean_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.sd == pytest.approx(1.0)
    assert iv.half_width == pytest.approx(4.302652729749464 / math.sqrt(3), rel=1e-9)
    assert (iv.low, iv.high) == pytest.approx((2.0 - iv.half_width, 2.0 + iv.half_width))


def test_one_window_is_unbounded_not_zero_width() -> None:
    iv = mean_interval([2.5])
    assert iv.low == -math.inf and iv.high == math.inf and iv.contains_zero
    assert ppl_interval([2.5])["high"] is None  # JSON has no infinity
    assert ratio_interval([2.5], [2.0])["within_noise"] is True


def test_pairing_cancels_what_both_share() -> None:
    # window difficulty varies a lot, the difference between the two models very little
    difficulty = [2.0, 3.5, 2.7, 4.1, 3.0, 2.2]
    a = [d + 0.05 + 0.002 * i for i, d in enumerate(difficulty)]
    b = list(difficulty)
    unpaired = mean_interval([x - sum(b) / len(b) for x in a])
    paired = paired_interval(a, b)
    assert paired.half_width < unpaired.half_width / 50
    assert not paired.contains_zero
    r = ratio_interval(a, b)
    assert r["ratio"] == pytest.approx(math.exp(paired.mean))
    assert r["low"] > 1.0 and r["within_noise"] is False
    assert ratio_interval(b, b)["within_noise"] is True


def test_coverage_is_close_to_nominal() -> None:
    rng = random.Random(0)
    trials, hits = 2000, 0
    for _ in range(trials):
        iv = mean_interval([rng.gauss(1.0, 0.3) for _ in range(5)])
        hits += iv.low <= 1.0 <= iv.high
    # binomial sd at p = 0.95, 2000 draws: 0.0049; 4 sd either side
    assert abs(hits / trials - 0.95) < 0.02


def test_windows_needed_grows_with_noise_and_shrinks_with_effect() -> None:
    assert windows_needed(0.0, 0.01) == 2
    small, large = windows_needed(0.05, 0.02), windows_needed(0.1, 0.02)
    assert small < large
    n = windows_needed(0.05, 0.02)
    # the rule it states: the first n whose half-width is below the difference
    assert mean_interval([0.02 + 0.05 * s for s in _unit_sd(n)]).half_width < 0.02
    assert windows_needed(0.05, 0.04) <= n


def _unit_sd(n: int) -> list[float]:
    """n values with mean 0 and sample sd exactly 1."""
    xs = [float(i) for i in range(n)]
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return [(x - m) / sd for x in xs]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mean_interval([]), "no windows"),
        (lambda: mean_interval([1.0, math.nan]), "not finite"),
        (lambda: paired_interval([1.0, 2.0], [1.0]), "same windows"),
        (lambda: mean_interval([1.0, 2.0], level=1.5), "confidence level"),
        (lambda: windows_needed(-1.0, 0.1), "sd must be"),
    ],
)
def test_bad_input_is_named(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()


def test_perplexity_carries_window_nlls_and_its_interval(tiny: LoadedModel) -> None:
    result = perplexity(tiny.model, tiny.tokenizer, TEXT, seqlen=64, progress=False)
    assert len(result.window_nll) == result.num_windows == 10
    # equal windows: the mean of window means is the protocol's mean NLL
    assert sum(result.window_nll) / 10 == pytest.approx(result.nll, rel=1e-12)
    iv = ppl_interval(result.window_nll)
    assert (result.ppl_low, result.ppl_high) == (iv["low"], iv["high"])
    assert result.ppl_low < result.ppl < result.ppl_high
