"""compare_formats: error statistics of formats accumulated over tensors."""

from __future__ import annotations

import math

import pytest
import torch

from quarch.formats import Format, FormatError, compare_formats, quantize


def _tensors() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(f"w{i}", torch.randn(32, 128, generator=gen)) for i in range(3)]


def test_rows_match_a_direct_computation() -> None:
    fmts = [Format.parse("int4_g128"), Format.parse("mxfp4")]
    rows = compare_formats(fmts, _tensors())
    assert [r.format for r in rows] == ["int4_g128", "mxfp4"]
    for fmt, row in zip(fmts, rows, strict=True):
        xs = [x.double() for _, x in _tensors()]
        diffs = [quantize(fmt, x.float()).double() - x for x in xs]
        err2 = sum(float(d.square().sum()) for d in diffs)
        sig2 = sum(float(x.square().sum()) for x in xs)
        assert isinstance(row, FormatError)
        assert row.num_tensors == 3
        assert row.num_elements == 3 * 32 * 128
        assert row.bits_per_element == fmt.bits_per_element
        assert row.mse == pytest.approx(err2 / row.num_elements, rel=1e-12)
        assert row.sqnr_db == pytest.approx(10 * math.log10(sig2 / err2), rel=1e-12)
        assert row.max_abs_error == max(float(d.abs().max()) for d in diffs)
        assert row.seconds >= 0.0


def test_exact_format_has_infinite_sqnr() -> None:
    (row,) = compare_formats([Format.parse("fp32")], _tensors())
    assert row.mse == 0.0 and row.max_abs_error == 0.0 and row.sqnr_db == math.inf


def test_a_repeated_format_is_one_row_counted_once() -> None:
    fmt = Format.parse("int8")
    (row,) = compare_formats([fmt, fmt], _tensors())
    assert row.num_tensors == 3 and row.num_elements == 3 * 32 * 128


def test_no_tensors_gives_empty_rows() -> None:
    (row,) = compare_formats([Format.parse("int8")], [])
    assert row.num_tensors == 0 and row.num_elements == 0 and math.isnan(row.mse)


def test_non_finite_tensor_is_named() -> None:
    bad = torch.tensor([[1.0, float("nan")]])
    with pytest.raises(ValueError, match="'bad'"):
        compare_formats([Format.parse("int8")], [("bad", bad)])


def test_on_tensor_sees_every_name() -> None:
    seen: list[str] = []
    compare_formats([Format.parse("int8")], _tensors(), on_tensor=seen.append)
    assert seen == ["w0", "w1", "w2"]
