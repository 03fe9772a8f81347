"""GPTQ: column-by-column quantization with second-order error compensation.

Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", arXiv:2210.17323 (Algorithm 1).

For a layer with calibration inputs X, GPTQ quantizes the columns of W [out, in] one at a time
and spreads each column's rounding error over the columns not yet quantized, weighted by the
inverse Hessian of the layer-output error ‖XWᵀ − XŴᵀ‖² (H = 2 X Xᵀ; the factor 2 cancels).

Scales are whatever the format defines. The columns that share a scale (a group of `k` along the
reduction axis, a column block of a 2-D block format, the whole row for per-channel formats) get
it computed when GPTQ first reaches one of them, from their weights *as updated at that moment*;
columns of a per-column-scaled format (axis 0) are scaled on their own. With act-order the
column order is permuted but groups stay the format's contiguous groups: a group's scales are
computed when its first column in the permuted order comes up, from all its columns' current
values, including the lazy updates still pending for columns beyond the current block (computed
exactly from the errors so far). `static_groups=True` computes every group's scales from the
initial weight instead (the choice of AutoGPTQ's `static_groups`). Formats with a per-tensor scale
(NVFP4's `ts`) take it from the whole initial weight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from quarch.formats import Format, Scales, ScalingKind, compute_scales, quantize
from quarch.quant.methods._base import LayerCalib, Method, ParamSpec, WeightResult


def scale_group_width(fmt: Format, in_features: int) -> int | None:
    """How many consecutive columns of an [out, in] weight share scales in `fmt`.

    None when the format has no scales; 1 when each column's scales depend on that column alone.
    """
    sc = fmt.scaling
    axis = sc.axis % 2
    match sc.kind:
        case ScalingKind.NONE:
            return None
        case ScalingKind.TENSOR:
            return in_features
        case ScalingKind.CHANNEL:
            return in_features if axis == 1 else 1
        case ScalingKind.GROUP:
            return min(sc.block[0], in_features) if axis == 1 else 1
        case ScalingKind.BLOCK2D:
            return min(sc.block[1], in_features)


def column_format(fmt: Format) -> Format:
    """`fmt` with its column blocks narrowed to one column, to quantize a single column of an
    [out, in] weight with scales given from its whole group. The values are the same (fixed
    scales leave the quantization elementwise); only the block grid changes, so `quantize` does
    not pad the column to a full group."""
    sc = fmt.scaling
    match sc.kind:
        case ScalingKind.GROUP if sc.axis % 2 == 1:
            return dataclasses.replace(fmt, scaling=dataclasses.replace(sc, block=(1,)))
        case ScalingKind.BLOCK2D:
            return dataclasses.replace(fmt, scaling=dataclasses.replace(sc, block=(sc.block[0], 1)))
        case _:
            return fmt


@dataclass
class _GroupScales:
    """Scales of the column groups, computed on first use."""

    fmt: Format
    width: int | None
    tensor_scale: torch.Tensor | None
    cache: dict[int, Scales] = field(default_factory=dict)

    def columns(self, g: int, n: int) -> range:
        assert self.width is not None
        return range(g * self.width, min((g + 1) * self.width, n))

    def compute(self, g: int, w_group: torch.Tensor) -> None:
        self.cache[g] = compute_scales(self.fmt, w_group, tensor_scale=self.tensor_scale)


def _inverse_hessian_factor(h: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹, λ = percdamp · mean(diag H) (GPTQ §4, step 3)."""
    n = h.shape[0]
    damp = percdamp * torch.diag(h).mean()
    hd = h + damp * torch.eye(n, dtype=h.dtype)
    low, info = torch.linalg.cholesky_ex(hd)
    if int(info) != 0:
        raise ValueError(
            f"gptq: the dampened Hessian is not positive definite (percdamp={percdamp}); "
            "use a larger percdamp or more calibration tokens"
        )
    hinv = torch.cholesky_inverse(low)
    return torch.linalg.cholesky(hinv, upper=True)


def gptq(
    weight: torch.Tensor,
    fmt: Format,
    calib: LayerCalib | None,
    *,
    act_format: Format | None,
    percdamp: float,
    block_size: int,
    act_order: bool,
    static_groups: bool,
) -> WeightResult:
    """GPTQ-quantize `weight` [out, in] with the Hessian of `calib`; returns float32 weights."""
    del act_format  # GPTQ's objective uses the float inputs, as in the paper
    assert calib is not None
    w = weight.detach().to(torch.float32).clone()
    n = w.shape[1]
    h = calib.hessian.to(torch.float32).clone()
    dead = torch.diag(h) == 0  # inputs that are always zero: any weight works, choose 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    width = scale_group_width(fmt, n)
    ts = compute_scales(fmt, w).tensor if fmt.scaling.tensor_scale else None
    groups = _GroupScales(fmt=fmt, width=width, tensor_scale=ts)
    if width is not None and static_groups:
        for g in range((n + width - 1) // width):
            cols = groups.columns(g, n)
            groups.compute(g, w[:, cols.start : cols.stop])

    perm = torch.argsort(torch.diag(h), descending=True, stable=True) if act_order else None
    if perm is not None:
        w, h = w[:, perm], h[perm][:, perm]
    hinv = _inverse_hessian_factor(h, percdamp)
    q = _quantize_columns(w, hinv, groups, perm, block_size)
    if perm is not None:
        q = q[:, torch.argsort(perm)]
    return WeightResult(weight=q)


def _quantize_columns(
    w: torch.Tensor,
    hinv: torch.Tensor,
    groups: _GroupScales,
    perm: torch.Tensor | None,
    block_size: int,
) -> torch.Tensor:
    """Algorithm 1 of the paper with lazy batch updates; `w` is in processing order (mutated)."""
    n = w.shape[1]
    orig = perm.tolist() if perm is not None else list(range(n))  # processing pos -> column
    pos_of = torch.argsort(perm) if perm is not None else torch.arange(n)  # column -> pos
    q = torch.zeros_like(w)
    col_fmt = column_format(groups.fmt)
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = orig[i1 + i]
            scales = None
            if groups.width is not None:
                g = col // groups.width
                if g not in groups.cache:
                    cols = groups.columns(g, n)
                    cur = _current_values(
                        w, w1, err1[:, :i], hinv, pos_of[cols.start : cols.stop], i1, i2
                    )
                    groups.compute(g, cur)
                scales = groups.cache[g]  # a group's block grid is also each column's
            wi = w1[:, i : i + 1]
            qi = quantize(col_fmt, wi, scales=scales)
            q[:, i1 + i] = qi[:, 0]
            e = (wi[:, 0] - qi[:, 0]) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q


def _current_values(
    w: torch.Tensor,
    w1: torch.Tensor,
    err_done: torch.Tensor,
    hinv: torch.Tensor,
    pos: torch.Tensor,
    i1: int,
    i2: int,
) -> torch.Tensor:
    """Current weights of the columns at processing positions `pos` (all not yet quantized):
    from the block copy for positions in [i1, i2), else the stored column minus the lazy update
    still pending from this block's errors so far."""
    out = torch.empty(w.shape[0], len(pos), dtype=w.dtype)
    inside = (pos >= i1) & (pos < i2)
    if inside.any():
        out[:, inside] = w1[:, pos[inside] - i1]
    outside = ~inside
    if outside.any():
        p = pos[outside]
        pending = err_done @ hinv[i1 : i1 + err_done.shape[1]][:, p]
        out[:, outside] = w[:, p] - pending
    return out


GPTQ = Method(
    name="gptq",
    needs_calibration=True,
    params={
        "percdamp": ParamSpec(
            type=float,
            default=0.01,
            bounds=(0.0, 1.0),
            help="dampening added to the Hessian diagonal, as a fraction of its mean",
        ),
        "block_size": ParamSpec(
            type=int, default=128, bounds=(1, 1 << 20), help="columns per lazy batch update"
        ),
        "act_order": ParamSpec(
            type=bool,
            default=False,
            help="quantize columns in order of decreasing Hessian diagonal",
        ),
        "static_groups": ParamSpec(
            type=bool,
            default=False,
            help="compute every group's scales from the initial weight (else when first reached)",
        ),
    },
    fn=gptq,
    help="second-order error compensation, column by column (arXiv:2210.17323)",
)
