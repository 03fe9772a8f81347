"""AWQ: activation-aware per-input-channel scaling, searched with the target format.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight
Quantization for LLM Compression and Acceleration", arXiv:2306.00978.

§3.2: scaling input channel j of W up by s_j and its input down by s_j leaves the float layer
unchanged, and shrinks the relative rounding error of the salient channels (those with large
activations). The scales are s = s_X^α with s_X the mean |x_j| over calibration tokens (eq. 5),
normalised here by sqrt(max·min) as the authors' code does, and α is chosen on a grid over [0, 1]
to minimise the layer-output error ‖X Wᵀ − (X/s) Q(W·diag(s))ᵀ‖² on calibration samples (eq. 4).
α = 0 gives s = 1, plain RTN, so the search never does worse than RTN on its own samples.

Two forms (`fold`):

- `fold: false` (the default): the per-layer form. Each linear gets its own s, applied to its
  input at run time (`WeightResult.input_scale`). Any subset of layers of any model can take it,
  but no serving engine divides a layer's input by a per-channel vector, so it cannot be
  exported to compressed-tensors or GGUF.
- `fold: true`: the deployable form of the reference implementation (llm-awq `auto_scale`):
  one s per group of layers reading one input, searched on that input, and folded into the norm
  or linear before the group (`quant/_fold.py`, which `apply_config` runs per block). Called on
  one layer, the method then only clips and rounds the (already folded) weight.

The default stays per-layer so every existing result and config keeps its meaning, and because
it applies to any layer pattern; a design meant for an engine uses `fold: true` (export refuses
the per-layer form and says so). With an activation format, the search quantizes X/s as the
quantized layer will.

Weight clipping (`clip=True`, the authors' `auto_clip` step): after scaling, each (row, scale
group) of the weight is clipped to r·max|w| with r searched over 1.0, 0.95, …, 0.55 to minimise
that group's output error on the samples. It applies to formats whose scale blocks are groups or
rows along the input axis (`g{k}`, `c`); for other scalings clipping is skipped, because one
row's choice would change the scale of a block it shares with other rows.
"""

from __future__ import annotations

import math

import torch

from quarch.formats import Format, ScalingKind, compute_scales, quantize
from quarch.quant.methods._base import LayerCalib, Method, ParamSpec, WeightResult

CLIP_RATIOS = tuple(1.0 - 0.05 * i for i in range(10))  # auto_clip: max_shrink 0.5, 20-step grid
SCALE_FLOOR = 1e-4  # lower clamp of s_X^α before normalising (the authors' code)


def awq_scales(act_absmean: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = s_X^α clamped at SCALE_FLOOR, normalised so that max(s)·min(s) = 1."""
    s = act_absmean.to(torch.float32).pow(alpha).clamp(min=SCALE_FLOOR)
    return s / (s.max() * s.min()).sqrt()


def _input(x: torch.Tensor, s: torch.Tensor, act_format: Format | None) -> torch.Tensor:
    xs = x / s
    return xs if act_format is None else quantize(act_format, xs)


def awq(
    weight: torch.Tensor,
    fmt: Format,
    calib: LayerCalib | None,
    *,
    act_format: Format | None,
    grid: int,
    clip: bool,
    fold: bool,
) -> WeightResult:
    """AWQ-quantize `weight` [out, in]; returns Q(W·diag(s)) and s (fold: Q(W), s folded
    upstream already, see the module doc)."""
    assert calib is not None
    w = weight.detach().to(torch.float32)
    x = calib.samples.to(torch.float32)
    if fold:
        if clip and _clip_group_width(fmt, w.shape[1]) is not None:
            xq = x if act_format is None else quantize(act_format, x)
            return WeightResult(weight=_clipped(w, fmt, xq))
        return WeightResult(weight=quantize(fmt, w))
    ref = x @ w.T  # [n, out]
    best: tuple[float, torch.Tensor] | None = None
    alphas = [i / (grid - 1) for i in range(grid)] if grid > 1 else [0.0]
    for alpha in alphas:
        s = awq_scales(calib.act_absmean, alpha)
        err = float((ref - _input(x, s, act_format) @ quantize(fmt, w * s).T).square().sum())
        if best is None or err < best[0]:
            best = (err, s)
    assert best is not None
    s = best[1]
    ws = w * s
    if clip and _clip_group_width(fmt, w.shape[1]) is not None:
        q = _clipped(ws, fmt, _input(x, s, act_format))
    else:
        q = quantize(fmt, ws)
    return WeightResult(weight=q, input_scale=s)


def _clip_group_width(fmt: Format, in_features: int) -> int | None:
    sc = fmt.scaling
    if sc.axis % 2 != 1:
        return None
    match sc.kind:
        case ScalingKind.GROUP:
            return min(sc.block[0], in_features)  # a group never spans past the row
        case ScalingKind.CHANNEL:
            return in_features
        case _:
            return None


def _clipped(ws: torch.Tensor, fmt: Format, xs: torch.Tensor) -> torch.Tensor:
    """Q(clip(W·s)) with the clipping ratio of each (row, group) searched on inputs `xs`."""
    out, n_in = ws.shape
    k = _clip_group_width(fmt, n_in)
    assert k is not None
    groups = math.ceil(n_in / k)
    pad = groups * k - n_in
    ts = compute_scales(fmt, ws).tensor if fmt.scaling.tensor_scale else None
    amax = _grouped(ws.abs(), k, pad).amax(-1, keepdim=True)  # [out, G, 1]
    xg = _grouped(xs, k, pad)  # [n, G, k]
    best_err = torch.full((out, groups), float("inf"))
    best_q = torch.zeros(out, groups, k)
    for r in CLIP_RATIOS:
        lim = (amax * r).expand(-1, -1, k).reshape(out, -1)[:, :n_in]
        wc = torch.minimum(torch.maximum(ws, -lim), lim)
        q = quantize(fmt, wc, scales=compute_scales(fmt, wc, tensor_scale=ts))
        qg = _grouped(q, k, pad)
        err = _group_output_error(xg, _grouped(ws, k, pad) - qg)  # [out, G]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_q = torch.where(better.unsqueeze(-1), qg, best_q)
    return best_q.reshape(out, -1)[:, :n_in].contiguous()


def _grouped(t: torch.Tensor, k: int, pad: int) -> torch.Tensor:
    """[rows, in] -> [rows, G, k], zero-padding the last group."""
    if pad:
        t = torch.nn.functional.pad(t, (0, pad))
    return t.reshape(t.shape[0], -1, k)


def _group_output_error(xg: torch.Tensor, dg: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """err[o, g] = Σ_n (Σ_k x[n, g, k] · d[o, g, k])²: each group's share of the output error."""
    err = torch.zeros(dg.shape[0], dg.shape[1])
    for i in range(0, xg.shape[0], chunk):
        y = torch.einsum("ngk,ogk->ogn", xg[i : i + chunk], dg)
        err += y.square().sum(-1)
    return err


AWQ = Method(
    name="awq",
    needs_calibration=True,
    params={
        "grid": ParamSpec(
            type=int, default=20, bounds=(1, 1000), help="points of the α grid over [0, 1]"
        ),
        "clip": ParamSpec(
            type=bool,
            default=True,
            help="search a clipping ratio per (row, group) after scaling (AWQ's auto_clip)",
        ),
        "fold": ParamSpec(
            type=bool,
            default=False,
            help="one scale per group of layers, folded into the norm or linear before it "
            "(deployable; llm-awq's apply_scale) instead of a run-time scale per layer",
        ),
    },
    fn=awq,
    help="activation-aware per-input-channel scales searched over a grid (arXiv:2306.00978)",
)
