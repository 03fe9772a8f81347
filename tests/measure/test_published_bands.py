"""Bands derived from the published fit rows, and their coverage on the holdout."""

from __future__ import annotations

import pytest

from quarch.measure._published import load_published
from quarch.measure._published_bands import (
    QUANTILES,
    band_document,
    derive_bands,
    published_digest,
)
from quarch.measure._published_check import coverage_lines, validate_published
from quarch.perf._bands import load_bands


@pytest.fixture(scope="module")
def fit_results():  # type: ignore[no-untyped-def]
    return validate_published("fit").results


def test_shipped_bands_are_derived_from_todays_fit_rows(fit_results) -> None:  # type: ignore[no-untyped-def]
    rows = load_published()
    doc = band_document(fit_results, rows)
    table = load_bands()
    shipped = {k: v for k, v in table.bands.items()}
    derived = {
        (b["architecture"], b["family"]): (b["low"], b["high"], b["fit_rows"]) for b in doc["bands"]
    }
    hint = "stale: run `quarch validate --published --update-bands`"
    assert table.provenance["published_sha256"] == published_digest(rows), hint
    assert shipped == derived, hint
    assert table.devices == frozenset(doc["validated_devices"])
    assert table.quantiles == QUANTILES


def test_bands_never_come_from_holdout_rows() -> None:
    holdout = validate_published("holdout").results[:3]
    with pytest.raises(ValueError, match="holdout row"):
        derive_bands(holdout)


def test_holdout_coverage_is_reported_and_in_target() -> None:
    report = validate_published("holdout")
    inside = sum(r.in_band for r in report.results) / len(report.results)
    (line,) = coverage_lines(report)
    assert f"{inside:.0%}" in line and "holdout" in line
    assert 0.70 <= inside <= 0.90  # the target for a 10th-90th percentile band
