"""The metrics a study can score and optimise: each declared once, here.

A `MetricInfo` holds everything the rest of quarch needs about a metric: its key (what study
files name and metrics dicts are keyed by), whether it is per scenario, the `PerfMetrics` field
it is read from (per-scenario metrics), its SI unit, its direction, and how it is shown (the
report's axis title and scale, the table's header and text). The objectives parser, the
evaluator, the front table, the CSV and the report's axes and cards all read `METRICS`.

Adding an objective:

- a per-scenario metric that `PerfMetrics` already carries (say `e2e_latency_s`): one member of
  `Metric` and one entry of `METRICS` below, nothing else;
- any other metric: the same, plus the line that computes its value (a `PerfMetrics` field in
  `_perf.py`, or a design-level value in `Evaluator.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from quarch._checks import choice


class Metric(StrEnum):
    """What an objective measures (its direction is in `METRICS`)."""

    PPL = "ppl"  # perplexity (proxy during the search, measured on the final front)
    BITS = "bits"  # storage bits per weight of the blocks' linear layers, scales included
    TPOT = "tpot"  # time per output token, s
    TTFT = "ttft"  # time to first token, s
    MEMORY = "memory"  # bytes on the most loaded device
    ENERGY = "energy"  # joules per token
    COST = "cost"  # $ per million tokens

    @property
    def info(self) -> MetricInfo:
        return METRICS[self]

    @property
    def per_scenario(self) -> bool:
        return self.info.per_scenario

    @property
    def unit(self) -> str:
        return self.info.unit


class Direction(StrEnum):
    """Whether smaller or larger values are better."""

    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, kw_only=True)
class MetricInfo:
    """One metric: what it is, where its value comes from and how it is shown.

    key: the metric's name in study files and metrics dicts (`tpot`, stored as `tpot@serve`).
    title: a few words for plot axes (`time per output token`).
    header: a short column header (`TPOT`).
    unit: the SI unit of the stored value (`s`; empty for plain numbers).
    direction: MIN when smaller is better.
    source: the `PerfMetrics` field a per-scenario metric reads; None for design-level metrics.
    scale: displayed value = stored value × scale.
    shown_unit: the unit of the displayed value (`ms`).
    text: a `str.format` template of the displayed value (`{:.3f} ms`).
    """

    key: str
    title: str
    header: str
    unit: str
    direction: Direction = Direction.MIN
    source: str | None = None
    scale: float = 1.0
    shown_unit: str = ""
    text: str = "{:.4g}"

    @property
    def per_scenario(self) -> bool:
        return self.source is not None

    @property
    def sign(self) -> float:
        """+1 or −1: the factor that turns the metric into a minimised objective value."""
        return 1.0 if self.direction is Direction.MIN else -1.0

    @property
    def axis_title(self) -> str:
        return f"{self.title} ({self.shown_unit})" if self.shown_unit else self.title

    def column(self, scenario: str) -> str:
        """The key this metric is stored under in a metrics dict (at `scenario` if per
        scenario)."""
        return f"{self.key}@{scenario}" if self.per_scenario else self.key

    def shown(self, value: float) -> float:
        return value * self.scale

    def format(self, value: Any) -> str:
        """The table text of a stored value (`—` for none)."""
        if value is None:
            return "—"
        return self.text.format(self.shown(float(value)))


def _shown(scale: float, unit: str, text: str) -> dict[str, Any]:
    """The display fields of a metric shown as `text` in `unit` (stored value × `scale`)."""
    return {"scale": scale, "shown_unit": unit, "text": text}


_MS = _shown(1e3, "ms", "{:.3f} ms")

METRICS: dict[Metric, MetricInfo] = {
    Metric.BITS: MetricInfo(key="bits", title="bits per weight", header="bits/w", unit="bit",
                            text="{:.2f}"),
    Metric.PPL: MetricInfo(key="ppl", title="perplexity", header="ppl", unit="", text="{:.3f}"),
    Metric.TPOT: MetricInfo(key="tpot", title="time per output token", header="TPOT", unit="s",
                            source="tpot_s", **_MS),
    Metric.TTFT: MetricInfo(key="ttft", title="time to first token", header="TTFT", unit="s",
                            source="ttft_s", **_MS),
    Metric.MEMORY: MetricInfo(key="memory", title="memory per device", header="memory", unit="B",
                              source="memory_bytes", **_shown(1e-6, "MB", "{:.0f} MB")),
    Metric.ENERGY: MetricInfo(key="energy", title="energy per token", header="energy/tok",
                              unit="J/token", source="energy_per_token_j",
                              **_shown(1e3, "mJ", "{:.3g} mJ")),
    Metric.COST: MetricInfo(key="cost", title="cost per million tokens", header="$/Mtok",
                            unit="$/Mtok", source="cost_per_million_tokens_usd",
                            **_shown(1.0, "$", "${:.4g}")),
}  # fmt: skip
"""Every metric, in the order tables and reports show them."""

PER_SCENARIO: tuple[MetricInfo, ...] = tuple(m for m in METRICS.values() if m.per_scenario)


def metric_info(key: str) -> MetricInfo:
    """The registry entry of a metric key (`tpot`, or a stored `tpot@serve`).

    Raises:
        ValueError: an unknown metric, naming the valid ones.
    """
    return METRICS[choice(Metric, key.partition("@")[0], "metric")]


def stored_value(metrics: dict[str, Any], info: MetricInfo, scenario: str) -> float | None:
    """A metric's value in a metrics dict (at `scenario` when per scenario), or None."""
    value = metrics.get(info.column(scenario))
    return None if value is None else float(value)
