"""Quantizing a model for export: quarch's own emulation, then what each layer holds.

`quantize_for_export` applies a `QuantConfig` with `quarch.quant.quantized` (the one apply path
`quarch quantize` uses), copies out the state dict of the quantized model (each quantized linear's
weight is its dequantized weight, on the format's grid) and what each layer was given, and leaves
the model as it found it. Parts of a quantized model that no checkpoint format can carry are
refused here, each with the nearest thing that can be exported:

- a model-level rotation (Hadamard) changes every weight and needs the inverse rotation of the
  activations at run time;
- a method's per-input-channel scale (AWQ, SmoothQuant in their per-layer form: the layer
  computes `(x / s) · Ŵᵀ`), which no serving engine applies at run time. Their folded form
  (`fold: true`) exports: its scales live in the norm and linear weights before each group, which
  the state dict copied here holds;
- LQER's low-rank correction `x · A · B`, an extra pair of matrices no engine multiplies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quarch.formats import Format
from quarch.quant import LayerReport, QuantConfig, QuantLinear, QuantReport, quantized


@dataclass(frozen=True, kw_only=True)
class ExportLayer:
    """One quantized layer: its dequantized weight (on `weight_format`'s grid) and formats."""

    name: str
    kind: str  # "linear" | "embedding"
    weight: torch.Tensor  # [out, in], dequantized, the model's dtype
    original: torch.Tensor | None = None  # [out, in], the float weight it was quantized from
    weight_format: Format | None
    input_format: Format | None
    method: str


@dataclass(frozen=True, kw_only=True)
class Quantized:
    """The quantized model's tensors and what each layer got (the model itself is restored)."""

    state_dict: Mapping[str, torch.Tensor]
    layers: Mapping[str, ExportLayer]
    kv: Mapping[str, tuple[Format | None, Format | None]]  # attention module -> (K, V) formats
    report: QuantReport


def _refuse_runtime_parts(name: str, module: QuantLinear) -> None:
    fmt = module.weight_format
    if module.input_scale is not None:
        fold = (
            "the same method with fold: true (one scale per q/k/v and gate/up group, folded "
            "into the norm before it), or "
            if module.method in ("awq", "smoothquant")
            else ""
        )
        raise ValueError(
            f"layer {name}: method {module.method!r} keeps a per-input-channel scale that the "
            "layer divides its input by at run time; no serving engine applies it, so it cannot "
            f"be exported. Nearest exportable: {fold}weights {fmt} with method rtn or gptq"
        )
    if module.rank:
        raise ValueError(
            f"layer {name}: method {module.method!r} adds a low-rank correction (rank "
            f"{module.rank}) that no checkpoint format carries. Nearest exportable: weights "
            f"{fmt} without the correction (method rtn or gptq)"
        )


def _layer(name: str, module: nn.Module, rows: Mapping[str, LayerReport]) -> ExportLayer | None:
    if isinstance(module, QuantLinear):
        _refuse_runtime_parts(name, module)
        if module.weight_format is None and module.input_format is None:
            return None
        return ExportLayer(
            name=name,
            kind="linear",
            weight=module.weight.detach(),
            weight_format=module.weight_format,
            input_format=module.input_format,
            method=module.method,
        )
    row = rows.get(name)
    if isinstance(module, nn.Embedding) and row is not None and row.weight_format is not None:
        return ExportLayer(
            name=name,
            kind="embedding",
            weight=module.weight.detach(),
            weight_format=Format.parse(row.weight_format),
            input_format=None,
            method=row.method or "rtn",
        )
    return None


def quantize_for_export(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> Quantized:
    """Quantize `model` as `config` says and return its tensors; the model is left unchanged.

    Raises:
        ValueError: the config has a rotation, a layer keeps a run-time input scale or a
            low-rank correction (each message names the nearest exportable choice), or the
            config itself is invalid for this model (from `quarch.quant`).
    """
    if config.rotation is not None:
        raise ValueError(
            f"rotation {config.rotation!r} rotates every weight and needs the inverse rotation of "
            "the activations at run time, which no checkpoint format expresses; nearest "
            "exportable: the same config without `rotation`"
        )
    with quantized(model, config, calib_windows=calib_windows) as report:
        rows = {r.name: r for r in report.layers}
        layers: dict[str, ExportLayer] = {}
        for name, module in model.named_modules():
            layer = _layer(name, module, rows)
            if layer is not None:
                layers[name] = layer
        kv = {
            name: (formats.k, formats.v)
            for name, m in model.named_modules()
            if (formats := getattr(m, "quarch_kv", None)) is not None
        }
        state = {k: v.detach() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())  # the float model again
    layers = {
        n: dataclasses.replace(lay, original=modules[n].weight.detach())
        for n, lay in layers.items()
    }
    return Quantized(state_dict=state, layers=layers, kv=kv, report=report)


def kv_formats_by_role(kv: Mapping[str, tuple[Format | None, Format | None]]) -> dict[str, Any]:
    """{"k_cache": {format: count}, "v_cache": {...}} over the attention modules."""
    out: dict[str, dict[str, int]] = {"k_cache": {}, "v_cache": {}}
    for k, v in kv.values():
        for role, f in (("k_cache", k), ("v_cache", v)):
            key = "float" if f is None else str(f)
            out[role][key] = out[role].get(key, 0) + 1
    return out
