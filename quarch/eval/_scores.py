"""Next-token scores from logits: negative log-likelihood and KL divergence, computed one way.

Every accuracy number quarch reports (perplexity, the sensitivity tables of `quarch.quant`, the
proxy of `quarch.search`) comes from these functions:

- NLL of a predicted token: `-log_softmax(logits)[target]` in float32, summed over tokens in
  float64 (no drift over long texts).
- KL(P_ref || P) of one position: `sum_v P_ref(v) (log P_ref(v) - log P(v))` in float32, summed
  (or averaged) over positions in float64.

Token `t` of a window predicts token `t + 1`, so a window `[seqlen]` has `seqlen - 1` predicted
positions; the logits of its last position predict nothing that is scored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _token_nll(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token NLL `[positions]` from log-probabilities `[positions, vocab]`."""
    # F.cross_entropy(logits) is exactly nll_loss(log_softmax(logits)): the same bits.
    return F.nll_loss(log_probs, targets.to(log_probs.device), reduction="none")


def _position_kl(log_p_ref: torch.Tensor, p_ref: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """Per-position KL `[positions]`; every argument `[positions, vocab]`. Overwrites `log_p`
    (in place, no temporaries: `-log_p + log_p_ref` is exactly `log_p_ref - log_p`). A KL is
    never negative; float32 rounding of two near-equal distributions can give -1e-9, so each
    position is clamped at 0."""
    return log_p.neg_().add_(log_p_ref).mul_(p_ref).sum(dim=-1).clamp_min_(0.0)


def _predicted_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """float32 log-probabilities of the predicting positions of `[b, seqlen, vocab]` logits, as
    `[b * (seqlen - 1), vocab]`."""
    vocab = logits.shape[-1]
    return F.log_softmax(logits[:, :-1].reshape(-1, vocab).float(), dim=-1)


def window_nll_sum(logits: torch.Tensor, windows: torch.Tensor) -> float:
    """Sum of the NLLs (nats) of tokens 1.. of each window given the ones before.

    Args:
        logits: `[b, seqlen, vocab]`.
        windows: the token ids `[b, seqlen]` the logits were computed on.
    """
    return float(token_nlls(logits, windows).sum())


def token_nlls(logits: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The NLL (nats) of every predicted token, float64 `[b, seqlen - 1]`.

    Args:
        logits: `[b, seqlen, vocab]`.
        windows: the token ids `[b, seqlen]` the logits were computed on.
    """
    targets = windows[:, 1:].reshape(-1)  # [b * (seqlen - 1)]
    per_token = _token_nll(_predicted_log_probs(logits), targets)
    return per_token.double().reshape(windows.shape[0], windows.shape[1] - 1)


def kl_divergence(logits_ref: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over positions of KL(softmax(logits_ref) || softmax(logits)), in nats.

    Args:
        logits_ref: reference logits `[..., vocab]`.
        logits: logits of the model compared, same shape.

    Raises:
        ValueError: the shapes differ or either holds NaN/Inf.
    """
    if logits_ref.shape != logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_ref.shape)} vs {tuple(logits.shape)}")
    if not (torch.isfinite(logits_ref).all() and torch.isfinite(logits).all()):
        raise ValueError("logits contain NaN or Inf; KL divergence is undefined")
    vocab = logits.shape[-1]
    log_p_ref = F.log_softmax(logits_ref.reshape(-1, vocab).float(), dim=-1)  # [positions, vocab]
    log_p = F.log_softmax(logits.reshape(-1, vocab).float(), dim=-1)
    per_position = _position_kl(log_p_ref, log_p_ref.exp(), log_p)  # [positions]
    return float(per_position.double().mean())


class NextTokenReference:
    """A reference model's next-token distributions on fixed windows, to score other logits on.

    Holds the reference's float32 log-probabilities and probabilities of every predicted
    position (memory: `2 * b * (seqlen - 1) * vocab * 4` bytes), so scoring a compared model's
    logits costs one log-softmax. `scores(logits)` gives the sums of NLL and KL over the
    predicted positions, bit for bit what `window_nll_sum` and `kl_divergence` compute.
    """

    def __init__(self, logits_ref: torch.Tensor, windows: torch.Tensor) -> None:
        """logits_ref: `[b, seqlen, vocab]`; windows: the token ids `[b, seqlen]`.

        Raises:
            ValueError: the shapes do not match, or the reference holds NaN/Inf.
        """
        if logits_ref.ndim != 3 or logits_ref.shape[:2] != windows.shape:
            raise ValueError(
                f"reference logits {tuple(logits_ref.shape)} do not match windows "
                f"{tuple(windows.shape)}"
            )
        if not bool(torch.isfinite(logits_ref).all()):
            raise ValueError("reference logits contain NaN or Inf")
        self.log_probs = _predicted_log_probs(logits_ref)  # [positions, vocab]
        self.probs = self.log_probs.exp()
        self.targets = windows[:, 1:].reshape(-1).to(self.log_probs.device)  # [positions]
        self.shape = tuple(logits_ref.shape)

    @property
    def num_tokens(self) -> int:
        """Predicted positions (`b * (seqlen - 1)`)."""
        return int(self.targets.numel())

    def scores(self, logits: torch.Tensor) -> tuple[float, float]:
        """(sum of NLL, sum of KL(reference || compared)) over the predicted positions, nats.

        Raises:
            ValueError: the logits do not have the reference's shape, or give NaN/Inf scores.
        """
        if tuple(logits.shape) != self.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match the reference {self.shape}"
            )
        log_p = _predicted_log_probs(logits.to(self.log_probs.device))
        nll = float(_token_nll(log_p, self.targets).double().sum())  # before log_p is reused
        kl = float(_position_kl(self.log_probs, self.probs, log_p).double().sum())
        if not (math.isfinite(nll) and math.isfinite(kl)):
            raise ValueError("the compared model produced NaN/Inf log-probabilities")
        return nll, kl

    def means(self, logits: torch.Tensor) -> tuple[float, float]:
        """(mean NLL, mean KL) per predicted position, nats (see `scores`)."""
        nll, kl = self.scores(logits)
        return nll / self.num_tokens, kl / self.num_tokens
