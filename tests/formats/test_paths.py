"""The fast rounding paths (IEEE addition, torch casts, magnitude tables) agree bit for bit with
the generic integer implementation, on every fp16 value, every bf16 pattern and random floats."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from quarch.formats import Format, Rounding, RoundMode, _minifloat

ELEMENTS = [
    "fp8_e4m3",
    "fp8_e5m2",
    "e4m3fnuz",
    "e5m2fnuz",
    "e3m4",
    "e4m3",
    "fp6_e3m2",
    "fp6_e2m3",
    "fp4_e2m1",
    "bf16",
    "fp16",
    "e5m3fin",
    "e3m2fin_nosub",
]


def _inputs() -> torch.Tensor:
    fp16 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    bf16 = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)
    rng = np.random.default_rng(0)
    rand = (rng.standard_normal(20000) * np.exp(rng.uniform(-20, 20, 20000))).astype(np.float32)
    return torch.from_numpy(np.concatenate([fp16, bf16, rand]))


X = _inputs()[::3].contiguous()  # a third of each set keeps this fast; ties stay in


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())


@pytest.mark.parametrize("name", ELEMENTS)
@pytest.mark.parametrize("sat", [False, True])
@pytest.mark.parametrize(
    "mode", [RoundMode.RNE, RoundMode.AWAY, RoundMode.RZ, RoundMode.RD, RoundMode.RU]
)
def test_dispatch_matches_generic(name: str, sat: bool, mode: RoundMode) -> None:
    mf = Format.parse(name).element
    assert isinstance(mf, _minifloat.Minifloat)
    mf = dataclasses.replace(mf, saturate=sat)
    r = Rounding(mode=mode)
    fast = _minifloat.cast(mf, X, r)
    slow = _minifloat.cast_generic(mf, X, r)
    bad = ~_same(fast, slow)
    assert not bad.any(), (X[bad][:5], fast[bad][:5], slow[bad][:5])


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp6_e2m3", "fp4_e2m1", "e3m2fin_nosub"])
def test_table_path_matches_generic(name: str) -> None:
    mf = Format.parse(name).element
    assert isinstance(mf, _minifloat.Minifloat)
    if not mf.subnormals:
        pytest.skip("the table path serves formats with subnormals")
    for mode in (RoundMode.RNE, RoundMode.AWAY, RoundMode.RZ, RoundMode.RD, RoundMode.RU):
        r = Rounding(mode=mode)
        assert _same(_minifloat.cast_fast(mf, X, r), _minifloat.cast_generic(mf, X, r)).all()


@pytest.mark.parametrize("name", ELEMENTS)
def test_inplace_add_path_matches_generic(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-place, chunked IEEE-addition path (what scaled formats use) on every finite input,
    saturating; small chunks so that many chunk edges, and a short last chunk, are crossed."""
    monkeypatch.setattr(_minifloat, "_CHUNK", 4093)
    mf = dataclasses.replace(Format.parse(name).element, saturate=True)
    assert isinstance(mf, _minifloat.Minifloat)
    if not _minifloat.rne_add_inplace_ok(mf):
        fnuz = mf.specials is _minifloat.Specials.FNUZ
        assert fnuz or not mf.subnormals or not _minifloat._fits_ieee_add(mf)
        return
    x = _inputs()
    x = x[torch.isfinite(x)]
    assert x.numel() > _minifloat._CHUNK
    want = _minifloat.cast_generic(mf, x, Rounding())
    got = _minifloat.cast_rne_add_(mf, x.clone())
    bad = ~_same(got, want)
    assert not bad.any(), (x[bad][:5], got[bad][:5], want[bad][:5])
    # a non-contiguous input is served too (through a contiguous copy)
    y = x[: 2 * 1000].reshape(1000, 2).t()
    assert _same(_minifloat.cast_rne_add_(mf, y.clone()), want[:2000].reshape(1000, 2).t()).all()


def test_quantize_scaled_inplace_matches_generic_cast() -> None:
    """quantize's in-place element casts (scaled minifloat and integer) give the bits of the
    allocating `cast_element` path, NaN/Inf blocks included."""
    from quarch.formats import compute_scales, quantize
    from quarch.formats._api import _scaled, cast_element
    from quarch.formats._blocks import from_blocks, to_blocks

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g) * torch.logspace(-6, 6, 256)
    x[3, 5], x[7, 100], x[9, 200] = float("nan"), float("inf"), float("-inf")
    x[11, :32] = 0.0
    x[12, :32] = -0.0
    names = ("mxfp4", "nvfp4", "mxfp8_e4m3", "mxfp6_e2m3", "int4_g128", "int8", "int4_g32_asym")
    for name in names:
        fmt = Format.parse(name)
        s = compute_scales(fmt, x)
        xb = to_blocks(fmt.scaling, x)
        v, mult = _scaled(xb, s)
        if s.zero_point is not None:
            zp = s.zero_point.unsqueeze(-1)
            ref = (cast_element(fmt, v + zp) - zp) * mult
        else:
            ref = cast_element(fmt, v) * mult
        want = from_blocks(fmt.scaling, ref, tuple(x.shape))
        assert _same(quantize(fmt, x), want).all(), name
