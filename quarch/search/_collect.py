"""Turning a finished run's live objects (space, proxy table, performance model, points) into
the plain-data `StudyResult` that `explore` returns and stores.

Noise marks: every measured point's `measured` record carries its perplexity interval
(`ppl_low`, `ppl_high`, from its window NLLs) and `vs_float`, the perplexity ratio to the
float model with its 95 % paired interval over the same windows (`quarch.eval.ratio_interval`);
front points also carry `within_noise_of`, the other front points (and `float`) whose paired
difference from them has an interval that holds zero: designs the measurement cannot tell
apart."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from quarch.search._outputs import design_summary, hardware_label
from quarch.search._result import (
    HardwareFacts,
    LayerFormats,
    PointResult,
    Sensitivity,
    StudyResult,
)
from quarch.search._study import FLOAT

if TYPE_CHECKING:
    from quarch.search._explore import Point
    from quarch.search._perf import PerfModel
    from quarch.search._proxy import ProxyTable
    from quarch.search._space import DesignSpace
    from quarch.search._study import StudySpec


def collect(
    *,
    spec: StudySpec,
    space: DesignSpace,
    perf: PerfModel,
    proxy: ProxyTable,
    model_name: str,
    points: list[Point],
    front: list[Point],
    proxy_front: list[Point],
    configs: dict[str, str],
    trials: int,
    proxy_error: dict[str, float],
    eval_info: dict[str, Any],
    timings: dict[str, float],
) -> StudyResult:
    """The study's result as data (see `quarch.search._result`)."""
    noise = noise_marks(points, front)
    records = tuple(_record(space, p, configs.get(p.key), noise.get(p.key)) for p in points)
    hardware: dict[str, HardwareFacts] = {}
    for p in points:
        label = hardware_label(space, p.design)
        if p.final is not None and label not in hardware:
            hardware[label] = _hardware_facts(perf.hardware(p.design))
    return StudyResult(
        study=spec.to_dict(),
        model_name=model_name,
        num_layers=space.layout.num_layers,
        trials=trials,
        points=records,
        front=tuple(p.key for p in front),
        proxy_front=tuple(p.key for p in proxy_front),
        proxy_error={k: None if math.isnan(v) else v for k, v in proxy_error.items()},
        eval_info=eval_info,
        sensitivity=_sensitivity(space, proxy),
        hardware=hardware,
        formats=_formats(space),
        timings=dict(timings),
    )


def _is_float(p: Point) -> bool:
    return all(v == FLOAT for k, v in p.design.items if not k.startswith("hw."))


def noise_marks(points: list[Point], front: list[Point]) -> dict[str, dict[str, Any]]:
    """Per measured point's key: `vs_float` (ratio to float with its paired interval) and, for
    front points, `within_noise_of` (see the module doc)."""
    from quarch.eval import paired_interval, ratio_interval

    measured = [p for p in points if p.measured is not None and p.measured.window_nll]
    ref = next((p for p in measured if p.baseline and _is_float(p)), None)
    out: dict[str, dict[str, Any]] = {}
    for p in measured:
        assert p.measured is not None
        if ref is not None and ref.measured is not None and not _is_float(p):
            out[p.key] = {
                "vs_float": ratio_interval(p.measured.window_nll, ref.measured.window_nll)
            }
    fronts = [p for p in front if p.measured is not None and p.measured.window_nll]
    for p in fronts:
        assert p.measured is not None
        same: list[str] = []
        for q in fronts:
            assert q.measured is not None
            if (
                q.key != p.key
                and paired_interval(p.measured.window_nll, q.measured.window_nll).contains_zero
            ):
                same.append(q.name)
        vs = out.get(p.key, {}).get("vs_float")
        if ref is not None and ref.name not in same and vs is not None and vs["within_noise"]:
            same.append(ref.name)
        out.setdefault(p.key, {})["within_noise_of"] = same
    return out


def _record(
    space: DesignSpace, p: Point, config: str | None, noise: dict[str, Any] | None = None
) -> PointResult:
    layers = tuple(
        LayerFormats(attn=a, mlp=m, act=x, kv=k) for a, m, x, k in space.layer_choices(p.design)
    )
    final = p.final
    return PointResult(
        name=p.name,
        key=p.key,
        baseline=p.baseline,
        trial=p.trial,
        design=p.design.values,
        summary=design_summary(space, p.design),
        hardware=hardware_label(space, p.design),
        layers=layers,
        proxy=dict(p.proxy.metrics),
        feasible=p.best.feasible,
        measured=None if p.measured is None else {**p.measured.to_dict(), **(noise or {})},
        final=None if final is None else dict(final.metrics),
        perf={} if final is None else {s: m.to_dict() for s, m in final.perf.items()},
        config=config,
        excluded=p.best.excluded,
    )


def _hardware_facts(hw: Any) -> HardwareFacts:
    return HardwareFacts(
        display_name=str(hw.display_name),
        memory=tuple((str(lv.name), float(lv.bytes_per_s)) for lv in hw.memory),
        matrix_flops_per_s={str(k): float(v) for k, v in hw.matrix_flops_per_s.items()},
    )


def _formats(space: DesignSpace) -> dict[str, tuple[str, float]]:
    """Every choice of the space: the format its tensor is stored in, and its bits."""
    out: dict[str, tuple[str, float]] = {}
    for g in space.groups:
        for choice in (*g.weight, *g.act, *g.kv):
            fmt = space.formats[choice]
            out.setdefault(choice, (str(fmt), float(fmt.bits_per_element)))
    return out


def _sensitivity(space: DesignSpace, table: ProxyTable) -> Sensitivity:
    order = {g.name: i for i, g in enumerate(space.groups)}
    slots = sorted({e.slot for e in table.entries.values()}, key=lambda s: _slot_order(s, order))
    choices: list[str] = []
    for entry in table.entries.values():
        if entry.choice not in choices:
            choices.append(entry.choice)
    cost = {key: table.cost(e.slot, e.choice) for key, e in table.entries.items()}
    return Sensitivity(signal=table.signal, slots=tuple(slots), choices=tuple(choices), cost=cost)


def _slot_order(slot: str, groups: dict[str, int]) -> tuple[int, int, str]:
    head, group, *rest = slot.split(".")
    kind = {"w": 0, "a": 1, "kv": 2}[head]
    return groups.get(group, 0), kind, ".".join(rest)
