"""Derive the uncertainty bands of `quarch/perf/bands.yaml` from the published set's fit rows.

For every `fit` row (`_published.py`; the holdout is never looked at) the residual is the time
ratio `measured / predicted` (for throughputs, inverse times: `predicted / measured`). The
band of a group of rows is the (10th, 90th) percentile of its ratios (numpy's linear
percentile). Groups: (device architecture, metric family) with at least `MIN_ROWS` fit rows,
and (`all`, family) over every fit row of a family; `quarch.perf._bands` says which band a
prediction gets. The grouping (architecture × family, at least 8 rows) was chosen by 5-fold
cross-validation on the fit rows alone (`cross_validated_coverage`); the holdout coverage is
then reported, never tuned on.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from quarch.hardware import load_hardware
from quarch.measure._published import PublishedRow, load_published
from quarch.measure._published_check import ENGINE_PROFILES, PublishedResult
from quarch.perf import BAND_ALL as ALL
from quarch.perf import BANDS_PATH, architecture_of

MIN_ROWS = 8
"""Fewest fit rows an architecture's own band rests on (else the family's `all` band)."""

QUANTILES = (10.0, 90.0)
"""Percentiles of the residuals that make a band: the middle 80 %."""


def metric_family(metric: str) -> str:
    """`latency` (TTFT, TPOT, e2e), `kernel` (kernel time) or `throughput` (any tokens/s)."""
    if metric == "kernel_time_s":
        return "kernel"
    if metric in ("ttft_s", "tpot_s", "e2e_latency_s"):
        return "latency"
    return "throughput"


def time_ratio(result: PublishedResult) -> float:
    """measured / predicted as a time (throughputs inverted)."""
    ratio = result.ratio
    return ratio if result.row.is_time else 1.0 / ratio


def group_of(row: PublishedRow) -> tuple[str, str]:
    """(architecture, metric family) of a row."""
    return architecture_of(load_hardware(row.device)), metric_family(row.metric)


def derive_bands(results: Iterable[PublishedResult]) -> list[dict[str, Any]]:
    """The band entries of `bands.yaml` from fit results (see the module doc).

    Raises:
        ValueError: a holdout row among `results` (bands are never derived from the holdout).
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r.row.split != "fit":
            raise ValueError(f"row {r.row.id!r} is a holdout row; bands come from fit rows only")
        arch, family = group_of(r.row)
        t = time_ratio(r)
        groups.setdefault((arch, family), []).append(t)
        groups.setdefault((ALL, family), []).append(t)
    out = []
    for (arch, family), ratios in sorted(groups.items()):
        if arch != ALL and len(ratios) < MIN_ROWS:
            continue
        low, high = np.percentile(np.array(ratios, dtype=np.float64), QUANTILES)
        out.append(
            {
                "architecture": arch,
                "family": family,
                "low": round(float(low), 4),
                "high": round(float(high), 4),
                "fit_rows": len(ratios),
            }
        )
    return out


def published_digest(rows: Sequence[PublishedRow]) -> str:
    """SHA-256 over every row's id, split, metric and value: pins the rows a table came from."""
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.id):
        h.update(f"{row.id}|{row.split}|{row.metric}|{row.value!r}|{row.unit}\n".encode())
    return h.hexdigest()


def band_document(fit: Sequence[PublishedResult], rows: Sequence[PublishedRow]) -> dict[str, Any]:
    """The whole `bands.yaml` document from the fit results and all published rows."""
    engines = sorted(
        {ENGINE_PROFILES[r.row.engine] for r in fit if r.row.engine in ENGINE_PROFILES}
    )
    return {
        "provenance": {
            "command": "quarch validate --published --update-bands",
            "date": datetime.date.today().isoformat(),
            "published_sha256": published_digest(rows),
            "what": "measured/predicted time ratios of the published fit rows (throughputs "
            "inverted); low/high are their 10th/90th percentiles",
        },
        "quantiles": list(QUANTILES),
        "min_rows": MIN_ROWS,
        "validated_devices": sorted({r.row.device for r in fit}),
        "validated_engines": engines,
        "bands": derive_bands(fit),
    }


def write_bands(path: Path = BANDS_PATH) -> dict[str, Any]:
    """Predict the fit rows, derive the bands and write them to `path`; returns the document."""
    from quarch.measure._published_check import validate_published

    rows = load_published()
    fit = validate_published("fit", rows).results
    doc = band_document(fit, rows)
    header = (
        "# Uncertainty bands of quarch predictions, derived from the published set's fit rows.\n"
        "# Generated by `quarch validate --published --update-bands`; do not edit by hand.\n"
        "# See quarch/perf/_bands.py (which band a prediction gets) and\n"
        "# quarch/measure/_published_bands.py (how they are derived).\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    from quarch.perf import load_bands

    load_bands.cache_clear()
    return doc


def cross_validated_coverage(
    results: Sequence[PublishedResult], folds: int = 5
) -> Mapping[str, float]:
    """Band coverage of k-fold cross-validation within fit rows (bands from k−1 folds, coverage
    on the rest; the fold of a row by SHA-256 of `cv` + its id), overall and per family."""
    hits: dict[str, list[bool]] = {}
    for i in range(folds):
        train = [r for r in results if _fold(r.row.id, folds) != i]
        test = [r for r in results if _fold(r.row.id, folds) == i]
        bands = {(b["architecture"], b["family"]): b for b in derive_bands(train)}
        for r in test:
            arch, family = group_of(r.row)
            band = bands.get((arch, family)) or bands.get((ALL, family))
            inside = band is not None and band["low"] <= time_ratio(r) <= band["high"]
            hits.setdefault(family, []).append(inside)
            hits.setdefault("all", []).append(inside)
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


def _fold(row_id: str, folds: int) -> int:
    return int(hashlib.sha256(f"cv{row_id}".encode()).hexdigest()[:8], 16) % folds
