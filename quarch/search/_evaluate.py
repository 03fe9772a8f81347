"""Scoring a design: every metric, the objective vector and the constraint values.

`Evaluator` needs no model: the proxy table gives perplexity, the performance model the rest,
so it is cheap (well under a millisecond once its caches are warm), picklable, and runs in
worker processes. Metrics are stored under `ppl`, `nll`, `bits`, and `<metric>@<scenario>`
for every per-scenario metric of `_metrics.METRICS`, read from the `PerfMetrics` field its
entry names (`cost` is None where the device has no price). Objective values are signed so
that every one is minimised (a maximised metric is negated).

Constraint values follow Optuna's convention: a design is feasible when every value is ≤ 0.
They are `memory / capacity − 1` per scenario (fits_memory), `tpot / slo − 1` per scenario
(tpot_slo_s), `ppl / (ppl_float · (1 + ε)) − 1` (ppl_max_increase), and, when the study's
engine states a kernel table, `kernel@<engine>`: +1 when the engine has no kernel for one of
the design's (weight, activation) pairs on its device (`_engine_rules.kernel_exclusion`, whose
reason `Evaluation.excluded` keeps), −1 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from quarch.search._config import bits_per_weight
from quarch.search._engine_rules import kernel_exclusion
from quarch.search._metrics import PER_SCENARIO
from quarch.search._perf import PerfMetrics, PerfModel
from quarch.search._proxy import ProxyTable
from quarch.search._space import Design, DesignSpace
from quarch.search._study import Constraints, Objective


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """A design's metrics, objective values and constraint values."""

    metrics: dict[str, float | None]
    perf: dict[str, PerfMetrics]
    values: tuple[float, ...]
    constraints: tuple[float, ...]
    excluded: str | None = None  # why the study's engine cannot serve the design

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)


class Evaluator:
    """Scores designs of one space (see the module doc)."""

    def __init__(
        self,
        space: DesignSpace,
        proxy: ProxyTable,
        perf: PerfModel,
        objectives: tuple[Objective, ...],
        constraints: Constraints,
    ) -> None:
        if proxy.eval_float_nll is None:
            raise ValueError("the proxy table needs the float model's eval NLL first")
        self.space = space
        self.proxy = proxy
        self.perf = perf
        self.objectives = objectives
        self.constraints = constraints
        self.kernel_rule = bool(_engine_kernels(space)) and space.hardware.template is None

    @property
    def float_ppl(self) -> float:
        assert self.proxy.eval_float_nll is not None
        return math.exp(self.proxy.eval_float_nll)

    def evaluate(self, design: Design, *, nll: float | None = None) -> Evaluation:
        """Score `design`; `nll` replaces the proxy with a measured eval NLL."""
        perf = self.perf.evaluate(design)
        if nll is None:
            nll = self.proxy.proxy_nll(design)
        metrics: dict[str, float | None] = {
            "ppl": math.exp(nll),
            "nll": nll,
            "bits": bits_per_weight(self.space, design),
        }
        for name, m in perf.items():
            for info in PER_SCENARIO:
                metrics[info.column(name)] = getattr(m, str(info.source))
        values = tuple(_value(metrics, o) for o in self.objectives)
        excluded = kernel_exclusion(self.space, design) if self.kernel_rule else None
        constraints = self._constraints(metrics, perf)
        if self.kernel_rule:
            constraints += (1.0 if excluded else -1.0,)
        return Evaluation(
            metrics=metrics,
            perf=perf,
            values=values,
            constraints=constraints,
            excluded=excluded,
        )

    def _constraints(
        self, metrics: dict[str, Any], perf: dict[str, PerfMetrics]
    ) -> tuple[float, ...]:
        c = self.constraints
        out: list[float] = []
        if c.fits_memory:
            out += [m.memory_bytes / m.capacity_bytes - 1.0 for m in perf.values()]
        if c.tpot_slo_s is not None:
            out += [m.tpot_s / c.tpot_slo_s - 1.0 for m in perf.values()]
        if c.ppl_max_increase is not None:
            out.append(metrics["ppl"] / (self.float_ppl * (1 + c.ppl_max_increase)) - 1.0)
        return tuple(out)

    def constraint_names(self) -> list[str]:
        c = self.constraints
        names = []
        if c.fits_memory:
            names += [f"fits@{s.name}" for s in self.perf.scenarios]
        if c.tpot_slo_s is not None:
            names += [f"tpot_slo@{s.name}" for s in self.perf.scenarios]
        if c.ppl_max_increase is not None:
            names.append("ppl_max_increase")
        if self.kernel_rule:
            names.append(f"kernel@{self.space.engine}")
        return names


def _engine_kernels(space: DesignSpace) -> tuple[object, ...]:
    from quarch.perf import load_engine

    return load_engine(space.engine).kernels


def _value(metrics: dict[str, float | None], objective: Objective) -> float:
    v = metrics[objective.key]
    if v is None:
        raise ValueError(f"objective {objective.key} has no value (no price for this device?)")
    return objective.metric.info.sign * float(v)  # every objective value is minimised
