"""A public validation set: sourced measurements of LLM serving and kernels, held against `predict`.

The rows live in `quarch/measure/published/*.yaml`, one file per source. A file has a `source`
(title, url, revision and/or date), `defaults` merged into every row, and `rows`; its header
comment says under which conditions the source measured (engine mode, concurrency, formats).
After merging, a row has:

- `id`: unique over all files; its hash decides the split (below).
- `kind`: `e2e` (a served model) or `kernel` (one op at a shape).
- `device`: a catalog device; `engine`, `engine_version`: what ran it.
- `weight_format`, `act_format` and, for `e2e`, `kv_format`: quarch format strings.
- `e2e` rows: `model` (a catalog model), `prompt_len`, `output_len`, optional `tp`, `pp`, `ep`,
  `dp` (default 1), and `batch`: an integer, or `max` for offline maximum-throughput runs whose
  source gives no batch (with `max_batch`, the engine's batch cap, where the source states one).
- `kernel` rows: `op: matmul` and its `m`, `n`, `k`.
- `metric`, `value`, `unit` (see `METRICS` and `UNITS`), `url` and `section` (the table,
  figure or section of the source the value was copied from), `date` (of publication) and/or
  `revision` (a commit, docs version or CI build: what pins the page), and optional
  `published_model` (the checkpoint the source ran, where the catalog spec stands in for it),
  `notes`.

**Split.** `split_for(id)`: the row is `holdout` when the first 8 hex digits of the SHA-256 of
its id are 0 modulo 3, else `fit`. Fixed once; it never looks at errors.

Predicting the rows and summarising the errors: `_published_check.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from quarch.formats import Format
from quarch.hardware import list_hardware
from quarch.models import load_model_spec

PUBLISHED_DIR = Path(__file__).with_name("published")
"""Where the shipped rows live."""

KINDS = ("e2e", "kernel")
SPLITS = ("fit", "holdout")

# metric -> (is a time, unit family)
METRICS: Mapping[str, tuple[bool, str]] = {
    "output_tokens_per_s": (False, "rate"),
    "output_tokens_per_s_per_device": (False, "rate_per_device"),
    "throughput_tokens_per_s": (False, "rate"),
    "ttft_s": (True, "time"),
    "tpot_s": (True, "time"),
    "e2e_latency_s": (True, "time"),
    "kernel_time_s": (True, "time"),
}
# unit -> (family, factor to SI)
UNITS: Mapping[str, tuple[str, float]] = {
    "tokens/s": ("rate", 1.0),
    "tokens/s/gpu": ("rate_per_device", 1.0),
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "us": ("time", 1e-6),
}
_E2E_METRICS = frozenset(METRICS) - {"kernel_time_s"}
_REQUIRED: tuple[str, ...] = (
    "id",
    "kind",
    "device",
    "engine",
    "engine_version",
    "weight_format",
    "act_format",
    "metric",
    "value",
    "unit",
    "section",
    "url",
)
_E2E_REQUIRED = ("model", "kv_format", "prompt_len", "output_len", "batch")
_KERNEL_REQUIRED = ("op", "m", "n", "k")
_COUNTS = ("tp", "pp", "ep", "dp")
_OPTIONAL = frozenset(
    {"published_model", "notes", "date", "revision", "title", "max_batch", *_COUNTS}
)
_KNOWN = frozenset(_REQUIRED + _E2E_REQUIRED + _KERNEL_REQUIRED) | _OPTIONAL


@dataclass(frozen=True, kw_only=True)
class PublishedRow:
    """One sourced measurement (fields as in the module doc; `value_si` in s or tokens/s)."""

    id: str
    kind: str
    device: str
    engine: str
    engine_version: str
    weight_format: str
    act_format: str
    kv_format: str
    metric: str
    value: float
    unit: str
    url: str
    section: str
    file: str
    model: str | None = None
    prompt_len: int = 0
    output_len: int = 0
    batch: int | None = None  # None: the largest batch that fits (`max`)
    max_batch: int | None = None
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    m: int = 0
    n: int = 0
    k: int = 0
    date: str | None = None
    revision: str | None = None
    published_model: str | None = None
    notes: str | None = None

    @property
    def split(self) -> str:
        """`fit` or `holdout`, from the id alone (see `split_for`)."""
        return split_for(self.id)

    @property
    def value_si(self) -> float:
        """The measured value in s (times) or tokens/s (rates)."""
        return self.value * UNITS[self.unit][1]

    @property
    def is_time(self) -> bool:
        """Whether the metric is a time (smaller is faster)."""
        return METRICS[self.metric][0]

    @property
    def precision(self) -> str:
        """`weight/act[/kv]` formats, the slice key for precision."""
        parts = [self.weight_format, self.act_format]
        if self.kind == "e2e":
            parts.append(self.kv_format)
        return "/".join(parts)


def split_for(row_id: str) -> str:
    """`holdout` when the first 8 hex digits of SHA-256(`row_id`) are 0 mod 3, else `fit`."""
    digest = hashlib.sha256(row_id.encode("utf-8")).hexdigest()
    return "holdout" if int(digest[:8], 16) % 3 == 0 else "fit"


# --- loading ---------------------------------------------------------------------------------


def load_published(paths: Iterable[Path | str] | None = None) -> tuple[PublishedRow, ...]:
    """Load and check every row of `paths` (default: the shipped `published/*.yaml`).

    Raises:
        ValueError: a file that is not a mapping with `source` and `rows`, a row with a missing,
            unknown or invalid field (the file and row id are named), or a duplicate id.
    """
    files = sorted(PUBLISHED_DIR.glob("*.yaml")) if paths is None else [Path(p) for p in paths]
    rows: list[PublishedRow] = []
    seen: dict[str, str] = {}
    for path in files:
        for row in _load_file(path):
            if row.id in seen:
                raise ValueError(f"{path.name}: row id {row.id!r} already used in {seen[row.id]}")
            seen[row.id] = path.name
            rows.append(row)
    return tuple(rows)


def _load_file(path: Path) -> list[PublishedRow]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path.name}: expected a mapping with a 'rows' list")
    source, defaults = doc.get("source"), doc.get("defaults", {})
    if not isinstance(source, dict) or not source.get("url"):
        raise ValueError(f"{path.name}: 'source' must be a mapping with a 'url'")
    if not isinstance(defaults, dict):
        raise ValueError(f"{path.name}: 'defaults' must be a mapping")
    base = {k: v for k, v in source.items() if k in ("url", "date", "revision")}
    out = []
    for i, raw in enumerate(doc["rows"]):
        if not isinstance(raw, dict):
            raise ValueError(f"{path.name}: row {i} is not a mapping")
        merged = {**base, **defaults, **raw}
        where = f"{path.name}: row {merged.get('id', i)!r}"
        try:
            out.append(_row(merged, path.name))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: {err}") from None
    return out


def _row(d: dict[str, Any], file: str) -> PublishedRow:
    missing = [k for k in _REQUIRED if k not in d]
    kind = d.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    missing += [k for k in (_E2E_REQUIRED if kind == "e2e" else _KERNEL_REQUIRED) if k not in d]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    unknown = sorted(set(d) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(_KNOWN)}")
    _check_text(d, ("id", "device", "engine", "engine_version", "section", "url"))
    if not d.get("date") and not d.get("revision"):
        raise ValueError("needs a date or a revision (what pins the source's version)")
    if d["device"] not in list_hardware():
        raise ValueError(f"device {d['device']!r} is not a catalog device ({list_hardware()})")
    metric, unit = d["metric"], d["unit"]
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if unit not in UNITS or UNITS[unit][0] != METRICS[metric][1]:
        fits = sorted(u for u, (fam, _) in UNITS.items() if fam == METRICS[metric][1])
        raise ValueError(f"unit {unit!r} does not fit metric {metric!r}; use one of {fits}")
    if (kind == "kernel") != (metric == "kernel_time_s"):
        raise ValueError(f"metric {metric!r} does not fit kind {kind!r}")
    value = d["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"value must be a positive number, got {value!r}")
    for name in ("weight_format", "act_format", "kv_format"):
        if name in d:
            Format.parse(_text(d, name))  # raises ValueError naming the format
    fields: dict[str, Any] = {
        k: d[k] for k in _KNOWN if k in d and k not in ("op", "batch", "title", "value")
    }
    fields["value"] = float(value)
    fields.setdefault("kv_format", "bf16")
    for name in (*_COUNTS, "m", "n", "k", "prompt_len", "output_len", "max_batch"):
        if name in d:
            fields[name] = _positive_int(d, name)
    if kind == "kernel" and d["op"] != "matmul":
        raise ValueError(f"op must be 'matmul' (the only kernel priced), got {d['op']!r}")
    if kind == "e2e":
        _check_text(d, ("model",))
        if "/" in d["model"] or d["model"].endswith((".yaml", ".yml", ".json")):
            raise ValueError(f"model must be a catalog name (`quarch models`), got {d['model']!r}")
        load_model_spec(d["model"])  # raises ValueError naming an unknown model
        fields["batch"] = _batch(d)
    return PublishedRow(file=file, **fields)


def _batch(d: Mapping[str, Any]) -> int | None:
    if d["batch"] == "max":
        return None
    return _positive_int(d, "batch")


def _text(d: Mapping[str, Any], name: str) -> str:
    value = d[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_text(d: Mapping[str, Any], names: Iterable[str]) -> None:
    for name in names:
        _text(d, name)


def _positive_int(d: Mapping[str, Any], name: str) -> int:
    value = d[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
