"""LQER: low-rank reconstruction of the quantization error, shaped by the activations.

Zhang, Cheng, Constantinides, Zhao 2024, "LQER: Low-Rank Quantization Error Reconstruction for
LLMs", arXiv:2402.02446.

With W [out, in] and y = x Wᵀ, the quantization error E = W − Q(W) costs x Eᵀ at the output.
L²QER (§3.2) approximates the activation-scaled error: with S = diag(s), s_j the mean |x_j| of
input channel j over calibration tokens,

    S Eᵀ = U Σ Vᵀ            (Eᵀ is [in, out]; U [in, k], Σ [k], V [out, k])
    A = S⁻¹ U_r   [in, r]    B = Σ_r V_rᵀ   [r, out]

so x A B ≈ x Eᵀ, with the rank-r truncation keeping the error directions that the large
activations excite. `act_stat="none"` uses S = I (the paper's plain LQER, §3.1). s is clamped at
1e-4·max(s) so S⁻¹ stays finite for channels that never fire.

A and B are stored in `lowrank_format` (default bf16), each quantized as a linear weight whose
reduction axis is the last one: Aᵀ [r, in] and Bᵀ [out, r], transposed back. The base weight
is RTN in the weight format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from quarch.formats import Format, quantize
from quarch.perf import ExtraGemm, Overhead
from quarch.quant.methods._base import LayerCalib, Method, ParamSpec, WeightResult

SCALE_FLOOR = 1e-4  # relative to max(s)


def lowrank_factors(
    error: torch.Tensor, s: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [in, r], B [r, out]) with A B the rank-r fit of Eᵀ in the S-weighted norm."""
    s = s.to(torch.float64)
    s = s.clamp(min=SCALE_FLOOR * float(s.max())) if float(s.max()) > 0 else torch.ones_like(s)
    scaled = s.unsqueeze(1) * error.to(torch.float64).T  # S Eᵀ [in, out]
    u, sigma, vh = torch.linalg.svd(scaled, full_matrices=False)
    a = u[:, :rank] / s.unsqueeze(1)  # S⁻¹ U_r
    b = sigma[:rank].unsqueeze(1) * vh[:rank]  # Σ_r V_rᵀ
    return a.to(torch.float32), b.to(torch.float32)


def lqer(
    weight: torch.Tensor,
    fmt: Format,
    calib: LayerCalib | None,
    *,
    act_format: Format | None,
    rank: int,
    lowrank_format: Format,
    act_stat: str,
) -> WeightResult:
    """RTN weight plus the low-rank correction (A, B) in `lowrank_format`."""
    del act_format  # the fit is to the float input, as in the paper
    assert calib is not None
    w = weight.detach().to(torch.float32)
    if rank > min(w.shape):
        raise ValueError(f"lqer: rank {rank} exceeds min(out, in) = {min(w.shape)}")
    q = quantize(fmt, w)
    s = calib.act_absmean if act_stat == "absmean" else torch.ones(w.shape[1])
    a, b = lowrank_factors(w - q, s, rank)
    a_q = quantize(lowrank_format, a.T.contiguous()).T.contiguous()
    b_q = quantize(lowrank_format, b.T.contiguous()).T.contiguous()
    return WeightResult(weight=q, lowrank=(a_q, b_q))


def _overhead(params: Mapping[str, Any]) -> Overhead:
    """`y += (x A) B`: two GEMMs, `[in] -> [rank]` and `[rank] -> [out]`, whose factors stay
    resident in `lowrank_format` (LQER §3, arXiv:2402.02446)."""
    rank, fmt = int(params["rank"]), str(params["lowrank_format"])
    return Overhead(
        gemms=(
            ExtraGemm(name="lowrank_a", k="in", n=rank, weight_format=fmt),
            ExtraGemm(name="lowrank_b", k=rank, n="out", weight_format=fmt),
        )
    )


LQER = Method(
    name="lqer",
    needs_calibration=True,
    params={
        "rank": ParamSpec(type=int, default=32, bounds=(1, 1 << 20), help="rank r of A·B"),
        "lowrank_format": ParamSpec(
            type=Format, default="bf16", help="format A and B are stored in"
        ),
        "act_stat": ParamSpec(
            type=str,
            default="absmean",
            choices=("absmean", "none"),
            help="per-input-channel activation scale S of the SVD (none: plain LQER)",
        ),
    },
    fn=lqer,
    overhead=_overhead,
    help="low-rank correction from the SVD of the activation-scaled error (arXiv:2402.02446)",
)
