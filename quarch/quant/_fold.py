"""Folding AWQ and SmoothQuant scales into the model, one scale per group of layers.

A per-input-channel scale `s` on a linear layer (`(x / s) @ (W·diag(s))ᵀ`) is free in a real
engine only when `x / s` is produced by the operation before it. The reference implementations
do exactly that, with one scale per group of layers that read the same input:

- **into a norm**: `input_layernorm` feeds q, k and v; `post_attention_layernorm` feeds gate and
  up. The norm's weight is divided by `s` (its output becomes `x / s`) and every layer of the
  group has its input columns multiplied by `s` (llm-awq `auto_scale.scale_ln_fcs`;
  SmoothQuant `smooth.smooth_ln_fcs_llama_like`).
- **into a linear** (AWQ only): `v_proj` -> `o_proj` and `up_proj` -> `down_proj`: the rows of the
  first are divided by `s` (so the second's input is divided by `s`) and the second's columns
  multiplied by it (llm-awq `scale_fc_fc`). `v_proj` -> `o_proj` needs one value row per
  `o_proj` input, so llm-awq scales it only when `v_proj` and `o_proj` have the same shape (no
  grouped-query attention); so does this module. SmoothQuant's `smooth_lm` smooths only the
  norm groups, and so does this module.

The scale of a group is searched as the per-layer method searches it, on the group's shared
input: AWQ picks α on its grid to minimise the summed output error (AWQ §3.2 eq. 4) of the
group's layers (llm-awq measures the loss at the output of the enclosing attention or MLP
module instead), SmoothQuant uses eq. 4 with max|W_j| over the group's concatenated weights
(as `smooth_ln_fcs_llama_like`), or searches α on its grid the same way. The float model after
folding computes the same function up to rounding; each layer is then quantized by its method
with `fold=True`, which only clips and rounds the folded weight, given the statistics of its
folded input (`x / s`).

Only LLaMA-style blocks are folded (`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`,
`input_layernorm`, `post_attention_layernorm` whose output is `weight · x̂`); anything else is
refused with a message pointing at `fold: false`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quarch.formats import Format, quantize
from quarch.quant._methods_api import LayerCalib

FOLD_METHODS = ("awq", "smoothquant")


@dataclass(frozen=True, kw_only=True)
class FoldGroup:
    """Layers that read one input, and the module that produces it."""

    prev: str  # leaf path inside the block: "input_layernorm" or "self_attn.v_proj"
    members: tuple[str, ...]  # leaf paths inside the block
    into_norm: bool


GROUPS = (
    FoldGroup(
        prev="input_layernorm",
        members=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        into_norm=True,
    ),
    FoldGroup(prev="self_attn.v_proj", members=("self_attn.o_proj",), into_norm=False),
    FoldGroup(
        prev="post_attention_layernorm", members=("mlp.gate_proj", "mlp.up_proj"), into_norm=True
    ),
    FoldGroup(prev="mlp.up_proj", members=("mlp.down_proj",), into_norm=False),
)
"""The groups of a LLaMA-style block, in llm-awq's order (`auto_scale_block`)."""


@dataclass(frozen=True, kw_only=True)
class FoldSpec:
    """What the apply pipeline knows of one layer to be folded."""

    method: str
    params: Mapping[str, Any]
    weight_format: Format
    input_format: Format | None


def folds(method: str, params: Mapping[str, Any]) -> bool:
    """Whether a layer with this method and (resolved) params is folded."""
    return method in FOLD_METHODS and bool(params.get("fold", False))


def scale_calib(calib: LayerCalib, s: torch.Tensor) -> LayerCalib:
    """The statistics of the input `x / s` given those of `x`."""
    return LayerCalib(
        hessian=calib.hessian / (s[:, None] * s[None, :]),
        act_absmean=calib.act_absmean / s,
        act_absmax=calib.act_absmax / s,
        samples=calib.samples / s,
        num_tokens=calib.num_tokens,
    )


def _group_error(
    x: torch.Tensor, weights: list[torch.Tensor], specs: list[FoldSpec], s: torch.Tensor
) -> float:
    """Σ over the group's layers of ‖X Wᵀ − Q_a(X / s) Q_w(W·diag(s))ᵀ‖² (AWQ eq. 4)."""
    err = 0.0
    for w, spec in zip(weights, specs, strict=True):
        xs = x / s
        if spec.input_format is not None:
            xs = quantize(spec.input_format, xs)
        err += float((x @ w.T - xs @ quantize(spec.weight_format, w * s).T).square().sum())
    return err


def _alphas(grid: int) -> list[float]:
    return [i / (grid - 1) for i in range(grid)] if grid > 1 else [0.0]


def group_scale(
    weights: list[torch.Tensor], specs: list[FoldSpec], calib: LayerCalib
) -> torch.Tensor:
    """The one scale of a group (see the module doc); `weights` [out_i, in] float32."""
    from quarch.quant.methods._awq import awq_scales
    from quarch.quant.methods._smoothquant import smooth_scales

    method, params = specs[0].method, specs[0].params
    x = calib.samples.to(torch.float32)
    if method == "awq":
        candidates = [awq_scales(calib.act_absmean, a) for a in _alphas(int(params["grid"]))]
    else:
        w_cat = torch.cat(weights, 0)
        if not params["search"]:
            return smooth_scales(calib.act_absmax, w_cat, float(params["alpha"]))
        alphas = _alphas(int(params["grid"])) if int(params["grid"]) > 1 else [params["alpha"]]
        candidates = [smooth_scales(calib.act_absmax, w_cat, float(a)) for a in alphas]
    errors = [_group_error(x, weights, specs, s) for s in candidates]
    return candidates[min(range(len(errors)), key=errors.__getitem__)]


def _check_group(block: str, group: FoldGroup, specs: Mapping[str, FoldSpec | None]) -> bool:
    """Whether the group is folded: every member folded with one method and params; a group
    with some members folded and others not is refused (one input, one scale)."""
    found = [specs.get(f"{block}.{m}") for m in group.members]
    if all(s is None for s in found):
        return False
    if any(s is None for s in found):
        names = ", ".join(
            f"{m}: {'fold' if s else 'no fold'}" for m, s in zip(group.members, found, strict=True)
        )
        raise ValueError(
            f"{block}: {', '.join(group.members)} read one input and fold one scale; give them "
            f"all the same folded method or none ({names})"
        )
    first = found[0]
    assert first is not None
    if any(
        s is not None and (s.method, dict(s.params)) != (first.method, dict(first.params))
        for s in found
    ):
        raise ValueError(
            f"{block}: {', '.join(group.members)} fold one scale, so they need one method with "
            "the same parameters"
        )
    return True


def _check_norm(name: str, norm: nn.Module) -> None:
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        raise ValueError(f"{name}: no 1-D norm weight to fold a scale into; use fold: false")
    if "gemma" in type(norm).__name__.lower():
        raise ValueError(f"{name}: a (1 + weight) norm cannot take a folded scale; use fold: false")
    if getattr(norm, "bias", None) is not None:
        raise ValueError(
            f"{name}: folding into a norm with a bias is not supported; use fold: false"
        )


SaveFn = Callable[[str, nn.Module], None]


def fold_block(
    model: nn.Module,
    block: str,
    specs: Mapping[str, FoldSpec | None],
    calib: Mapping[str, LayerCalib],
    save: SaveFn,
) -> dict[str, LayerCalib]:
    """Fold the groups of block `block` (its module path) whose layers `specs` marks as folded.

    Every module whose weights change is replaced by a copy (norm, linear), and `save(name,
    module)` is called with the module it replaces (the apply pipeline keeps the first one of
    each name to restore). Returns the folded layers' statistics of their new input."""
    out: dict[str, LayerCalib] = {}
    for group in GROUPS:
        if not _check_group(block, group, specs):
            continue
        names = [f"{block}.{m}" for m in group.members]
        prev_name = f"{block}.{group.prev}"
        prev = model.get_submodule(prev_name)
        first = specs[names[0]]
        assert first is not None
        layers = [model.get_submodule(n) for n in names]
        if group.into_norm:
            _check_norm(prev_name, prev)
        elif first.method != "awq":
            continue  # SmoothQuant folds into the norms only (smooth_lm)
        elif not isinstance(prev, nn.Linear) or prev.out_features != _weight(layers[0]).shape[1]:
            continue  # grouped-query attention: one v row per o input is missing (llm-awq too)
        stats = out.get(names[0]) or calib.get(names[0])
        if stats is None:
            raise ValueError(f"{names[0]}: a folded method needs calibration statistics")
        weights = [_weight(m).detach().to(torch.float32) for m in layers]
        s = group_scale(weights, [specs[n] for n in names], stats)  # type: ignore[misc]
        _replace(model, prev_name, _divided(prev, s), save)
        for n, m, w in zip(names, layers, weights, strict=True):
            _replace(model, n, _with_weight(m, w * s), save)
            out[n] = scale_calib(out.get(n) or calib[n], s)
    return out


def _weight(module: nn.Module) -> torch.Tensor:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return w


def _replace(model: nn.Module, name: str, new: nn.Module, save: SaveFn) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    save(name, getattr(parent, child))
    setattr(parent, child, new)


def _with_weight(
    module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> nn.Module:
    """A copy of `module` (its other parameters shared) with `weight` (and `bias`)."""
    new = copy.copy(module)
    new._parameters = dict(module._parameters)
    old = _weight(module)
    new.weight = nn.Parameter(weight.to(old.dtype), requires_grad=False)
    if bias is not None:
        new.bias = nn.Parameter(bias.to(old.dtype), requires_grad=False)
    return new


def _divided(prev: nn.Module, s: torch.Tensor) -> nn.Module:
    """`prev` with its output divided by `s`: a norm's weight, or a linear's rows and bias."""
    w = _weight(prev).detach().to(torch.float32)
    if isinstance(prev, nn.Linear):
        bias = None if prev.bias is None else prev.bias.detach().to(torch.float32) / s
        return _with_weight(prev, w / s[:, None], bias)
    return _with_weight(prev, w / s)


def fold_pass(
    model: nn.Module,
    plan_layers: Mapping[str, Any],
    names: list[str],
    calib: Mapping[str, LayerCalib],
    originals: dict[str, Any] | None,
) -> dict[str, LayerCalib]:
    """Fold every block among `names` that has folded layers (`plan_layers`: the apply plan's
    `LayerPlan`s); returns the statistics that replace `calib` for the folded layers."""
    from quarch.quant._config import available_methods

    specs: dict[str, FoldSpec | None] = {}
    for n in names:
        lp = plan_layers[n]
        if lp.weight is None or lp.weight.method not in FOLD_METHODS:
            continue
        params = available_methods()[lp.weight.method].resolve_params(lp.weight.params)
        if folds(lp.weight.method, params):
            specs[n] = FoldSpec(
                method=lp.weight.method,
                params=params,
                weight_format=lp.weight_format,
                input_format=lp.input_format,
            )
    if not specs:
        return {}

    def save(name: str, module: nn.Module) -> None:
        if originals is not None:
            originals.setdefault(name, module)

    out: dict[str, LayerCalib] = {}
    for block in sorted({n.rsplit(".", 2)[0] for n in specs}):
        for n in specs:
            if n.rsplit(".", 2)[0] == block and n.split(".")[-2] not in ("self_attn", "mlp"):
                raise ValueError(f"{n}: folding needs LLaMA-style blocks; use fold: false")
        out.update(fold_block(model, block, specs, calib, save))
    # layers of no group (o_proj under grouped-query attention) keep their input unscaled:
    # their method only clips and rounds (llm-awq does the same)
    return out
