"""Uncertainty bands: how far measured values fall from predictions, from public measurements.

A band is a pair of multipliers `(low, high)` on a predicted **time**: the measured time lay
between `low · predicted` and `high · predicted` for the middle 80 % of comparable published
measurements (their 10th and 90th percentiles). Throughputs are inverse times, so a measured
throughput lies between `predicted / high` and `predicted / low`. The band is an uncertainty
statement; it never moves the point prediction.

**Where the numbers come from.** `bands.yaml` beside this module holds one band per (device
architecture, metric family), computed by `quarch validate --published --update-bands` from the
residuals of the published set's `fit` rows only (never the holdout, on which the coverage is
then checked), with its provenance: the date, the SHA-256 of the published rows it was computed
from, the quantiles, the minimum row count and how many rows each band rests on. Metric
families: `latency` (TTFT, TPOT, end-to-end latency), `throughput` (any tokens/s), `kernel`
(one timed kernel).

**Which band a prediction gets** (`band_for`), in order:

1. A Hardware file that sets `efficiency.band` itself (a device calibrated on this machine by
   `quarch calibrate` / `quarch validate --update`) keeps it: its own residuals.
2. A device with published rows, and an engine with published rows (kernel bands take no
   engine): the band of its (architecture, family) when that rests on at least `min_rows` fit
   rows, else the band of all fit rows of the family (`all`).
3. Otherwise (a device or engine with no published rows, `ideal` included, which no real stack
   is): the **envelope rule**: the lowest `low` and highest `high` over every band of the
   family, i.e. the widest error any validated class showed. The prediction says so
   (`Prediction.band_note`).
4. A family with no band at all: the device class default of `Efficiency.band`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from quarch.hardware import Hardware
from quarch.perf._efficiency import ARCHITECTURE, efficiency_for

BANDS_PATH = Path(__file__).with_name("bands.yaml")
"""The shipped band table."""

FAMILIES = ("latency", "throughput", "kernel")
"""Metric families a band is kept for."""

ALL = "all"
"""The architecture key of a family's band over all fit rows."""


@dataclass(frozen=True, kw_only=True, eq=False)  # compared and hashed by identity (a cache key)
class BandTable:
    """The band table of `bands.yaml` (see the module doc).

    Fields:
        bands: (architecture or `all`, family) -> (low, high, fit rows it rests on).
        devices, engines: the devices and engine profiles with published fit rows.
        min_rows: fewest fit rows an architecture's band needs.
        quantiles: the percentiles `low` and `high` are (10, 90).
        provenance: where the table came from (date, published rows' hash, command).
    """

    bands: Mapping[tuple[str, str], tuple[float, float, int]]
    devices: frozenset[str]
    engines: frozenset[str]
    min_rows: int
    quantiles: tuple[float, float]
    provenance: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class BandChoice:
    """The band one prediction carries for one metric family, and why it is that band."""

    family: str
    low: float
    high: float
    validated: bool
    note: str


def architecture_of(hw: Hardware) -> str:
    """The architecture key of `hw` (its catalog architecture, else its own name)."""
    return ARCHITECTURE.get(hw.name, hw.name)


@lru_cache(maxsize=4)
def load_bands(path: Path = BANDS_PATH) -> BandTable:
    """Read a band table (default: the shipped one).

    Raises:
        ValueError: a file that is not a band table (the field is named).
    """
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    return band_table_from_dict(doc, path.name)


def band_table_from_dict(doc: Any, origin: str = "<dict>") -> BandTable:
    """A `BandTable` from its YAML document (see `bands.yaml`).

    Raises:
        ValueError: a missing or malformed field, named with `origin`.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("bands"), list):
        raise ValueError(f"{origin}: expected a mapping with a 'bands' list")
    bands: dict[tuple[str, str], tuple[float, float, int]] = {}
    for i, raw in enumerate(doc["bands"]):
        if not isinstance(raw, dict):
            raise ValueError(f"{origin}: bands[{i}] is not a mapping")
        family, arch = raw.get("family"), raw.get("architecture")
        low, high, rows = raw.get("low"), raw.get("high"), raw.get("fit_rows")
        if family not in FAMILIES or not isinstance(arch, str):
            raise ValueError(f"{origin}: bands[{i}] needs family in {FAMILIES} and architecture")
        if not (isinstance(low, int | float) and isinstance(high, int | float)) or not (
            0 < low <= high and not isinstance(low, bool) and not isinstance(high, bool)
        ):
            raise ValueError(f"{origin}: bands[{i}] needs 0 < low <= high, got {low!r}, {high!r}")
        if not isinstance(rows, int) or rows < 1:
            raise ValueError(f"{origin}: bands[{i}].fit_rows must be a positive integer")
        bands[(arch, family)] = (float(low), float(high), rows)
    quantiles = doc.get("quantiles")
    if not (isinstance(quantiles, list) and len(quantiles) == 2):
        raise ValueError(f"{origin}: quantiles must be a [low, high] pair")
    return BandTable(
        bands=bands,
        devices=frozenset(_names(doc, "validated_devices", origin)),
        engines=frozenset(_names(doc, "validated_engines", origin)),
        min_rows=int(doc.get("min_rows", 1)),
        quantiles=(float(quantiles[0]), float(quantiles[1])),
        provenance={k: str(v) for k, v in dict(doc.get("provenance", {})).items()},
    )


def _names(doc: Mapping[str, Any], key: str, origin: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{origin}: {key} must be a list of names")
    return value


def band_for(hw: Hardware, engine: str, family: str, table: BandTable | None = None) -> BandChoice:
    """The band a prediction on `hw` under `engine` carries for metric `family` (module doc).

    Raises:
        ValueError: an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"band family must be one of {FAMILIES}, got {family!r}")
    return _band_for(hw, engine, family, table or load_bands())


@lru_cache(maxsize=1024)
def _band_for(hw: Hardware, engine: str, family: str, table: BandTable) -> BandChoice:
    if "band" in dict(hw.efficiency):  # calibrated on a machine: its own residuals
        low, high = efficiency_for(hw).band
        return BandChoice(
            family=family,
            low=low,
            high=high,
            validated=True,
            note=f"{hw.name}'s own calibration residuals (efficiency.band)",
        )
    q_lo, q_hi = table.quantiles
    pct = f"{q_lo:g}th-{q_hi:g}th percentile"
    missing = []
    if hw.name not in table.devices:
        missing.append(f"device {hw.name}")
    if family != "kernel" and engine not in table.engines:
        missing.append(f"engine {engine}")
    family_bands = {a: b for (a, f), b in table.bands.items() if f == family}
    if not family_bands:
        low, high = efficiency_for(hw).band
        note = f"no published {family} rows: the device class default band"
        return BandChoice(family=family, low=low, high=high, validated=False, note=note)
    if missing:
        low = min(b[0] for b in family_bands.values())
        high = max(b[1] for b in family_bands.values())
        note = (
            f"no published rows for {' and '.join(missing)}: widened to the envelope of every "
            f"validated {family} band ({pct} of fit residuals)"
        )
        return BandChoice(family=family, low=low, high=high, validated=False, note=note)
    arch = architecture_of(hw)
    key = arch if arch in family_bands and family_bands[arch][2] >= table.min_rows else ALL
    low, high, rows = family_bands[key]
    where = "all architectures" if key == ALL else key
    note = f"{pct} of {rows} published {family} fit rows ({where})"
    return BandChoice(family=family, low=low, high=high, validated=True, note=note)
