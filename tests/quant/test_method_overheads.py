"""A method declares what it adds to each linear layer (`Method.overhead`), as data the
performance model and the bits count read: LQER's two low-rank GEMMs and their factors."""

from __future__ import annotations

import pytest
import torch

from quarch.formats import Format
from quarch.perf import ExtraGemm, Overhead
from quarch.quant import METHODS, LayerCalib, get_method


def test_lqer_declares_its_low_rank_gemms() -> None:
    overhead = get_method("lqer").overhead_of({"rank": 8, "lowrank_format": "fp8_e4m3"})
    assert overhead == Overhead(
        gemms=(
            ExtraGemm(name="lowrank_a", k="in", n=8, weight_format="fp8_e4m3"),
            ExtraGemm(name="lowrank_b", k=8, n="out", weight_format="fp8_e4m3"),
        )
    )
    # A [in, r] and B [r, out] at one byte each
    assert overhead.weight_bytes(576, 1536) == 8 * (576 + 1536)


def test_declared_bytes_match_what_the_method_stores() -> None:
    torch.manual_seed(0)
    w, x = torch.randn(48, 64), torch.randn(256, 64)
    params = {"rank": 4, "lowrank_format": "bf16"}
    result = get_method("lqer")(w, Format.parse("int4_g32"), LayerCalib.from_inputs(x), **params)
    assert result.lowrank is not None
    stored = sum(t.numel() for t in result.lowrank) * 2  # bf16
    overhead = get_method("lqer").overhead_of(params)
    assert overhead is not None and overhead.weight_bytes(64, 48) == stored


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_without_stored_extras_declare_none(name: str) -> None:
    overhead = get_method(name).overhead_of()
    assert (overhead is not None) == (name == "lqer")


def test_overhead_params_are_validated() -> None:
    with pytest.raises(ValueError, match="rank"):
        get_method("lqer").overhead_of({"rank": 0})
