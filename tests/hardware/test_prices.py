"""Sourced rental prices of catalog devices (quarch/hardware/prices.yaml, _prices.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarch.hardware import list_hardware, load_hardware
from quarch.hardware._prices import (
    default_price,
    load_prices,
    prices_for,
    with_catalog_price,
)


def test_every_row_is_sourced_dated_and_names_a_catalog_device() -> None:
    rows = load_prices()
    assert len(rows) >= 30
    catalog = set(list_hardware())
    for p in rows:
        assert p.device in catalog, p
        assert p.url.startswith("https://") and len(p.read) == 10, p
        assert p.via is None or p.via.startswith("https://"), p
    # several clouds per flagship device
    for device in ("h100-sxm", "b200", "a100-sxm", "h200-sxm"):
        assert len({p.provider for p in prices_for(device, "on-demand")}) >= 3, device


def test_default_is_the_median_of_each_providers_cheapest_on_demand_offer() -> None:
    found = default_price("h100-sxm")
    assert found is not None
    price, source = found
    cheapest: dict[str, float] = {}
    for p in prices_for("h100-sxm", "on-demand"):
        cheapest[p.provider] = min(cheapest.get(p.provider, p.usd_per_hour), p.usd_per_hour)
    values = sorted(cheapest.values())
    mid = len(values) // 2
    expected = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    assert price == expected and "median on-demand" in source
    assert default_price("m2-ultra") is None  # no offer listed: no price


def test_catalog_devices_carry_the_price_and_its_source() -> None:
    hw = load_hardware("h100-sxm")
    assert hw.price_per_hour_usd == default_price("h100-sxm")[0]  # type: ignore[index]
    assert "prices.yaml" in hw.sources["price_per_hour_usd"]
    assert load_hardware("tpu-v6e").price_per_hour_usd is None
    assert with_catalog_price(hw) is hw  # a device with a price keeps it


def test_a_file_outside_the_catalog_keeps_its_own_price() -> None:
    toy = Path(__file__).parent / "data" / "toy-gpu.yaml"
    assert load_hardware(toy).price_per_hour_usd == 2.0


def test_bad_rows_raise(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "rows:\n  - {device: h100-sxm, provider: X, offer: y, kind: spot, usd_per_hour: 1.0,"
        " url: 'https://x', read: 2026-01-01}\n"
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        load_prices(path)
    path.write_text("rows:\n  - {device: h100-sxm}\n")
    with pytest.raises(ValueError, match="missing"):
        load_prices(path)
