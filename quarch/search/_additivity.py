"""Where the proxy's sum fails: measured joint costs against the sum of single-slot costs.

The proxy (`_proxy`) adds the costs of slots measured one at a time. This module measures, on
the table's own sensitivity windows (so that only the joint-versus-sum difference is seen, not
a change of text), for each design of a sample:

- **per layer group**: the design cut down to one group (every other group float), measured,
  against the sum of that group's slot costs: interactions *inside* a group (weights and the
  activations entering the same layers, attention and MLP of the same blocks);
- **across groups**: the whole design measured, against the sum of its measured per-group
  costs: interactions *between* groups (errors of early layers changing what later layers see).

The cost is the table's signal (KL from the float model by default, or Δ NLL).

**Correction** (`measure_pairs`): for every pair of non-float choices of two slots of one
group that the sample's designs hold, the pair is measured alone and its interaction
`cost(pair) − cost(a) − cost(b)` becomes a pair term of the table (`ProxyTable.pairs`). The
pairs are those of the designs given, typically the proxy front, so the correction refines
the front where it matters; pair terms inside one group keep the proxy a sum of per-group
terms, which the exact solver needs. Cross-group interactions are reported, not corrected:
`α`, fitted on uniform baselines that quantize every group at once, already absorbs their
average.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from quarch.quant import QuantConfig, config_cost, get_method
from quarch.search._config import design_config
from quarch.search._proxy import ProxyTable, sensitivity_eval
from quarch.search._space import Design, DesignSpace
from quarch.search._study import FLOAT


@dataclass(frozen=True, kw_only=True)
class GroupAdditivity:
    """One layer group over the sample: the sum of its slot costs against its measured cost.

    ratio: mean measured / predicted (> 1: its slots' errors compound, < 1: they cancel).
    max_rel_error: largest |measured − predicted| / measured.
    """

    group: str
    designs: int
    predicted: tuple[float, ...]
    measured: tuple[float, ...]

    @property
    def ratio(self) -> float:
        pairs = [(m, p) for m, p in zip(self.measured, self.predicted, strict=True) if p > 0]
        return statistics.mean(m / p for m, p in pairs) if pairs else math.nan

    @property
    def max_rel_error(self) -> float:
        pairs = zip(self.measured, self.predicted, strict=True)
        errs = [abs(m - p) / abs(m) for m, p in pairs if m]
        return max(errs, default=math.nan)


@dataclass(frozen=True, kw_only=True)
class Additivity:
    """The additivity check of a sample of designs (see the module doc).

    groups: per layer group. whole_measured / groups_sum / slots_sum: per design, the measured
    joint cost, the sum of its measured per-group costs, and the sum of its slot costs (the
    proxy without α).
    """

    signal: str
    groups: tuple[GroupAdditivity, ...]
    whole_measured: tuple[float, ...]
    groups_sum: tuple[float, ...]
    slots_sum: tuple[float, ...]

    @property
    def cross_group_ratio(self) -> float:
        """Mean whole / Σ groups (1: groups add up)."""
        pairs = [(w, g) for w, g in zip(self.whole_measured, self.groups_sum, strict=True) if g]
        return statistics.mean(w / g for w, g in pairs) if pairs else math.nan

    def worst_group(self) -> GroupAdditivity | None:
        """The group whose sum is furthest from its measurement."""
        scored = [g for g in self.groups if not math.isnan(g.max_rel_error)]
        return max(scored, key=lambda g: g.max_rel_error, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "cross_group_ratio": self.cross_group_ratio,
            "groups": [
                {
                    "group": g.group,
                    "designs": g.designs,
                    "ratio": g.ratio,
                    "max_rel_error": g.max_rel_error,
                }
                for g in self.groups
            ],
            "whole_measured": list(self.whole_measured),
            "groups_sum": list(self.groups_sum),
            "slots_sum": list(self.slots_sum),
        }


def _only_group(space: DesignSpace, design: Design, group: str) -> Design:
    """The design with every slot outside `group` float (hardware kept)."""
    values = dict(design.values)
    for slot, _ in design.items:
        if not slot.startswith("hw.") and slot.split(".")[1] != group:
            values[slot] = FLOAT
    return Design.of(values)


def _slot_sum(table: ProxyTable, design: Design, group: str | None = None) -> float:
    return sum(
        table.cost(slot, choice)
        for slot, choice in design.items
        if not slot.startswith("hw.")
        and choice != FLOAT
        and (group is None or slot.split(".")[1] == group)
    )


def _calibrated(space: DesignSpace, design: Design) -> bool:
    return any(
        get_method(space.options[c].method.name).needs_calibration
        for s, c in design.items
        if s.startswith("w.") and c != FLOAT
    )


class _Meter:
    """Measures the cost (the table's signal) of configs on the sensitivity windows."""

    def __init__(self, lab: Any, space: DesignSpace, table: ProxyTable) -> None:
        self.lab, self.space, self.table = lab, space, table
        self.ev = sensitivity_eval(lab)
        self.cache: dict[str, float] = {}

    def cost(self, design: Design) -> float:
        if all(c == FLOAT for s, c in design.items if not s.startswith("hw.")):
            return 0.0
        if design.key not in self.cache:
            config: QuantConfig = design_config(self.space, design, seed=self.lab.settings.seed)
            calib = self.lab.float_stats() if _calibrated(self.space, design) else None
            nll, kl = config_cost(self.ev, config, calib=calib, weight_cache=self.lab.cache)
            delta = nll - self.ev.base_nll
            self.cache[design.key] = kl if self.table.signal == "kl" else delta
        return self.cache[design.key]


def check_additivity(
    lab: Any, space: DesignSpace, table: ProxyTable, designs: list[Design]
) -> Additivity:
    """Measure how far the sum of slot costs is from the measured cost, per layer group and
    across groups, over `designs` (see the module doc)."""
    meter = _Meter(lab, space, table)
    per_group: dict[str, tuple[list[float], list[float]]] = {g.name: ([], []) for g in space.groups}
    whole, groups_sum, slots_sum = [], [], []
    for design in designs:
        total = 0.0
        for g in space.groups:
            part = _only_group(space, design, g.name)
            predicted = _slot_sum(table, design, g.name)
            if predicted == 0.0:
                continue
            measured = meter.cost(part)
            per_group[g.name][0].append(predicted)
            per_group[g.name][1].append(measured)
            total += measured
        whole.append(meter.cost(design))
        groups_sum.append(total)
        slots_sum.append(_slot_sum(table, design))
    groups = tuple(
        GroupAdditivity(group=name, designs=len(p), predicted=tuple(p), measured=tuple(m))
        for name, (p, m) in per_group.items()
    )
    return Additivity(
        signal=table.signal,
        groups=groups,
        whole_measured=tuple(whole),
        groups_sum=tuple(groups_sum),
        slots_sum=tuple(slots_sum),
    )


def group_pairs(space: DesignSpace, designs: list[Design]) -> list[tuple[tuple[str, str], ...]]:
    """Every pair of non-float (slot, choice) of one group held by some design, once."""
    seen: dict[str, tuple[tuple[str, str], ...]] = {}
    for design in designs:
        for g in space.groups:
            chosen = sorted(
                (s, c)
                for s, c in design.items
                if not s.startswith("hw.") and c != FLOAT and s.split(".")[1] == g.name
            )
            for i, a in enumerate(chosen):
                for b in chosen[i + 1 :]:
                    seen.setdefault(ProxyTable.pair_key(a, b), (a, b))
    return list(seen.values())


def measure_pairs(
    lab: Any, space: DesignSpace, table: ProxyTable, designs: list[Design]
) -> dict[str, tuple[float, float]]:
    """Measure the pair terms of the within-group pairs `designs` hold and store them in
    `table.pairs` (pairs measured before are kept); returns the new ones."""
    ev = sensitivity_eval(lab)
    reference = {s: (FLOAT if not s.startswith("hw.") else c[0]) for s, c in space.slots()}
    new: dict[str, tuple[float, float]] = {}
    for a, b in group_pairs(space, designs):
        key = ProxyTable.pair_key(a, b)
        if key in table.pairs:
            continue
        design = Design.of({**reference, a[0]: a[1], b[0]: b[1]})
        config = design_config(space, design, seed=lab.settings.seed)
        calib = lab.float_stats() if _calibrated(space, design) else None
        nll, kl = config_cost(ev, config, calib=calib, weight_cache=lab.cache)
        ea = table.entries[ProxyTable.key(*a)]
        eb = table.entries[ProxyTable.key(*b)]
        delta = nll - ev.base_nll
        new[key] = (delta - ea.delta_nll - eb.delta_nll, kl - ea.kl - eb.kl)
    table.pairs.update(new)
    return new
