"""Reading and validating Hardware YAML files (schema: quarch/hardware/catalog/README.md).

Every numeric leaf is `{value: <number>, source: <id>}` or `{value: <number>, estimate: "<how>"}`
with an optional `note`. Anything unexpected — an unknown key, a missing field, a wrong type, an
unknown source id, a zero, negative or absurd number — raises `ValueError` naming the file and the
field path, e.g. `h100-sxm.yaml: memory[0].bytes_per_s: must be > 0, got -3`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from quarch._yaml import excerpt, load_yaml_file, show
from quarch.hardware._spec import (
    EFFICIENCY_FIELDS,
    MATRIX_FORMATS,
    DeviceClass,
    Hardware,
    Interconnect,
    MemoryLevel,
    Topology,
)

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
"""Where the catalog's device files live (package data)."""

MEMORY_TECH_FILE = "memory_tech"
"""Stem of the memory-technology table in the catalog directory (not a device)."""

# Absurdity limits: far beyond any device shipped or announced, so a unit slip (GB/s written as
# B/s × 1e3, MHz as Hz) is caught rather than silently believed.
MAX_FLOPS_PER_S = 1e17
MAX_BYTES_PER_S = 1e15
MAX_CAPACITY_BYTES = 1e13
CLOCK_RANGE_HZ = (1e8, 1e10)

_TOP_REQUIRED = (
    "name",
    "display_name",
    "vendor",
    "device_class",
    "sources",
    "matrix_flops_per_s",
    "vector_flops_per_s",
    "compute_units",
    "clock_hz",
    "memory",
    "power",
)
_TOP_OPTIONAL = ("interconnect", "price_per_hour_usd", "efficiency")
_MEMORY_TECH_KEYS = ("name", "sources", "technologies")
_LEAF_KEYS = ("value", "source", "estimate", "note")


@dataclass
class _Ctx:
    """Where we are: the file (for messages), its source table, and the citations collected."""

    file: str
    sources: dict[str, str]
    cited: dict[str, str] = field(default_factory=dict)

    def error(self, path: str, msg: str) -> ValueError:
        return ValueError(f"{self.file}: {path}: {msg}")


def _mapping(ctx: _Ctx, node: Any, path: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ctx.error(path, f"must be a mapping, got {type(node).__name__} {show(node)}")
    return node


def _keys(
    ctx: _Ctx,
    node: dict[str, Any],
    path: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> None:
    prefix = f"{path}." if path else ""
    for key in node:
        if key not in required and key not in optional:
            raise ctx.error(
                f"{prefix}{_key_text(key)}",
                f"unknown key; valid keys here: {', '.join((*required, *optional))}",
            )
    for key in required:
        if key not in node:
            raise ctx.error(f"{prefix}{key}", "missing required field")


def _key_text(key: Any) -> str:
    """A mapping key as it appears in a field path, cut short (keys come from the user's file)."""
    text = str(key)
    return text if len(text) <= 40 else f"{text[:40]}…"


def _string(ctx: _Ctx, node: dict[str, Any], key: str, path: str) -> str:
    value = node[key]
    where = f"{path}.{key}" if path else key
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(where, f"must be a non-empty string, got {show(value)}")
    return value


def _cite(ctx: _Ctx, leaf: dict[str, Any], path: str) -> None:
    """Check the leaf's provenance and record it under `path`."""
    has_source, has_estimate = "source" in leaf, "estimate" in leaf
    if has_source == has_estimate:
        raise ctx.error(path, "needs exactly one of `source` (an id in `sources`) or `estimate`")
    note = leaf.get("note")
    if note is not None and (not isinstance(note, str) or not note.strip()):
        raise ctx.error(f"{path}.note", f"must be a non-empty string, got {show(note)}")
    if has_source:
        sid = leaf["source"]
        if not isinstance(sid, str) or sid not in ctx.sources:
            known = ", ".join(sorted(ctx.sources)) or "(none declared)"
            raise ctx.error(f"{path}.source", f"unknown source id {show(sid)}; declared: {known}")
        text = ctx.sources[sid]
    else:
        est = leaf["estimate"]
        if not isinstance(est, str) or not est.strip():
            raise ctx.error(f"{path}.estimate", f"must say how it was derived, got {show(est)}")
        text = f"estimate: {est}"
    ctx.cited[path] = f"{text} ({note})" if note else text


def _leaf_value(ctx: _Ctx, node: Any, path: str) -> Any:
    leaf = _mapping(ctx, node, path)
    _keys(ctx, leaf, path, ("value",), _LEAF_KEYS[1:])
    _cite(ctx, leaf, path)
    return leaf["value"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(
    ctx: _Ctx, value: Any, path: str, lo: float, hi: float, lo_open: bool, why: str = ""
) -> float:
    if isinstance(value, str):
        hint = ""
        if "e" in value.lower():
            hint = " (YAML 1.1 reads `80.0e9` as a string: write the exponent's sign, `80.0e+9`)"
        raise ctx.error(path, f"must be a number, got the string {show(value)}{hint}")
    if not _number(value) or not math.isfinite(value):
        raise ctx.error(path, f"must be a finite number, got {show(value)}")
    if lo_open and value <= lo:
        raise ctx.error(path, f"must be > {lo:g}, got {show(value)}")
    if not lo_open and value < lo:
        raise ctx.error(path, f"must be >= {lo:g}, got {show(value)}")
    if value > hi:
        raise ctx.error(path, f"must be <= {hi:g}{why}, got {show(value)}")
    return float(value)


def _num(
    ctx: _Ctx, node: Any, path: str, hi: float, lo: float = 0.0, lo_open: bool = True
) -> float:
    """A sourced positive number in (lo, hi] (or [lo, hi] with `lo_open=False`)."""
    value = _leaf_value(ctx, node, path)
    return _check_number(ctx, value, path, lo, hi, lo_open, " (absurd for one device)")


def _int(ctx: _Ctx, node: Any, path: str, hi: float) -> int:
    value = _num(ctx, node, path, hi, lo=1.0, lo_open=False)
    if value != int(value):
        raise ctx.error(path, f"must be a whole number, got {show(value)}")
    return int(value)


def _sources(ctx: _Ctx, node: Any) -> dict[str, str]:
    table = _mapping(ctx, node, "sources")
    out: dict[str, str] = {}
    for sid, src in table.items():
        path = f"sources.{sid}"
        src = _mapping(ctx, src, path)
        _keys(ctx, src, path, ("title", "url"))
        title, url = _string(ctx, src, "title", path), _string(ctx, src, "url", path)
        if not url.startswith(("https://", "http://")):
            raise ctx.error(f"{path}.url", f"must be an http(s) URL, got {show(url)}")
        out[str(sid)] = f"{title} <{url}>"
    return out


def _enum(ctx: _Ctx, value: Any, path: str, enum: type[DeviceClass] | type[Topology]) -> Any:
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(e.value for e in enum)
        raise ctx.error(path, f"unknown value {show(value)}; valid: {valid}") from None


def _matrix(ctx: _Ctx, node: Any) -> dict[str, float]:
    table = _mapping(ctx, node, "matrix_flops_per_s")
    if not table:
        raise ctx.error("matrix_flops_per_s", "needs at least one format")
    _keys(ctx, table, "matrix_flops_per_s", (), MATRIX_FORMATS)
    return {
        fmt: _num(ctx, leaf, f"matrix_flops_per_s.{fmt}", MAX_FLOPS_PER_S)
        for fmt, leaf in table.items()
    }


def _memory(ctx: _Ctx, node: Any) -> tuple[MemoryLevel, ...]:
    if not isinstance(node, list) or not node:
        raise ctx.error("memory", f"must be a non-empty list of levels, got {show(node)}")
    levels = []
    for i, raw in enumerate(node):
        path = f"memory[{i}]"
        level = _mapping(ctx, raw, path)
        _keys(ctx, level, path, ("name", "capacity_bytes", "bytes_per_s"), ("pj_per_byte",))
        pj = level.get("pj_per_byte")
        levels.append(
            MemoryLevel(
                name=_string(ctx, level, "name", path),
                capacity_bytes=_num(
                    ctx, level["capacity_bytes"], f"{path}.capacity_bytes", MAX_CAPACITY_BYTES
                ),
                bytes_per_s=_num(ctx, level["bytes_per_s"], f"{path}.bytes_per_s", MAX_BYTES_PER_S),
                pj_per_byte=None if pj is None else _num(ctx, pj, f"{path}.pj_per_byte", 1e4),
            )
        )
    return tuple(levels)


def _interconnect(ctx: _Ctx, node: Any) -> Interconnect:
    path = "interconnect"
    ic = _mapping(ctx, node, path)
    _keys(ctx, ic, path, ("name", "link_bytes_per_s", "latency_s", "topology", "max_devices"))
    return Interconnect(
        name=_string(ctx, ic, "name", path),
        link_bytes_per_s=_num(
            ctx, ic["link_bytes_per_s"], f"{path}.link_bytes_per_s", MAX_BYTES_PER_S
        ),
        latency_s=_num(ctx, ic["latency_s"], f"{path}.latency_s", 1e-2),
        topology=_enum(ctx, ic["topology"], f"{path}.topology", Topology),
        max_devices=_int(ctx, ic["max_devices"], f"{path}.max_devices", 1e6),
    )


def _power(ctx: _Ctx, node: Any) -> tuple[float, float]:
    power = _mapping(ctx, node, "power")
    _keys(ctx, power, "power", ("tdp_w", "idle_w"))
    tdp = _num(ctx, power["tdp_w"], "power.tdp_w", 1e5)
    idle = _num(ctx, power["idle_w"], "power.idle_w", 1e5)
    if idle >= tdp:
        raise ctx.error("power.idle_w", f"must be below power.tdp_w={tdp:g}, got {idle:g}")
    return tdp, idle


def is_catalog_name(name: str) -> bool:
    """Whether `name` can name a device: non-empty, lowercase, no spaces."""
    return bool(name) and name == name.lower() and not any(c.isspace() for c in name)


def _described(where: str, doc: Any, required: tuple[str, ...], what: str) -> dict[str, Any]:
    """The top-level mapping of a file that is recognisably `what` (it has at least one of the
    `required` keys). Anything else is refused by its type alone: a file named by mistake (a
    key file, a .env) is never echoed into the message."""
    if not isinstance(doc, dict) or not any(key in doc for key in required):
        kind = "a mapping without any of its keys" if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(
            f"{where}: not {what} (expected a YAML mapping with keys {', '.join(required)}; "
            f"got {kind})"
        )
    return doc


def hardware_from_dict(doc: Any, where: str = "<dict>") -> Hardware:
    """Validate a parsed Hardware document and build the `Hardware`.

    Args:
        doc: the mapping `yaml.safe_load` returns for a Hardware file.
        where: the file name used in error messages.

    Raises:
        ValueError: naming `where` and the offending field path.
    """
    ctx = _Ctx(file=where, sources={})
    top = _described(where, doc, _TOP_REQUIRED, "a Hardware description")
    _keys(ctx, top, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    ctx.sources = _sources(ctx, top["sources"])
    name = _string(ctx, top, "name", "")
    if not is_catalog_name(name):
        raise ctx.error("name", f"must be lowercase with no spaces, got {show(name)}")
    clock_lo, clock_hi = CLOCK_RANGE_HZ
    tdp, idle = _power(ctx, top["power"])
    price = top.get("price_per_hour_usd")
    efficiency = top.get("efficiency")
    return Hardware(
        name=name,
        display_name=_string(ctx, top, "display_name", ""),
        vendor=_string(ctx, top, "vendor", ""),
        device_class=_enum(ctx, top["device_class"], "device_class", DeviceClass),
        matrix_flops_per_s=_matrix(ctx, top["matrix_flops_per_s"]),
        vector_flops_per_s=_num(
            ctx, top["vector_flops_per_s"], "vector_flops_per_s", MAX_FLOPS_PER_S
        ),
        compute_units=_int(ctx, top["compute_units"], "compute_units", 1e7),
        clock_hz=_num(ctx, top["clock_hz"], "clock_hz", clock_hi, lo=clock_lo, lo_open=False),
        memory=_memory(ctx, top["memory"]),
        interconnect=None if "interconnect" not in top else _interconnect(ctx, top["interconnect"]),
        tdp_w=tdp,
        idle_w=idle,
        price_per_hour_usd=None if price is None else _num(ctx, price, "price_per_hour_usd", 1e4),
        efficiency={} if efficiency is None else _efficiency(ctx, efficiency),
        sources=ctx.cited,
    )


# --- the optional `efficiency:` section -------------------------------------------------------


def _fraction(ctx: _Ctx, value: Any, path: str) -> float:
    return _check_number(ctx, value, path, 0.0, 1.0, lo_open=True)


def _fractions(ctx: _Ctx, value: Any, path: str) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ctx.error(path, "needs at least one fraction")
    return tuple(_fraction(ctx, v, f"{path}[{i}]") for i, v in enumerate(items))


def _pair(ctx: _Ctx, value: Any, path: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ctx.error(path, f"must be a pair [rows, cols], got {show(value)}")
    a, b = (_check_number(ctx, v, f"{path}[{i}]", 1, 65536, False) for i, v in enumerate(value))
    if a != int(a) or b != int(b):
        raise ctx.error(path, f"must be whole numbers, got {show(value)}")
    return int(a), int(b)


def _tiles(ctx: _Ctx, value: Any, path: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list of [rows, cols] pairs, got {show(value)}")
    return tuple(_pair(ctx, v, f"{path}[{i}]") for i, v in enumerate(value))


def _band(ctx: _Ctx, value: Any, path: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ctx.error(path, f"must be a pair [low, high], got {show(value)}")
    low = _check_number(ctx, value[0], f"{path}[0]", 0.0, 1.0, lo_open=True)
    high = _check_number(ctx, value[1], f"{path}[1]", 1.0, 100.0, lo_open=False)
    return low, high


def _flag(ctx: _Ctx, value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, f"must be true or false, got {show(value)}")
    return value


_EFFICIENCY_PARSERS: dict[str, Callable[[_Ctx, Any, str], Any]] = {
    "matmul_fraction": _fraction,
    "attention_fraction": _fraction,
    "vector_fraction": _fraction,
    "bandwidth_fraction": _fractions,
    "comm_fraction": _fraction,
    "launch_overhead_s": lambda c, v, p: _check_number(c, v, p, 0.0, 1e-2, lo_open=True),
    "tiles": _tiles,
    "tile_k": lambda c, v, p: int(_pair(c, [v, 1], p)[0]),
    "saturating_tile_intensity": lambda c, v, p: _check_number(c, v, p, 0.0, 1e6, False),
    "attention_tile": _pair,
    "dequant_flops_per_element": lambda c, v, p: _check_number(c, v, p, 0.0, 1e3, False),
    "block_scaled_mma": _flag,
    "band": _band,
}
assert set(_EFFICIENCY_PARSERS) == set(EFFICIENCY_FIELDS)


def _efficiency(ctx: _Ctx, node: Any) -> dict[str, Any]:
    section = _mapping(ctx, node, "efficiency")
    _keys(ctx, section, "efficiency", (), EFFICIENCY_FIELDS)
    out = {}
    for key, raw in section.items():
        path = f"efficiency.{key}"
        out[key] = _EFFICIENCY_PARSERS[key](ctx, _leaf_value(ctx, raw, path), f"{path}.value")
    return out


# --- files and the catalog --------------------------------------------------------------------


def list_hardware() -> list[str]:
    """Names of the devices in the catalog, sorted."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml") if p.stem != MEMORY_TECH_FILE)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"no Hardware file at {excerpt(str(path), 200)}")
        return path
    path = CATALOG_DIR / f"{text.lower()}.yaml"
    if text.lower() == MEMORY_TECH_FILE or not path.is_file():
        raise ValueError(
            f"unknown hardware {excerpt(text)}; catalog devices: {', '.join(list_hardware())} "
            "(or give a path to a .yaml file)"
        )
    return path


@lru_cache(maxsize=128)
def _load_file(path: str, mtime_ns: int) -> Hardware:
    hw = hardware_from_dict(load_yaml_file(path), where=Path(path).name)
    if Path(path).parent == CATALOG_DIR:  # catalog devices carry their sourced rental price
        from quarch.hardware._prices import with_catalog_price

        hw = with_catalog_price(hw)
    return hw


def load_hardware(name_or_path: str | Path) -> Hardware:
    """Load a device by catalog name (`h100-sxm`, case-insensitive) or from a YAML file path.

    Files are parsed once and cached until they change on disk.

    Raises:
        ValueError: unknown name (listing the catalog), missing file, or an invalid file (naming
            the file and field).
    """
    path = _resolve(name_or_path).resolve()
    return _load_file(str(path), path.stat().st_mtime_ns)


def load_memory_tech(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The memory-technology table for the accelerator template, validated.

    Returns `{tech: {display_name, unit, bytes_per_s, capacity_bytes, pj_per_bit, sources}}`
    where `sources` maps each of the three numbers to its citation.

    Raises:
        ValueError: naming the file and field of anything malformed.
    """
    file = Path(path) if path is not None else CATALOG_DIR / f"{MEMORY_TECH_FILE}.yaml"
    return _load_memory_tech(str(file.resolve()), file.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_memory_tech(path: str, mtime_ns: int) -> dict[str, dict[str, Any]]:
    ctx = _Ctx(file=Path(path).name, sources={})
    top = _described(ctx.file, load_yaml_file(path), _MEMORY_TECH_KEYS, "a memory-technology table")
    _keys(ctx, top, "", _MEMORY_TECH_KEYS)
    ctx.sources = _sources(ctx, top["sources"])
    techs = _mapping(ctx, top["technologies"], "technologies")
    out: dict[str, dict[str, Any]] = {}
    for tech, raw in techs.items():
        path_t = f"technologies.{tech}"
        spec = _mapping(ctx, raw, path_t)
        _keys(
            ctx,
            spec,
            path_t,
            ("display_name", "unit", "bytes_per_s", "capacity_bytes", "pj_per_bit"),
        )
        out[tech] = {
            "display_name": _string(ctx, spec, "display_name", path_t),
            "unit": _string(ctx, spec, "unit", path_t),
            "bytes_per_s": _num(ctx, spec["bytes_per_s"], f"{path_t}.bytes_per_s", 1e14),
            "capacity_bytes": _num(
                ctx, spec["capacity_bytes"], f"{path_t}.capacity_bytes", MAX_CAPACITY_BYTES
            ),
            "pj_per_bit": _num(ctx, spec["pj_per_bit"], f"{path_t}.pj_per_bit", 1e3),
            "sources": {
                key: ctx.cited[f"{path_t}.{key}"]
                for key in ("bytes_per_s", "capacity_bytes", "pj_per_bit")
            },
        }
    return out
