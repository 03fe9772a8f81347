"""One scoring engine: NLL and KL from logits, against written-out references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from quarch.eval import NextTokenReference, kl_divergence, mean_nll, window_nll_sum
from quarch.models import LoadedModel


def _logits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(3, 20, 50, generator=gen) * 3  # [b, seqlen, vocab]
    other = ref + 0.5 * torch.randn(ref.shape, generator=gen)
    windows = torch.randint(0, 50, (3, 20), generator=gen)
    return ref, other, windows


def test_window_nll_sum_is_cross_entropy_summed_in_float64() -> None:
    ref, _, windows = _logits(0)
    per_token = F.cross_entropy(
        ref[:, :-1].reshape(-1, 50), windows[:, 1:].reshape(-1), reduction="none"
    )
    assert window_nll_sum(ref, windows) == float(per_token.double().sum())


def test_reference_scores_are_the_engines_nll_and_kl() -> None:
    ref, other, windows = _logits(1)
    reference = NextTokenReference(ref, windows)
    assert reference.num_tokens == 3 * 19
    nll, kl = reference.scores(other)
    assert nll == window_nll_sum(other, windows)  # bit for bit
    kl_mean = kl_divergence(ref[:, :-1], other[:, :-1])
    assert kl == pytest.approx(kl_mean * 57, rel=1e-12)
    p = torch.softmax(ref[:, :-1].double(), -1)
    exact = (p * (p.log() - torch.log_softmax(other[:, :-1].double(), -1))).sum()
    assert kl == pytest.approx(float(exact), rel=1e-5)
    assert reference.scores(ref)[1] == pytest.approx(0.0, abs=1e-5)
    assert reference.means(other) == (nll / 57, kl / 57)


def test_reference_refuses_bad_shapes_and_values() -> None:
    ref, other, windows = _logits(2)
    with pytest.raises(ValueError, match="do not match windows"):
        NextTokenReference(ref, windows[:, :5])
    with pytest.raises(ValueError, match="NaN or Inf"):
        NextTokenReference(ref.clone().fill_(float("nan")), windows)
    reference = NextTokenReference(ref, windows)
    with pytest.raises(ValueError, match="do not match the reference"):
        reference.scores(other[:2])
    with pytest.raises(ValueError, match="NaN/Inf"):
        reference.scores(other.clone().fill_(float("inf")))


def test_mean_nll_is_the_perplexity_protocol(tiny: LoadedModel) -> None:
    windows = torch.randint(0, 200, (3, 32), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        logits = tiny.model(input_ids=windows, use_cache=False).logits.float()
    expected = window_nll_sum(logits, windows) / (3 * 31)
    assert mean_nll(tiny.model, windows, batch_size=3) == pytest.approx(expected, rel=1e-6)
    assert mean_nll(tiny.model, windows) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        mean_nll(tiny.model, windows, batch_size=0)
