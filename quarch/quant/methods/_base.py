"""The contract every post-training quantization method follows.

A method turns one linear layer's float weight `[out, in]` into a `WeightResult`: the dequantized
quantized weight (what the layer multiplies by), an optional per-input-channel `input_scale`
(AWQ, SmoothQuant: the layer computes `(x / input_scale) @ weight.T`) and an optional low-rank
correction (LQER: `y += (x / input_scale) @ A @ B`). Methods that look at data receive a
`LayerCalib`, the statistics of that layer's input over calibration tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from quarch.perf import Overhead

if TYPE_CHECKING:
    from quarch.formats import Format

ParamValue = int | float | bool | str


@dataclass(frozen=True, kw_only=True)
class LayerCalib:
    """Statistics at the input of one linear layer over calibration data.

    hessian: [in, in] float32, mean of x xᵀ over calibration tokens (GPTQ's H = 2 X Xᵀ / n up
        to the factor 2, which no method depends on).
    act_absmean: [in] mean |x_j| per input channel.
    act_absmax: [in] max |x_j| per input channel.
    samples: [n, in] a subsample of input rows (AWQ / SmoothQuant / LQER searches).
    num_tokens: how many tokens the statistics were taken over.
    """

    hessian: torch.Tensor
    act_absmean: torch.Tensor
    act_absmax: torch.Tensor
    samples: torch.Tensor
    num_tokens: int

    @staticmethod
    def from_inputs(x: torch.Tensor, *, max_samples: int = 512, seed: int = 0) -> LayerCalib:
        """Statistics of input rows `x` ([..., in]); `max_samples` rows kept, chosen by `seed`."""
        x2 = x.reshape(-1, x.shape[-1]).to(torch.float32)
        n = x2.shape[0]
        if n == 0:
            raise ValueError("LayerCalib.from_inputs needs at least one input row")
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(n, generator=gen)[: min(max_samples, n)].sort().values
        return LayerCalib(
            hessian=(x2.T @ x2) / n,
            act_absmean=x2.abs().mean(0),
            act_absmax=x2.abs().amax(0),
            samples=x2[keep].clone(),
            num_tokens=n,
        )


@dataclass(frozen=True, kw_only=True)
class WeightResult:
    """What a method gives back for one linear layer.

    weight: [out, in] dequantized quantized weight, already multiplied by `input_scale`.
    input_scale: [in] or None; the layer computes `(x / input_scale) @ weight.T`.
    lowrank: (A [in, r], B [r, out]) or None; the layer adds `(x / input_scale) @ A @ B`.
    """

    weight: torch.Tensor
    input_scale: torch.Tensor | None = None
    lowrank: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One method parameter: its type, default, valid range or choices, and what it does.

    type: int, float, bool, str, or `Format` (given as a format string or a `Format`).
    bounds: inclusive (low, high) for int / float parameters; None where unbounded.
    choices: the closed set of valid values for str parameters.
    """

    type: type
    default: Any
    help: str
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

    def check(self, method: str, name: str, value: Any) -> Any:
        """The validated (and, for formats, parsed) value; raises TypeError / ValueError."""
        from quarch.formats import Format

        where = f"{method} parameter {name!r}"
        if self.type is Format:
            if isinstance(value, Format):
                return value
            if not isinstance(value, str):
                raise TypeError(f"{where} must be a format string, got {value!r}")
            try:
                return Format.parse(value)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise TypeError(f"{where} must be {self.type.__name__}, got {value!r}")
        if self.bounds is not None and isinstance(value, int | float):
            lo, hi = self.bounds
            if not lo <= value <= hi:
                raise ValueError(f"{where} must be in [{lo}, {hi}], got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        return value


MethodFn = Callable[..., WeightResult]
OverheadFn = Callable[[Mapping[str, Any]], Overhead | None]
"""Resolved parameters -> what the method adds to each linear layer it quantizes."""


@dataclass(frozen=True, kw_only=True)
class Method:
    """A post-training quantization method for one linear layer's weight.

    fn(weight, fmt, calib, *, act_format, **params) -> WeightResult, where weight is [out, in],
    fmt the weight `Format`, calib a `LayerCalib` (None for methods that need none) and
    act_format the format the layer's input activations will be quantized to (or None).
    Call the method itself (`method(weight, fmt, calib, **params)`) to get parameters validated
    and defaults filled in.

    `overhead`, for a method whose layers store or compute more than the quantized weight, maps
    the resolved parameters to a `quarch.perf.Overhead` (extra GEMMs and their resident
    weights, per linear layer): the performance model and the bits count read it from here, so
    no other module knows the method by name. None: the layer is the quantized weight alone.
    """

    name: str
    needs_calibration: bool
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    fn: MethodFn
    help: str = ""
    overhead: OverheadFn | None = None

    def overhead_of(self, params: Mapping[str, Any] | None = None) -> Overhead | None:
        """The `Overhead` per linear layer under `params` (validated, defaults filled in)."""
        if self.overhead is None:
            return None
        return self.overhead(self.resolve_params(params))

    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by `params`, each validated; unknown names raise ValueError."""
        given = dict(params or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for method {self.name!r}; "
                f"valid: {sorted(self.params) or 'none'}"
            )
        out: dict[str, Any] = {}
        for name, spec in self.params.items():
            value = given.get(name, spec.default)
            out[name] = spec.check(self.name, name, value)
        return out

    def __call__(
        self,
        weight: torch.Tensor,
        fmt: Format,
        calib: LayerCalib | None = None,
        *,
        act_format: Format | None = None,
        **params: Any,
    ) -> WeightResult:
        if weight.dim() != 2:
            raise ValueError(
                f"{self.name}: weight must be [out, in], got shape {tuple(weight.shape)}"
            )
        if self.needs_calibration and calib is None:
            raise ValueError(f"method {self.name!r} needs calibration statistics (calib=None)")
        if calib is not None and calib.hessian.shape[0] != weight.shape[1]:
            raise ValueError(
                f"{self.name}: calibration has {calib.hessian.shape[0]} input channels, "
                f"weight has {weight.shape[1]}"
            )
        resolved = self.resolve_params(params)
        return self.fn(weight, fmt, calib, act_format=act_format, **resolved)


def reconstruction_error(
    weight: torch.Tensor,
    result: WeightResult,
    x: torch.Tensor,
    *,
    act_format: Format | None = None,
) -> float:
    """Relative layer-output error ‖X Wᵀ − Ŷ‖² / ‖X Wᵀ‖² of `result` on input rows `x` [n, in].

    Ŷ is what a layer built from `result` computes, with the input quantized to `act_format`
    after the input scale (as the quantized layer does) when one is given. This is the objective
    GPTQ, AWQ and LQER lower (GPTQ §3, AWQ §3.2 eq. 4, LQER §3).
    """
    from quarch.formats import quantize

    x = x.to(torch.float32)
    ref = x @ weight.to(torch.float32).T
    xs = x if result.input_scale is None else x / result.input_scale.to(torch.float32)
    if act_format is not None:
        xs = quantize(act_format, xs)
    y = xs @ result.weight.to(torch.float32).T
    if result.lowrank is not None:
        a, b = result.lowrank
        y = y + (xs @ a.to(torch.float32)) @ b.to(torch.float32)
    den = ref.square().sum().clamp(min=torch.finfo(torch.float32).tiny)
    return float((ref - y).square().sum() / den)
