"""SmoothQuant: migrate activation outliers into the weights before W+A quantization.

Xiao, Lin, Seznec, Wu, Demouth, Han 2022, "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models", arXiv:2211.10438.

§4 eq. 4: per input channel j, s_j = max|X_j|^α / max|W_j|^(1−α), where max|X_j| is the
largest activation magnitude of channel j over calibration tokens and max|W_j| the largest
weight magnitude of input column j. The layer then computes (X diag(s)⁻¹)(W diag(s))ᵀ: the same
product in float, with activations flattened (easier to quantize) and weights a little less so.
α = 0.5 is the paper's default; `search=True` picks α on a grid over [0, 1] to minimise the
layer-output error on calibration samples with the activation format applied, as the paper's
per-model α tuning does by hand. Both magnitudes are clamped at 1e-5 (the authors' code).
The activation quantization itself is the quantized layer's job: it quantizes x / s.

`fold: false` (the default) is the per-layer form: each linear divides its own input by its own
s at run time. `fold: true` is the reference implementation's form (`smooth.smooth_lm`): one s
per group of layers reading one norm's output (q/k/v, gate/up), with max|W_j| over the group's
weights, folded into that norm (`quant/_fold.py`, run by `apply_config`); called on one layer
the method then only rounds the folded weight. Only the folded form can be served by an engine
(export refuses the other); the default stays per-layer so existing results keep their meaning
and any layer pattern can take the method.
"""

from __future__ import annotations

import torch

from quarch.formats import Format, quantize
from quarch.quant.methods._base import LayerCalib, Method, ParamSpec, WeightResult

MAG_FLOOR = 1e-5


def smooth_scales(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^α / max|W_j|^(1−α) (eq. 4), both magnitudes clamped at MAG_FLOOR."""
    a = act_absmax.to(torch.float32).clamp(min=MAG_FLOOR)
    wmax = weight.detach().to(torch.float32).abs().amax(0).clamp(min=MAG_FLOOR)
    return a.pow(alpha) / wmax.pow(1.0 - alpha)


def smoothquant(
    weight: torch.Tensor,
    fmt: Format,
    calib: LayerCalib | None,
    *,
    act_format: Format | None,
    alpha: float,
    search: bool,
    grid: int,
    fold: bool,
) -> WeightResult:
    """Q(W·diag(s)) and s for the given α, or for the best α of the grid when `search`
    (fold: Q(W), s folded upstream already)."""
    assert calib is not None
    w = weight.detach().to(torch.float32)
    if fold:
        return WeightResult(weight=quantize(fmt, w))
    if not search:
        s = smooth_scales(calib.act_absmax, w, alpha)
        return WeightResult(weight=quantize(fmt, w * s), input_scale=s)
    x = calib.samples.to(torch.float32)
    ref = x @ w.T
    best: tuple[float, WeightResult] | None = None
    for i in range(grid):
        a = i / (grid - 1) if grid > 1 else alpha
        s = smooth_scales(calib.act_absmax, w, a)
        q = quantize(fmt, w * s)
        xs = x / s if act_format is None else quantize(act_format, x / s)
        err = float((ref - xs @ q.T).square().sum())
        if best is None or err < best[0]:
            best = (err, WeightResult(weight=q, input_scale=s))
    assert best is not None
    return best[1]


SMOOTHQUANT = Method(
    name="smoothquant",
    needs_calibration=True,
    params={
        "alpha": ParamSpec(type=float, default=0.5, bounds=(0.0, 1.0), help="migration strength α"),
        "search": ParamSpec(
            type=bool, default=False, help="search α on a grid instead of using `alpha`"
        ),
        "grid": ParamSpec(
            type=int, default=20, bounds=(1, 1000), help="points of the α grid when searching"
        ),
        "fold": ParamSpec(
            type=bool,
            default=False,
            help="one scale per q/k/v and gate/up group, folded into the norm before it "
            "(deployable; SmoothQuant's smooth_lm) instead of a run-time scale per layer",
        ),
    },
    fn=smoothquant,
    help="activation-to-weight scale migration for W+A formats (arXiv:2211.10438)",
)
