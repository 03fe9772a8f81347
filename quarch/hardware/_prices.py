"""Rental prices of catalog devices, from `prices.yaml` (each row sourced and dated).

`load_prices()` reads every row; `default_price(device)` is the price a catalog device carries
(`Hardware.price_per_hour_usd`) when its own file names none: the **median over providers of
each provider's cheapest on-demand offer** (community-hosted, reserved and spot offers are
listed but not part of it; one provider counts once however many instance sizes it lists).
The median keeps one expensive hyperscaler or one cheap marketplace from setting the price,
and the source line says which offers it is the median of.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from quarch.hardware._spec import Hardware

PRICES_PATH = Path(__file__).with_name("prices.yaml")
"""The shipped price table."""

KINDS = ("on-demand", "reserved", "community")
"""Kinds of offer a row may be (see `prices.yaml`)."""

_FIELDS = ("device", "provider", "offer", "kind", "usd_per_hour", "url", "read", "via")


@dataclass(frozen=True, kw_only=True)
class Price:
    """One sourced rental offer: US dollars per device-hour (fields as in `prices.yaml`)."""

    device: str
    provider: str
    offer: str
    kind: str
    usd_per_hour: float
    url: str
    read: str
    via: str | None = None


@lru_cache(maxsize=4)
def load_prices(path: Path = PRICES_PATH) -> tuple[Price, ...]:
    """Every row of a price table (default: the shipped one).

    Raises:
        ValueError: a row with a missing, unknown or invalid field (its index is named).
    """
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path.name}: expected a mapping with a 'rows' list")
    return tuple(_price(row, f"{path.name}: rows[{i}]") for i, row in enumerate(doc["rows"]))


def _price(row: Any, where: str) -> Price:
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not a mapping")
    unknown = sorted(set(row) - set(_FIELDS))
    missing = [k for k in _FIELDS if k not in row and k != "via"]
    if unknown or missing:
        raise ValueError(f"{where}: unknown field(s) {unknown}, missing {missing}")
    if row["kind"] not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}, got {row['kind']!r}")
    value = row["usd_per_hour"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{where}: usd_per_hour must be a positive number, got {value!r}")
    read = row["read"]
    if not isinstance(read, datetime.date):
        raise ValueError(f"{where}: read must be a date (YYYY-MM-DD), got {read!r}")
    for name in ("device", "provider", "offer", "url"):
        if not isinstance(row[name], str) or not row[name]:
            raise ValueError(f"{where}: {name} must be a non-empty string")
    return Price(
        device=row["device"],
        provider=row["provider"],
        offer=row["offer"],
        kind=row["kind"],
        usd_per_hour=float(value),
        url=row["url"],
        read=read.isoformat(),
        via=row.get("via"),
    )


def prices_for(device: str, kind: str | None = None) -> tuple[Price, ...]:
    """The shipped offers for `device` (of `kind`, or all)."""
    return tuple(
        p for p in load_prices() if p.device == device and (kind is None or p.kind == kind)
    )


def default_price(device: str) -> tuple[float, str] | None:
    """(US dollars per device-hour, where it comes from) for a catalog device, or None when
    no on-demand offer is listed (see the module doc)."""
    cheapest: dict[str, Price] = {}
    for p in prices_for(device, "on-demand"):
        if p.provider not in cheapest or p.usd_per_hour < cheapest[p.provider].usd_per_hour:
            cheapest[p.provider] = p
    if not cheapest:
        return None
    median = statistics.median(p.usd_per_hour for p in cheapest.values())
    offers = ", ".join(
        f"{p.provider} ${p.usd_per_hour:g} ({p.read})"
        for p in sorted(cheapest.values(), key=lambda p: p.usd_per_hour)
    )
    return median, (
        f"median on-demand price over {len(cheapest)} provider(s) in "
        f"quarch/hardware/prices.yaml: {offers}"
    )


def with_catalog_price(hw: Hardware) -> Hardware:
    """`hw` with `default_price(hw.name)` when it names no price of its own (else unchanged)."""
    if hw.price_per_hour_usd is not None:
        return hw
    found = default_price(hw.name)
    if found is None:
        return hw
    price, source = found
    sources: Mapping[str, str] = {**hw.sources, "price_per_hour_usd": source}
    return replace(hw, price_per_hour_usd=price, sources=sources)
