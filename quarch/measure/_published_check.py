"""Hold the published rows (`_published.py`) against quarch's predictions.

**Prediction.** An `e2e` row becomes a `Scenario` priced by `predict`. A `batch: max` row is
predicted at the largest batch whose memory fits the device (`Prediction.fits`), capped at
`max_batch` when given: the engine admits sequences until its KV cache is full, and quarch's
static batch (the whole batch prefilled, then decoded together) is the nearest thing it
models. A `kernel` row is built as one matmul `Op` (the same FLOPs and bytes `quarch.perf`
gives a weight GEMM) and priced with `op_time`; its time includes the per-kernel overhead, as
a timed kernel does.

**Engine.** An `e2e` row is predicted with the serving-engine profile of its `engine`
(`ENGINE_PROFILES`; `quarch.perf.load_engine`); an engine without a profile is predicted as the
`ideal` engine. Kernel rows time one kernel and take no engine.

**Continuous batching.** Every profiled engine batches continuously and mixes new requests'
prefills into running decode steps. A `tpot_s` row measured at a fixed concurrency (`batch:
max`, capped at the concurrency) is therefore compared with `Prediction.tpot_continuous_s`
(the decode step plus the other clients' prefills it carries on average), not with the static
batch's `tpot_s`; every other metric is unchanged (a throughput counts the same work either
way).

**Errors.** `error = |pred − meas| / meas`, `ratio = meas / pred`; a prediction is optimistic
when it promises more than was measured (a shorter time, a higher throughput). A row is inside
the band when the measured value lies in the prediction's `band` around the predicted value
(times: `[pred · low, pred · high]`; throughputs, the inverse of a time: `[pred / high,
pred / low]`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quarch.formats import Format
from quarch.hardware import load_hardware
from quarch.measure._published import SPLITS, PublishedRow, load_published
from quarch.models import load_model_spec
from quarch.perf import (
    Engine,
    Op,
    OpKind,
    Prediction,
    Scenario,
    band_for,
    load_engine,
    op_time,
    predict,
)

# --- predicting ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PublishedResult:
    """One row against its prediction (`predicted` in the row's SI unit)."""

    row: PublishedRow
    predicted: float
    band: tuple[float, float]
    batch: int | None = None  # the batch predicted (e2e rows)

    @property
    def error(self) -> float:
        """|pred − meas| / meas."""
        return abs(self.predicted - self.row.value_si) / self.row.value_si

    @property
    def ratio(self) -> float:
        """meas / pred."""
        return self.row.value_si / self.predicted

    @property
    def optimistic(self) -> bool:
        """Whether the prediction promises more than was measured."""
        if self.row.is_time:
            return self.predicted < self.row.value_si
        return self.predicted > self.row.value_si

    @property
    def in_band(self) -> bool:
        """Whether the measured value lies in the band around the prediction."""
        low, high = self.band
        if self.row.is_time:
            lo, hi = self.predicted * low, self.predicted * high
        else:
            lo, hi = self.predicted / high, self.predicted / low
        return lo <= self.row.value_si <= hi


def scenario_for(row: PublishedRow, batch: int | None = None) -> Scenario:
    """The `Scenario` of an e2e row (at `batch`, or the row's own batch)."""
    if row.kind != "e2e":
        raise ValueError(f"row {row.id!r} is a {row.kind} row, not e2e")
    chosen = batch if batch is not None else row.batch
    if chosen is None:
        raise ValueError(f"row {row.id!r} has batch: max; pass the batch to predict at")
    return Scenario(
        batch=chosen,
        prompt_len=row.prompt_len,
        output_len=row.output_len,
        tp=row.tp,
        pp=row.pp,
        ep=row.ep,
        dp=row.dp,
        weight_format=row.weight_format,
        act_format=row.act_format,
        kv_format=row.kv_format,
    )


def kernel_op(row: PublishedRow) -> Op:
    """The matmul `Op` of a kernel row: FLOPs and bytes as `quarch.perf` counts a weight GEMM
    (weights `k·n` at the weight format, activations `m·(k + n)` at the activation format)."""
    if row.kind != "kernel":
        raise ValueError(f"row {row.id!r} is an {row.kind} row, not a kernel")
    m, n, k = row.m, row.n, row.k
    return Op(
        name=f"published.{row.id}",
        kind=OpKind.MATMUL,
        group="kernel",
        count=1,
        m=m,
        n=n,
        k=k,
        flops=2.0 * m * n * k,
        weight_bytes=k * n * Format.parse(row.weight_format).bits_per_element / 8,
        act_bytes=m * (k + n) * Format.parse(row.act_format).bits_per_element / 8,
        weight_format=row.weight_format,
        act_format=row.act_format,
        kv_format=row.kv_format,
    )


ENGINE_PROFILES: Mapping[str, str] = {
    "vllm": "vllm",
    "sglang": "sglang",
    "tensorrt-llm": "tensorrt-llm",
    # NVIDIA NIM for LLMs serves Llama on H100 with TensorRT-LLM engines ("optimized profiles"):
    # https://docs.nvidia.com/nim/large-language-models/latest/introduction.html
    "nim": "tensorrt-llm",
}
"""A published row's `engine` -> the `quarch.perf` engine profile it is predicted with."""


def engine_for(row: PublishedRow) -> Engine:
    """The engine profile of `row` (`ideal` where its engine has none)."""
    return load_engine(ENGINE_PROFILES.get(row.engine, "ideal"))


def predict_row(row: PublishedRow) -> PublishedResult:
    """Predict one row (see the module doc).

    Raises:
        ValueError: a scenario the perf model rejects, or a `batch: max` row whose smallest
            batch does not fit the device.
    """
    hw = load_hardware(row.device)
    if row.kind == "kernel":
        t = op_time(kernel_op(row), hw)
        kb = band_for(hw, "ideal", "kernel")
        return PublishedResult(row=row, predicted=t.time_s, band=(kb.low, kb.high))
    spec = load_model_spec(row.model or "")
    engine = engine_for(row)
    if row.batch is None:
        pred = _largest_fitting(
            row, lambda b: predict(spec, hw, scenario_for(row, b), engine=engine)
        )
    else:
        pred = predict(spec, hw, scenario_for(row), engine=engine)
    band = pred.band if row.is_time else pred.throughput_band
    value = _metric(pred, row.metric)
    if row.metric == "tpot_s" and row.batch is None and row.engine in ENGINE_PROFILES:
        value = pred.tpot_continuous_s  # clients at a fixed concurrency (module doc)
    return PublishedResult(row=row, predicted=value, band=band, batch=pred.scenario.batch)


_BATCH_LIMIT = 1 << 20
"""Sequences per replica past which an uncapped `batch: max` search stops (none fits that many)."""


def _largest_fitting(row: PublishedRow, run: Callable[[int], Prediction]) -> Prediction:
    """The prediction at the largest multiple of `dp` (up to `max_batch`) whose memory fits."""
    step = row.dp
    cap = max(1, row.max_batch // step) if row.max_batch else _BATCH_LIMIT  # units of dp seqs
    lo, best = 1, run(step)
    if not best.fits:
        raise ValueError(f"row {row.id!r}: even batch {step} does not fit {row.device}")
    hi = lo
    while True:  # double until past the cap or no longer fitting
        hi = min(hi * 2, cap)
        p = run(hi * step)
        if not p.fits:
            break
        lo, best = hi, p
        if hi == cap:
            return best
    while hi - lo > 1:  # invariant: lo fits, hi does not
        mid = (lo + hi) // 2
        p = run(mid * step)
        lo, hi, best = (mid, hi, p) if p.fits else (lo, mid, best)
    return best


def _metric(p: Prediction, metric: str) -> float:
    match metric:
        case "output_tokens_per_s":
            return p.output_tokens_per_s
        case "output_tokens_per_s_per_device":
            return p.output_tokens_per_s / p.num_devices
        case "throughput_tokens_per_s":
            return p.throughput_tokens_per_s
        case "ttft_s":
            return p.ttft_s
        case "tpot_s":
            return p.tpot_s
        case "e2e_latency_s":
            return p.e2e_latency_s
        case _:
            raise ValueError(f"metric {metric!r} is not an end-to-end metric")


# --- summarising -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SliceSummary:
    """Errors of the rows of one slice (`median_error`, `p90_error` as fractions)."""

    slice: str
    key: str
    rows: int
    median_error: float
    p90_error: float
    optimistic: int
    in_band: int

    @property
    def optimistic_share(self) -> float:
        """Share of rows where the prediction is optimistic."""
        return self.optimistic / self.rows

    @property
    def band_coverage(self) -> float:
        """Share of rows whose measured value lies inside the band."""
        return self.in_band / self.rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "slice": self.slice,
            "key": self.key,
            "rows": self.rows,
            "median_error": self.median_error,
            "p90_error": self.p90_error,
            "optimistic": self.optimistic,
            "optimistic_share": self.optimistic_share,
            "band_coverage": self.band_coverage,
        }


SLICES: Mapping[str, Callable[[PublishedResult], str]] = {
    "all": lambda r: "all",
    "split": lambda r: r.row.split,
    "kind": lambda r: r.row.kind,
    "device": lambda r: r.row.device,
    "engine": lambda r: r.row.engine,
    "precision": lambda r: r.row.precision,
    "batch": lambda r: _batch_kind(r.row),
}
"""Slice name -> the key a result falls under (`batch`: how the row's batch was set)."""


def _batch_kind(row: PublishedRow) -> str:
    if row.kind == "kernel":
        return "kernel"
    if row.batch is not None:
        return "fixed"
    return "max, capped" if row.max_batch else "max, memory-bound"


def summarize_published(results: Iterable[PublishedResult]) -> tuple[SliceSummary, ...]:
    """Median and p90 abs. error (numpy's linear percentile), optimistic count and band
    coverage, for every key of every slice in `SLICES` (keys sorted within a slice)."""
    results = list(results)
    out = []
    for name, key_of in SLICES.items():
        groups: dict[str, list[PublishedResult]] = {}
        for r in results:
            groups.setdefault(key_of(r), []).append(r)
        for key in sorted(groups):
            out.append(_summary(name, key, groups[key]))
    return tuple(out)


def _summary(name: str, key: str, group: list[PublishedResult]) -> SliceSummary:
    errors = np.array([r.error for r in group], dtype=np.float64)
    return SliceSummary(
        slice=name,
        key=key,
        rows=len(group),
        median_error=float(np.median(errors)),
        p90_error=float(np.percentile(errors, 90)),
        optimistic=sum(r.optimistic for r in group),
        in_band=sum(r.in_band for r in group),
    )


@dataclass(frozen=True, kw_only=True)
class PublishedReport:
    """Every row of the chosen split against its prediction, and the summaries by slice."""

    split: str
    results: tuple[PublishedResult, ...]
    summaries: tuple[SliceSummary, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready document."""
        coverage = {}
        for split in SPLITS:
            rows = [r for r in self.results if r.row.split == split]
            if rows:
                coverage[split] = sum(r.in_band for r in rows) / len(rows)
        return {
            "split": self.split,
            "band_coverage": coverage,
            "rows": [_result_dict(r) for r in self.results],
            "summary": [s.to_dict() for s in self.summaries],
        }


def _result_dict(r: PublishedResult) -> dict[str, Any]:
    row = r.row
    return {
        "id": row.id,
        "split": row.split,
        "kind": row.kind,
        "model": row.model,
        "device": row.device,
        "engine": row.engine,
        "precision": row.precision,
        "metric": row.metric,
        "measured": row.value_si,
        "predicted": r.predicted,
        "batch": r.batch,
        "error": r.error,
        "ratio": r.ratio,
        "optimistic": r.optimistic,
        "in_band": r.in_band,
        "band": list(r.band),
        "url": row.url,
        "section": row.section,
    }


def validate_published(
    split: str = "all", rows: Iterable[PublishedRow] | None = None
) -> PublishedReport:
    """Predict every row of `split` (`fit`, `holdout` or `all`; default rows: the shipped set)
    and summarise the errors by slice.

    Raises:
        ValueError: an unknown split, or a row the perf model rejects (named).
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
    chosen = [r for r in (load_published() if rows is None else rows) if split in ("all", r.split)]
    results = []
    for row in chosen:
        try:
            results.append(predict_row(row))
        except ValueError as err:
            raise ValueError(f"{row.file}: row {row.id!r}: {err}") from None
    finite = [r for r in results if math.isfinite(r.predicted) and r.predicted > 0]
    if len(finite) != len(results):
        bad = sorted({r.row.id for r in results} - {r.row.id for r in finite})
        raise ValueError(f"non-positive or non-finite predictions for rows {bad}")
    return PublishedReport(
        split=split, results=tuple(results), summaries=summarize_published(results)
    )


# --- printing --------------------------------------------------------------------------------


def print_published(report: PublishedReport) -> None:
    """Print the per-row errors and the summaries by slice as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = Table(title=f"published measurements vs quarch ({report.split} rows)")
    rows.add_column("row", overflow="fold", ratio=1)
    for col in ("metric", "measured", "predicted", "meas/pred", "|err|", "band"):
        rows.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
    for r in report.results:
        rows.add_row(
            r.row.id if report.split != "all" else f"{r.row.id} ({r.row.split})",
            _SHORT[r.row.metric],
            _value(r.row.value_si, r.row.is_time),
            _value(r.predicted, r.row.is_time),
            f"{r.ratio:.2f}",
            f"{r.error:.0%}",
            "in" if r.in_band else "out",
        )
    console.print(rows)
    summary = Table(title="abs. error by slice (optimistic: the prediction promises more)")
    for col in ("slice", "key", "rows", "median", "p90", "optimistic", "in band"):
        left = col in ("slice", "key")
        summary.add_column(col, justify="left" if left else "right", overflow="fold")
    for s in report.summaries:
        summary.add_row(
            s.slice,
            s.key,
            str(s.rows),
            f"{s.median_error:.1%}",
            f"{s.p90_error:.1%}",
            f"{s.optimistic}/{s.rows}",
            f"{s.band_coverage:.0%}",
        )
    console.print(summary)
    for line in coverage_lines(report):
        console.print(line)


def coverage_lines(report: PublishedReport) -> list[str]:
    """One line per split present: how many measured values lie inside the printed band."""
    lines = []
    for split in SPLITS:
        rows = [r for r in report.results if r.row.split == split]
        if not rows:
            continue
        inside = sum(r.in_band for r in rows)
        what = "never used to derive it" if split == "holdout" else "in-sample: the band's own rows"
        lines.append(
            f"band coverage on {split} rows: {inside}/{len(rows)} = {inside / len(rows):.0%} "
            f"(band: 10th-90th percentile of fit residuals per architecture and metric family, "
            f"nominal 80 %; {what})"
        )
    return lines


_SHORT = {
    "output_tokens_per_s": "out tok/s",
    "output_tokens_per_s_per_device": "out tok/s/dev",
    "throughput_tokens_per_s": "tok/s",
    "ttft_s": "TTFT",
    "tpot_s": "TPOT",
    "e2e_latency_s": "e2e",
    "kernel_time_s": "kernel",
}


def _value(x: float, is_time: bool) -> str:
    if not is_time:
        return f"{x:,.0f}"
    if x >= 1.0:
        return f"{x:.3g} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3g} ms"
    return f"{x * 1e6:.3g} us"
