"""Applying a `QuantConfig` to a torch model, **in place**.

`apply_config(model, config)` resolves the config against the model's module names (every rule
must match a layer), checks every weight it will quantize is finite, applies the model-level
rotation if the config names one, installs KV-cache quantization, collects calibration statistics
if a method needs them (block-sequential, see `_calib`), and replaces each `nn.Linear` to be
quantized by a `QuantLinear` holding its dequantized weight. Embedding weights (only when a rule
names them) are replaced by their quantized values; a tied LM head keeps the float copy.
The model is modified in place (no second copy of the weights is made) and a `QuantReport` is
returned. `quantized(model, config)` does the same for the duration of a `with` block.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from quarch.formats import Format
from quarch.quant._cache import WeightCache
from quarch.quant._calib import as_windows, calibrate_blockwise
from quarch.quant._config import (
    RTN,
    QuantConfig,
    Role,
    TensorSpec,
    available_methods,
    available_rotations,
)
from quarch.quant._fold import fold_pass
from quarch.quant._kv import (
    KVFormats,
    attention_modules,
    check_kv_format,
    install_kv_quant,
    remove_kv_quant,
)
from quarch.quant._linear import QuantLinear
from quarch.quant._methods_api import LayerCalib, Method, WeightResult

# ---- the plan: which layer gets what -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """One layer to quantize: its specs and their parsed formats (`weight_format`,
    `input_format`)."""

    name: str
    kind: str  # "linear" | "embedding"
    weight: TensorSpec | None
    input: TensorSpec | None
    weight_format: Format | None = None
    input_format: Format | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    layers: Mapping[str, LayerPlan]  # only layers with something to quantize
    kv: Mapping[str, KVFormats]


def _excluded_names(model: nn.Module) -> set[str]:
    """Names of the input embedding and LM head (and any other embedding table)."""
    special: list[nn.Module] = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        m = fn() if callable(fn) else None
        if isinstance(m, nn.Module):
            special.append(m)
    return {
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Embedding) or any(m is s for s in special)
    }


def plan_config(model: nn.Module, config: QuantConfig) -> Plan:
    """Resolve `config` against `model`'s module names; raises ValueError on an unmatched rule."""
    excluded = _excluded_names(model)
    modules = dict(model.named_modules())
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    embeddings = [n for n, m in modules.items() if isinstance(m, nn.Embedding)]
    attn = list(attention_modules(model))
    candidates = {
        Role.WEIGHT: linears + embeddings,
        Role.INPUT: linears,
        Role.K_CACHE: attn,
        Role.V_CACHE: attn,
    }
    for rule in config.rules:
        names = candidates[rule.role]
        if not any(rule.matches(n) for n in names):
            raise ValueError(_unmatched_message(rule.pattern, str(rule.role), names))
    layers: dict[str, LayerPlan] = {}
    for name in linears + embeddings:
        ex = name in excluded
        w = config.spec_for(name, Role.WEIGHT, excluded=ex)
        x = config.spec_for(name, Role.INPUT, excluded=ex) if name in linears else None
        if w is None and x is None:
            continue
        kind = "linear" if name in linears else "embedding"
        if kind == "embedding" and w is not None and _method(w).needs_calibration:
            raise ValueError(f"{name}: embeddings have no input activations; use method rtn")
        layers[name] = LayerPlan(
            name=name,
            kind=kind,
            weight=w,
            input=x,
            weight_format=None if w is None else w.fmt,
            input_format=None if x is None else x.fmt,
        )
    kv: dict[str, KVFormats] = {}
    for name in attn:
        k = config.spec_for(name, Role.K_CACHE)
        v = config.spec_for(name, Role.V_CACHE)
        if k is None and v is None:
            continue
        kf = None if k is None else k.fmt
        vf = None if v is None else v.fmt
        for f, role in ((kf, "k_cache"), (vf, "v_cache")):
            if f is not None:
                check_kv_format(f, where=f"{name} {role}")
        kv[name] = KVFormats(k=kf, v=vf)
    return Plan(layers=layers, kv=kv)


def _unmatched_message(pattern: str, role: str, names: list[str]) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    word = pattern.rsplit(".", 1)[-1].strip("*")
    close = difflib.get_close_matches(word, leaves, n=3)
    hint = f" did you mean {close}?" if close else ""
    return (
        f"rule {pattern!r} (role {role}) matches no layer of this model;{hint} "
        f"{role} layers look like: {names[:3] + names[-2:] if names else 'none'}"
    )


def _method(spec: TensorSpec) -> Method:
    return available_methods()[spec.method]


# ---- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LayerReport:
    """What one layer got. bits_per_weight counts scales, zero-points, an input scale and low-rank
    factors (at the compute dtype); a float weight counts at its dtype's bits."""

    name: str
    kind: str  # "linear" | "embedding" | "attention"
    weight_format: str | None = None
    method: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    input_format: str | None = None
    k_format: str | None = None
    v_format: str | None = None
    num_weights: int = 0
    bits_per_weight: float = 0.0
    time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["params"] = {k: str(v) if isinstance(v, Format) else v for k, v in self.params.items()}
        return d


@dataclass(frozen=True, kw_only=True)
class QuantReport:
    config: QuantConfig
    layers: tuple[LayerReport, ...]
    calibration: str  # the protocol used, or "none"
    calib_windows: int
    calib_tokens: int
    time_s: float

    @property
    def bits_per_weight(self) -> float:
        """Mean storage bits per weight over every linear layer of the transformer blocks (and
        the embedding / LM head where quantized), float layers at their dtype's bits."""
        n = sum(r.num_weights for r in self.layers if r.kind != "attention")
        bits = sum(r.bits_per_weight * r.num_weights for r in self.layers if r.kind != "attention")
        return bits / n if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "bits_per_weight": self.bits_per_weight,
            "calibration": self.calibration,
            "calib_windows": self.calib_windows,
            "calib_tokens": self.calib_tokens,
            "time_s": self.time_s,
            "layers": [r.to_dict() for r in self.layers],
        }


def _bits_per_weight(
    fmt: Format | None,
    weight: torch.Tensor,
    result: WeightResult | None,
    params: Mapping[str, Any],
) -> float:
    """Storage bits per weight: elements and scales, plus an input scale at the weight's dtype
    and low-rank factors at their `lowrank_format` (else the weight's dtype)."""
    dtype_bits = float(torch.finfo(weight.dtype).bits)
    if fmt is None:
        return dtype_bits
    bits = float(fmt.storage_bits(tuple(weight.shape)))
    if result is not None and result.input_scale is not None:
        bits += result.input_scale.numel() * dtype_bits
    if result is not None and result.lowrank is not None:
        lr_fmt = params.get("lowrank_format")
        lr_bits = lr_fmt.bits_per_element if isinstance(lr_fmt, Format) else dtype_bits
        bits += sum(t.numel() for t in result.lowrank) * lr_bits
    return bits / weight.numel()


# ---- applying ---------------------------------------------------------------------------------


def _check_finite(plan: Plan, modules: Mapping[str, nn.Module], cache: WeightCache | None) -> None:
    """Refuse non-finite weights; one the cache holds was checked when it was cached."""
    for name, lp in plan.layers.items():
        w = modules[name].weight
        assert isinstance(w, torch.Tensor)
        if lp.weight is None or _cached(cache, lp):
            continue
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"layer {name}: weight has NaN or Inf values; cannot quantize it")


def _cacheable(lp: LayerPlan) -> bool:
    """Whether the layer's weight is plain round-to-nearest (what a `WeightCache` holds)."""
    return lp.weight is not None and lp.weight.method == RTN and not lp.weight.params


def _cached(cache: WeightCache | None, lp: LayerPlan) -> bool:
    assert lp.weight_format is not None
    return cache is not None and _cacheable(lp) and (lp.name, lp.weight_format) in cache


def _quantize_weight(
    lp: LayerPlan,
    weight: torch.Tensor,
    calib: LayerCalib | None,
    cache: WeightCache | None,
) -> tuple[WeightResult, dict[str, Any]]:
    """The layer's quantized weight (in `weight`'s dtype) and the method's resolved params."""
    spec, fmt, name = lp.weight, lp.weight_format, lp.name
    assert spec is not None and fmt is not None
    if cache is not None and _cacheable(lp):
        return WeightResult(weight=cache.get(name, fmt, weight)), {}
    method = _method(spec)
    params = method.resolve_params(spec.params)
    if method.needs_calibration and calib is None:
        raise ValueError(f"layer {name}: method {spec.method!r} needs calibration windows")
    result = method.fn(
        weight.detach().to(torch.float32), fmt, calib, act_format=lp.input_format, **params
    )
    if not bool(torch.isfinite(result.weight).all()):
        raise ValueError(f"layer {name}: method {spec.method!r} produced NaN/Inf weights")
    return replace(result, weight=result.weight.to(weight.dtype)), params


def _replace_layer(
    model: nn.Module,
    lp: LayerPlan,
    calib: LayerCalib | None,
    originals: dict[str, Any] | None,
    cache: WeightCache | None = None,
) -> LayerReport:
    t0 = time.perf_counter()
    module = model.get_submodule(lp.name)
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    wfmt, act = lp.weight_format, lp.input_format
    result: WeightResult | None = None
    params: dict[str, Any] = {}
    if lp.weight is not None:
        result, params = _quantize_weight(lp, weight, calib, cache)
    if originals is not None:  # the first original wins (a fold pass may have replaced it)
        originals.setdefault(lp.name, module if lp.kind == "linear" else weight)
    if lp.kind == "embedding":
        assert result is not None
        module.weight = nn.Parameter(result.weight, requires_grad=False)
    else:
        bias = module.bias
        assert bias is None or isinstance(bias, torch.Tensor)
        new = QuantLinear(
            weight=weight.detach() if result is None else result.weight,
            bias=None if bias is None else bias.detach(),
            weight_format=wfmt,
            input_format=act,
            input_scale=None if result is None else result.input_scale,
            lowrank=None if result is None else result.lowrank,
            method=lp.weight.method if lp.weight is not None else "float",
        )
        _set_submodule(model, lp.name, new)
    return LayerReport(
        name=lp.name,
        kind=lp.kind,
        weight_format=None if wfmt is None else str(wfmt),
        method=None if lp.weight is None else lp.weight.method,
        params=params,
        input_format=None if act is None else str(act),
        num_weights=weight.numel(),
        bits_per_weight=_bits_per_weight(wfmt, weight, result, params),
        time_s=time.perf_counter() - t0,
    )


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _float_reports(model: nn.Module, plan: Plan) -> list[LayerReport]:
    """Linear layers of the model left in float (LM head excluded unless planned)."""
    excluded = _excluded_names(model)
    return [
        LayerReport(
            name=n,
            kind="linear",
            num_weights=m.weight.numel(),
            bits_per_weight=float(torch.finfo(m.weight.dtype).bits),
        )
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n not in plan.layers and n not in excluded
    ]


def apply_config(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
    calib: Mapping[str, LayerCalib] | None = None,
    progress: bool = True,
    weight_cache: WeightCache | None = None,
    _originals: dict[str, Any] | None = None,
) -> QuantReport:
    """Quantize `model` in place as `config` says; returns what each layer got.

    calib_windows: token windows ([n, seqlen] tensor or a list of them) for the methods that need
        calibration; statistics are then collected block-sequentially (see `_calib`).
    calib: precomputed statistics by layer name, used instead of collecting them.
    weight_cache: round-to-nearest weights are taken from (and added to) this cache; it must
        belong to this model (see `WeightCache`).
    Raises ValueError: a rule matching no layer, a non-finite weight (naming the layer), a method
        needing calibration without windows, a KV format whose scales span tokens, a rotation
        with a weight cache.
    """
    t0 = time.perf_counter()
    if weight_cache is not None and config.rotation is not None:
        raise ValueError(
            f"a weight cache holds the model's unrotated weights; rotation {config.rotation!r} "
            "changes them: apply a rotated config without weight_cache"
        )
    plan = plan_config(model, config)
    modules = dict(model.named_modules())
    _check_finite(plan, modules, weight_cache)
    needs = {
        n: lp.weight.method
        for n, lp in plan.layers.items()
        if lp.weight is not None and _method(lp.weight).needs_calibration
    }
    if needs and calib is None and calib_windows is None:
        raise ValueError(
            f"methods {sorted(set(needs.values()))} need calibration windows (calib_windows=...); "
            f"layers: {sorted(needs)[:3]} ..."
        )
    if config.rotation is not None:
        available_rotations()[config.rotation](model, seed=config.seed)
    install_kv_quant(model, plan.kv)
    reports: list[LayerReport] = []
    windows = as_windows(calib_windows) if calib_windows is not None and calib is None else []
    with _progress(progress, len(plan.layers)) as advance:

        def quantize_layers(names: list[str], stats: Mapping[str, LayerCalib]) -> None:
            # AWQ / SmoothQuant with fold=True: one scale per group, into the norm or linear
            stats = {**stats, **fold_pass(model, plan.layers, names, stats, _originals)}
            for n in names:
                lp = plan.layers[n]
                reports.append(_replace_layer(model, lp, stats.get(n), _originals, weight_cache))
                advance()

        if needs and calib is None:
            protocol = calibrate_blockwise(
                model, windows, set(needs), quantize_layers, list(plan.layers), seed=config.seed
            )
        else:
            protocol = "precomputed" if needs else "none"
            quantize_layers(list(plan.layers), calib or {})
    reports += _float_reports(model, plan)
    reports += [
        LayerReport(
            name=n,
            kind="attention",
            k_format=None if kv.k is None else str(kv.k),
            v_format=None if kv.v is None else str(kv.v),
        )
        for n, kv in plan.kv.items()
    ]
    return QuantReport(
        config=config,
        layers=tuple(reports),
        calibration=protocol,
        calib_windows=len(windows) if needs else 0,
        calib_tokens=sum(w.numel() for w in windows) if needs else 0,
        time_s=time.perf_counter() - t0,
    )


@contextmanager
def quantized(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
    calib: Mapping[str, LayerCalib] | None = None,
    weight_cache: WeightCache | None = None,
) -> Iterator[QuantReport]:
    """`apply_config` for the duration of a `with` block; the float model is restored after.

    Keeps references to the replaced float modules meanwhile. A rotation cannot be undone, so a
    config with one is refused here (apply it to a copy instead).
    """
    if config.rotation is not None:
        raise ValueError("quantized(): a rotation cannot be undone; use apply_config on a copy")
    originals: dict[str, Any] = {}
    try:
        yield apply_config(
            model,
            config,
            calib_windows=calib_windows,
            calib=calib,
            progress=False,
            weight_cache=weight_cache,
            _originals=originals,
        )
    finally:
        _restore(model, originals)


def _restore(model: nn.Module, originals: Mapping[str, Any]) -> None:
    for name, orig in originals.items():
        if isinstance(orig, nn.Module):
            _set_submodule(model, name, orig)
        else:
            model.get_submodule(name).weight = orig
    remove_kv_quant(model)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("quantizing layers", total=total)
        yield lambda: bar.advance(task)
