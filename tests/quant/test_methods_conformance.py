"""Every registered method keeps the method contract, like the format invariants every format
keeps: shapes, dtype, values on the format's grid, determinism, and clear bad-parameter errors.

A new method added to `METHODS` runs through all of this without a line here; where a check
needs a value for one of its parameters, it is derived from the method's `ParamSpec`s.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from quarch.formats import Format, Pow2Scale, ScalingKind, cast_element, quantize
from quarch.quant import METHODS, LayerCalib, Method, ParamSpec, WeightResult

# One format of each family: integer groups with a float scale, an OCP MX float with a
# power-of-two block scale, and an unscaled 8-bit float.
FORMATS = ["int4_g128", "mxfp4", "fp8_e4m3"]
OUT, IN = 32, 256  # two int4_g128 groups and eight mxfp4 blocks per row


def _inputs() -> tuple[torch.Tensor, LayerCalib]:
    """A weight and calibration inputs with correlated channels and a few large ones."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(OUT, IN, generator=g) * 0.05
    mix = torch.randn(IN, IN, generator=g) / IN**0.5 + torch.eye(IN)
    x = torch.randn(384, IN, generator=g) @ mix
    x[:, :4] *= 10.0
    return w, LayerCalib.from_inputs(x, max_samples=128)


WEIGHT, CALIB = _inputs()


def _run(method: Method, fmt: str, weight: torch.Tensor = WEIGHT) -> WeightResult:
    calib = CALIB if method.needs_calibration else None
    return method(weight, Format.parse(fmt), calib)


def _element_values(fmt: Format) -> torch.Tensor:
    """The positive values of the format's element grid (those up to its max)."""
    probe = torch.linspace(0.0, float(fmt.element.max), 20001)
    values = torch.unique(cast_element(fmt, probe))
    return values[values > 0]


def _on_grid(fmt: Format, w: torch.Tensor) -> bool:
    """Whether `w` [out, in] is representable in `fmt`: unscaled formats quantize it to itself;
    for group scaling along the input axis, each (row, group) is element values times one scale
    (some element value e is the group's largest magnitude, so the scale is amax / e), and a
    power-of-two scale format asks that scale to be a power of two."""
    w = w.to(torch.float32)
    kind = fmt.scaling.kind
    if kind == ScalingKind.NONE:
        return torch.equal(quantize(fmt, w), w)
    assert kind == ScalingKind.GROUP and fmt.scaling.axis % 2 == 1, fmt
    groups = w.reshape(-1, fmt.scaling.block[0])  # [rows * groups, k]
    amax = groups.abs().amax(-1, keepdim=True)
    on = (amax == 0).squeeze(-1)
    pow2 = isinstance(fmt.scaling.scale_format, Pow2Scale)
    for e in _element_values(fmt):
        scale = amax / e
        scaled = groups / scale
        fits = torch.isclose(cast_element(fmt, scaled), scaled, rtol=1e-5, atol=1e-6).all(-1)
        if pow2:  # an E8M0 scale is a power of two
            exponent = torch.log2(scale.squeeze(-1))
            fits &= torch.isclose(exponent, exponent.round(), atol=1e-6)
        on |= fits
    return bool(on.all())


def test_the_grid_check_can_fail() -> None:
    """The grid check is not vacuous: a float weight is off every grid, RTN of it is on."""
    for name in FORMATS:
        fmt = Format.parse(name)
        assert not _on_grid(fmt, WEIGHT), name
        assert _on_grid(fmt, quantize(fmt, WEIGHT)), name
        nudged = quantize(fmt, WEIGHT)
        nudged[0, 0] += 1e-3 * float(nudged.abs().max())
        assert not _on_grid(fmt, nudged), name
    # 1.5 × an MXFP4 block is FP4 values times a scale that is no power of two
    mx = Format.parse("mxfp4")
    assert not _on_grid(mx, 1.5 * quantize(mx, WEIGHT))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_shapes_dtype_and_grid(name: str, fmt: str) -> None:
    method = METHODS[name]
    before = WEIGHT.clone()
    result = _run(method, fmt)
    assert torch.equal(WEIGHT, before), "the method changed its input weight"
    assert result.weight.shape == (OUT, IN)
    assert result.weight.dtype == torch.float32
    assert bool(torch.isfinite(result.weight).all())
    if result.input_scale is not None:
        s = result.input_scale
        assert s.shape == (IN,) and s.dtype == torch.float32
        assert bool((s > 0).all() & torch.isfinite(s).all())
    if result.lowrank is not None:
        a, b = result.lowrank
        assert a.dim() == 2 and b.dim() == 2
        assert a.shape[0] == IN and b.shape[1] == OUT and a.shape[1] == b.shape[0]
        assert a.dtype == b.dtype == torch.float32
        low = method.resolve_params().get("lowrank_format")
        if isinstance(low, Format):  # each factor is stored in that format
            assert _on_grid(low, a.T) and _on_grid(low, b.T)
    assert _on_grid(Format.parse(fmt), result.weight), f"{name} left {fmt}'s grid"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_bf16_weight_gives_the_same_float32_result(name: str) -> None:
    method = METHODS[name]
    bf16 = WEIGHT.to(torch.bfloat16)
    from_bf16 = _run(method, "int4_g128", bf16)
    from_f32 = _run(method, "int4_g128", bf16.to(torch.float32))
    assert from_bf16.weight.dtype == torch.float32
    assert torch.equal(from_bf16.weight, from_f32.weight)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_deterministic(name: str) -> None:
    method = METHODS[name]
    first, second = _run(method, "mxfp4"), _run(method, "mxfp4")
    assert torch.equal(first.weight, second.weight)
    for x, y in ((first.input_scale, second.input_scale), (first.lowrank, second.lowrank)):
        assert (x is None) == (y is None)
    if first.input_scale is not None and second.input_scale is not None:
        assert torch.equal(first.input_scale, second.input_scale)
    if first.lowrank is not None and second.lowrank is not None:
        assert all(torch.equal(p, q) for p, q in zip(first.lowrank, second.lowrank, strict=True))


def _bad_values(spec: ParamSpec) -> list[tuple[Any, type[Exception]]]:
    """Values each parameter must refuse, with the error they must raise."""
    if spec.type is Format:
        return [("no_such_format", ValueError), (8, TypeError)]
    bad: list[tuple[Any, type[Exception]]] = [("not-a-value", TypeError)]
    if spec.type is bool:
        return [*bad, (1, TypeError)]
    if spec.type is int:
        bad.append((1.5, TypeError))
    if spec.bounds is not None:
        lo, hi = spec.bounds
        bad += [(spec.type(lo) - 1, ValueError), (spec.type(hi) + 1, ValueError)]
    if spec.choices is not None:
        bad = [("no-such-choice", ValueError), (3, TypeError)]
    return bad


_CASES = [
    (name, param, value, error)
    for name, method in sorted(METHODS.items())
    for param, spec in method.params.items()
    for value, error in _bad_values(spec)
]


@pytest.mark.parametrize(("name", "param", "value", "error"), _CASES)
def test_bad_parameters_name_themselves(
    name: str, param: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"\b{param}\b") as caught:
        METHODS[name](WEIGHT, Format.parse("int4_g128"), CALIB, **{param: value})
    assert repr(value) in str(caught.value) or name in str(caught.value)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_unknown_parameter_is_named(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter.*'no_such_param'"):
        METHODS[name](WEIGHT, Format.parse("int4_g128"), CALIB, no_such_param=1)


def test_every_method_has_parameters_checked() -> None:
    """The bad-value table covers every parameter of every method."""
    covered = {(name, param) for name, param, _, _ in _CASES}
    declared = {(name, p) for name, m in METHODS.items() for p in m.params}
    assert covered == declared
