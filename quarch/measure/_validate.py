"""`validate`: predicted against measured, on real operations at shapes calibration never saw.

Every row pairs torch work with the ops `quarch.perf.build_ops` produces for the same model,
scenario and phase, priced by the perf model (`_model.predicted_s`):

- `matmul`: each weight GEMM of SmolLM2-135M (decode and prefill) and of Llama-3.1-8B as one of
  8 tensor-parallel shards (`Scenario(tp=8)`: the shapes one device of such a deployment runs),
  timed as `F.linear` at the op's `[m, k] @ [k, n]` (the graph's fused QKV and gate/up shapes).
- `attention`: sdpa with grouped KV heads over KV caches of several lengths, and causal prefill.
- `elementwise`: HF's residual add + `LlamaRMSNorm`, `act_fn(gate) * up`, `apply_rotary_pos_emb`.
- `layer`: one HF `LlamaDecoderLayer` (SmolLM2 dimensions) in prefill and in decode, against the
  sum of one layer's ops.
- `model`: the whole HF `LlamaForCausalLM` (SmolLM2-135M dimensions, random weights): a prefill
  and a decode step, against the sum of all ops of the graph.

Error of a row: `|predicted − measured| / measured`; summaries give the median and 90th
percentile of it per op class, and the band `(10th, 90th)` percentile of measured / predicted.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quarch._atomic import atomic_path
from quarch._yaml import load_yaml_file
from quarch.hardware import Hardware, load_hardware
from quarch.measure._bench import OpClass
from quarch.measure._calibrate import load_average, loader_band, progress_bar, ratio_band
from quarch.measure._cases import (
    Case,
    ModelHolder,
    attention_case,
    elementwise_cases,
    gemm_cases,
    layer_case,
    model_case,
)
from quarch.measure._hwyaml import to_yaml
from quarch.measure._model import predicted_s
from quarch.measure._timing import Statistic, check_device, time_callable, torch_threads
from quarch.models import ModelSpec, load_model_spec

SMALL_MODEL = "SmolLM2-135M"
LARGE_MODEL = "Llama-3.1-8B"
LARGE_TP = 8
"""Llama-3.1-8B is validated as one shard of 8-way tensor parallelism (a 2-core CPU cannot time
the whole projections quickly enough)."""


@dataclass(frozen=True, kw_only=True)
class ValidationRow:
    """One validated operation.

    Fields: `name`; `op_class`; `predicted_s`, `measured_s` (the chosen statistic); `spread` of
    the timing ((p90 − p10) / median); `ops` (how many graph ops the prediction sums).
    """

    name: str
    op_class: OpClass
    predicted_s: float
    measured_s: float
    spread: float
    ops: int = 1

    @property
    def ratio(self) -> float:
        """measured / predicted."""
        return self.measured_s / self.predicted_s

    @property
    def abs_pct_error(self) -> float:
        """|predicted − measured| / measured, in percent."""
        return abs(self.predicted_s - self.measured_s) / self.measured_s * 100.0


@dataclass(frozen=True, kw_only=True)
class ClassSummary:
    """Errors of one op class: rows, median and 90th-percentile absolute % error, ratio band."""

    op_class: str
    rows: int
    median_pct: float
    p90_pct: float
    band: tuple[float, float]


def _p90(xs: Sequence[float]) -> float:
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(sorted(xs), n=10, method="inclusive")[-1]


def summarize(rows: Sequence[ValidationRow], label: str) -> ClassSummary:
    """Median and 90th-percentile absolute % error and the measured/predicted band of `rows`."""
    errors = [r.abs_pct_error for r in rows]
    return ClassSummary(
        op_class=label,
        rows=len(rows),
        median_pct=statistics.median(errors),
        p90_pct=_p90(errors),
        band=ratio_band([r.ratio for r in rows]),
    )


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """Predicted against measured, per row and per op class.

    Fields: `hardware` (name), `device`, `threads`, `stat`, `rows`, `load` (1-minute load
    average before and after, and the CPUs the OS has), `notes`.
    """

    hardware: str
    device: str
    threads: int
    stat: Statistic
    rows: tuple[ValidationRow, ...]
    load: tuple[float, float, int] = (0.0, 0.0, 1)
    notes: tuple[str, ...] = field(default=())

    @property
    def busy(self) -> bool:
        """Whether the machine had more runnable work than CPUs during validation."""
        return max(self.load[:2]) > self.load[2]

    def by_class(self) -> dict[str, ClassSummary]:
        """Summary per op class, in `OpClass` order, then `all`."""
        out = {}
        for cls in OpClass:
            rows = [r for r in self.rows if r.op_class is cls]
            if rows:
                out[cls.value] = summarize(rows, cls.value)
        if self.rows:
            out["all"] = summarize(self.rows, "all")
        return out

    def band(self) -> tuple[float, float]:
        """The band over all rows, clipped to what the Hardware loader accepts."""
        return loader_band(ratio_band([r.ratio for r in self.rows]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: rows and summaries."""
        return {
            "hardware": self.hardware,
            "device": self.device,
            "threads": self.threads,
            "statistic": self.stat.value,
            "load_average": list(self.load[:2]),
            "cpus": self.load[2],
            "rows": [
                {
                    "name": r.name,
                    "op_class": r.op_class.value,
                    "predicted_s": r.predicted_s,
                    "measured_s": r.measured_s,
                    "ratio": r.ratio,
                    "abs_pct_error": r.abs_pct_error,
                    "spread": r.spread,
                }
                for r in self.rows
            ],
            "summary": {
                k: {
                    "rows": s.rows,
                    "median_abs_pct_error": s.median_pct,
                    "p90_abs_pct_error": s.p90_pct,
                    "band": list(s.band),
                }
                for k, s in self.by_class().items()
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Plan:
    """What `validate` times: models, formats and lengths (decode KV lengths, prefill tokens).

    `small` is validated op by op, layer by layer and whole; `large` by its GEMMs and attention
    as one shard of `large_tp`-way tensor parallelism. Models are catalog names or specs.
    """

    small: str | ModelSpec
    large: str | ModelSpec
    large_tp: int
    formats: tuple[str, ...]
    decode_kv: tuple[int, ...]
    prefill_tokens: tuple[int, ...]
    large_decode_kv: tuple[int, ...]
    batch: tuple[int, ...]
    budget_s: float


QUICK = Plan(
    small=SMALL_MODEL,
    large=LARGE_MODEL,
    large_tp=LARGE_TP,
    formats=("fp32",),
    decode_kv=(300, 1800),
    prefill_tokens=(96,),
    large_decode_kv=(4000,),
    batch=(1,),
    budget_s=0.4,
)
FULL = Plan(
    small=SMALL_MODEL,
    large=LARGE_MODEL,
    large_tp=LARGE_TP,
    formats=("fp32", "bf16"),
    decode_kv=(100, 700, 2500, 7000),
    prefill_tokens=(48, 192),
    large_decode_kv=(1500, 6000),
    batch=(1, 4),
    budget_s=1.5,
)


def _spec(spec: str | ModelSpec) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else load_model_spec(spec)


def _cases(plan: Plan, fmt: str, device: str, holder: ModelHolder) -> list[Case]:
    """Every row of one format; model-based rows share `holder`'s model."""
    small, large, ltp = holder.spec, _spec(plan.large), plan.large_tp
    kv0, s0 = plan.decode_kv[0], plan.prefill_tokens[0]
    cases: list[Case] = []
    for spec, tp in ((small, 1), (large, ltp)):
        for kv, tokens in ((kv0, 1), (0, s0)):
            cases += gemm_cases(spec, fmt, seqs=1, kv_len=kv, tokens=tokens, tp=tp, device=device)
    for b in plan.batch:
        for kv in plan.decode_kv:
            cases.append(
                attention_case(small, fmt, seqs=b, kv_len=kv, tokens=1, tp=1, device=device)
            )
    for kv in plan.large_decode_kv:
        cases.append(attention_case(large, fmt, seqs=1, kv_len=kv, tokens=1, tp=ltp, device=device))
    for s in plan.prefill_tokens:
        cases.append(attention_case(small, fmt, seqs=1, kv_len=0, tokens=s, tp=1, device=device))
    for kv, tokens in ((kv0, 1), (0, s0)):
        cases += elementwise_cases(small, fmt, holder, seqs=1, kv_len=kv, tokens=tokens)
    for kv in plan.decode_kv[:2]:
        cases.append(layer_case(small, fmt, holder, seqs=1, kv_len=kv, tokens=1))
    for s in plan.prefill_tokens:
        cases.append(layer_case(small, fmt, holder, seqs=1, kv_len=0, tokens=s))
    cases.append(model_case(small, fmt, holder, seqs=1, kv_len=0, tokens=s0))
    for kv in plan.decode_kv[:2]:
        cases.append(model_case(small, fmt, holder, seqs=1, kv_len=kv, tokens=1))
    return cases


def _run(case: Case, hw: Hardware, device: str, stat: Statistic, budget_s: float) -> ValidationRow:
    timing = time_callable(case.make(), device=device, budget_s=budget_s, warmup=2)
    return ValidationRow(
        name=case.name,
        op_class=case.op_class,
        predicted_s=predicted_s(case.ops, hw, case.resident_bytes),
        measured_s=timing.value(stat),
        spread=timing.spread,
        ops=len(case.ops),
    )


def validate(
    hw: Hardware | str | Path,
    *,
    quick: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    stat: Statistic | str = Statistic.MEDIAN,
    progress: bool = True,
    plan: Plan | None = None,
) -> ValidationReport:
    """Time real operations at shapes calibration did not use and compare with predictions.

    Args:
        hw: the device to predict with (normally the file `calibrate` wrote), or its path/name.
        quick: fewer rows, fp32 only, shorter timings.
        device: where to run (`cpu`, `cuda`).
        threads: torch threads for CPU work (None: the current setting); restored after.
        stat: the timing statistic compared (`median` or `min`).
        progress: show a progress bar on stderr.
        plan: what to time, overriding `quick` (tests use tiny models).

    Raises:
        ValueError: an unusable device, or a hardware name/path that does not load.
    """
    dev = str(check_device(device))
    stat = Statistic(stat)
    plan = plan or (QUICK if quick else FULL)
    device_hw = hw if isinstance(hw, Hardware) else load_hardware(hw)
    small = _spec(plan.small)
    holders = [ModelHolder(small, fmt, dev) for fmt in plan.formats]
    batches = [(h, _cases(plan, h.fmt, dev, h)) for h in holders]
    total = sum(len(cases) for _, cases in batches)
    rows: list[ValidationRow] = []
    before = load_average()
    with (
        torch_threads(threads if dev == "cpu" else None) as nthreads,
        progress_bar(progress, total) as advance,
    ):
        for holder, cases in batches:
            for case in cases:
                rows.append(_run(case, device_hw, dev, stat, plan.budget_s))
                advance(case.name)
            holder.drop()  # free this format's model before the next one is built
    return ValidationReport(
        hardware=device_hw.name,
        device=dev,
        threads=nthreads,
        stat=stat,
        rows=tuple(rows),
        load=(before, load_average(), os.cpu_count() or 1),
    )


def update_band(path: str | Path, report: ValidationReport) -> Path:
    """Rewrite the Hardware file at `path` with `efficiency.band` from `report`'s residuals.

    Raises:
        ValueError: the file does not load as Hardware before or after the change.
    """
    file = Path(path)
    load_hardware(file)  # it must be valid to begin with
    doc = load_yaml_file(file)
    low, high = report.band()
    summary = report.by_class()["all"]
    eff = doc.setdefault("efficiency", {})
    eff["band"] = {
        "value": [low, high],
        "estimate": f"measured by quarch validate: 10th-90th percentile of measured/predicted over "
        f"{summary.rows} validation rows (shapes not used for calibration), {report.threads} "
        f"threads, statistic {report.stat.value}, load average {max(report.load[:2]):.1f} on "
        f"{report.load[2]} CPUs",
    }
    text = to_yaml(doc)
    with atomic_path(file) as tmp:  # checked before it replaces the valid file
        tmp.write_text(text, encoding="utf-8")
        load_hardware(tmp)
    return file
