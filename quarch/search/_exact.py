"""The exact Pareto front of the additive proxy: every design no other design beats.

The proxy NLL is a sum over slots (`_proxy`: `nll_float + Σ α_kind · cost(slot, choice)`), and
the performance model prices each layer's operators from that layer's formats alone, so every
objective splits, to within the checks below, into a constant plus one term per layer group:

    f(design) = f(ref) + Σ_g [ f(ref with group g as in design) − f(ref) ]

where `ref` is the design with every slot at its first choice. Choosing one combination of
slot choices per group to minimise such sums is a multiple-choice knapsack, and its whole
Pareto front is found exactly by the Nemhauser-Ullmann merge ("Discrete dynamic programming and
capital allocation", Management Science 15(9), 1969, https://doi.org/10.1287/mnsc.15.9.494):
add the groups one at a time, keeping after each only the partial sums no other partial sum
dominates. Dropping a dominated partial sum is safe because the terms still to come are added
to both alike, so it stays dominated. No budget is discretised: the result is the front at
*every* budget at once (a budget sweep is reading it off, `best_within`), with no error bound
needed. Perplexity is merged as the proxy NLL (exp is monotone, so dominance is unchanged).

Constraints are merged as extra dimensions (memory / capacity − 1 and the like are linear in
the metric): the best feasible design at any budget is then among the merged points. Every
design of the merged front is finally scored by the `Evaluator` itself (the true, undecomposed
objectives) and the feasible, non-dominated ones are returned; `decomposition_error` says how
far the group sum was from that score, so a performance model that stops being separable (an
engine-wide term that depends on the whole design) shows up as a number, not a silent error.

Hardware slots are not split: the merge runs once per device (or per combination of the
accelerator template's categorical parameters) and the fronts are joined. A template parameter
with a numeric range has no finite set of choices: the solver refuses it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._metrics import Metric
from quarch.search._pareto import pareto_indices
from quarch.search._space import Design

MAX_MERGED = 200_000
"""Largest partial front the merge keeps before it refuses (memory and time stay bounded)."""


@dataclass(frozen=True, kw_only=True)
class ExactFront:
    """The exact front of the additive proxy.

    designs: feasible, non-dominated under the evaluator's own objectives, sorted by the first
        objective. merged: designs the merge produced (before the final scoring).
    decomposition_error: per objective key, the largest |group sum − evaluator| / |evaluator|
        over the merged designs (0 when the objective is exactly additive over groups).
    """

    designs: tuple[Design, ...]
    evaluations: tuple[Evaluation, ...]
    merged: int
    decomposition_error: dict[str, float]


def _memory_parts(e: Evaluation, scenario: str) -> tuple[float, float]:
    """(weights + KV cache, activation peak) bytes of a design at a scenario."""
    m = e.perf[scenario]
    return m.memory_bytes - m.activation_bytes, m.activation_bytes


def _dims(ev: Evaluator, e: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """The vectors the merge adds and takes the maximum of, for one evaluation.

    Summed: each objective (perplexity as NLL; memory as weights + KV cache, which add up
    over layers), then each constraint (the perplexity one as NLL, a memory one as weights +
    KV cache over capacity). Maximised: the activation peak of each memory objective and
    constraint (`quarch.perf`'s peak is the largest operator's, a maximum over layers)."""
    nll = float(e.metrics["nll"] or 0.0)
    summed: list[float] = []
    peaks: list[float] = []
    for o, v in zip(ev.objectives, e.values, strict=True):
        if o.metric is Metric.PPL:
            summed.append(nll)
        elif o.metric is Metric.MEMORY and o.scenario is not None:
            fixed, peak = _memory_parts(e, o.scenario)
            summed.append(fixed)
            peaks.append(peak)
        else:
            summed.append(v)
    for name, c in zip(ev.constraint_names(), e.constraints, strict=True):
        if name == "ppl_max_increase":
            summed.append(nll)
        elif name.startswith("fits@"):
            scenario = name.removeprefix("fits@")
            fixed, peak = _memory_parts(e, scenario)
            cap = e.perf[scenario].capacity_bytes
            summed.append(fixed / cap)
            peaks.append(peak / cap)
        else:
            summed.append(c)
    return np.asarray(summed, dtype=np.float64), np.asarray(peaks, dtype=np.float64)


def _objective_estimate(ev: Evaluator, summed: np.ndarray, peaks: np.ndarray) -> list[float]:
    """Each objective's value as the merge sees it (memory: summed part + peak)."""
    out, p = [], 0
    for k, o in enumerate(ev.objectives):
        value = float(summed[k])
        if o.metric is Metric.MEMORY and o.scenario is not None:
            value += float(peaks[p])
            p += 1
        out.append(value)
    return out


def _group_slots(ev: Evaluator) -> list[list[tuple[str, tuple[Any, ...]]]]:
    """Per group, its slots with their choices (hardware slots excluded)."""
    slots = dict(ev.space.slots())
    out = []
    for g in ev.space.groups:
        mine = [
            (name, slots[name])
            for name in slots
            if not name.startswith("hw.") and name.split(".")[1] == g.name
        ]
        out.append(mine)
    return out


def _hardware_choices(ev: Evaluator) -> list[dict[str, Any]]:
    """Every hardware assignment to merge over: each device, or each combination of the
    template's categorical parameters."""
    hw = ev.space.hardware
    if hw.template is not None:
        ranged = [p.name for p in hw.template if p.low is not None]
        if ranged:
            raise ValueError(
                f"search.sampler: exact needs categorical hardware parameters; ranges: {ranged}"
            )
    names = [n for n, _ in ev.space.slots() if n.startswith("hw.")]
    choices = [dict(ev.space.slots())[n] for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def _nondominated(vectors: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row dominates (minimising; of equal rows, one is kept).

    Rows are visited in lexicographic order, so a row can only be dominated by one visited
    before it; each is compared with the kept rows at once."""
    order = np.lexsort(vectors.T[::-1])
    kept: list[int] = []
    kept_rows = np.empty((0, vectors.shape[1]))
    for i in order:
        row = vectors[i]
        if kept_rows.shape[0] and bool(np.any(np.all(kept_rows <= row, axis=1))):
            continue  # dominated by (or equal to) a kept row
        kept.append(int(i))
        kept_rows = np.vstack([kept_rows, row])
    return np.asarray(kept, dtype=np.int64)


Term = tuple[tuple[Any, ...], np.ndarray, np.ndarray]
"""One choice of a group: its slot choices, its summed term and its peak term."""


def _merge(
    terms: Sequence[list[Term]], width: int, peaks: int
) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The Nemhauser-Ullmann merge: per group its choices' terms; returns the non-dominated
    (choice index per group, [summed | peak] vector) pairs. A partial result dominated in the
    sums and the peaks stays dominated whatever is added to both, or maximised with both."""
    picks = np.zeros((1, 0), dtype=np.int64)
    acc = np.concatenate([np.zeros(width), np.full(peaks, -np.inf)])[None, :]
    for group in terms:
        vec_sum = np.stack([v for _, v, _ in group])  # [choices, width]
        vec_peak = np.stack([q for _, _, q in group]).reshape(len(group), peaks)
        new_sum = (acc[:, None, :width] + vec_sum[None, :, :]).reshape(-1, width)
        new_peak = np.maximum(acc[:, None, width:], vec_peak[None, :, :]).reshape(-1, peaks)
        new = np.concatenate([new_sum, new_peak], axis=1)
        parent = np.repeat(np.arange(acc.shape[0]), len(group))
        child = np.tile(np.arange(len(group)), acc.shape[0])
        keep = _nondominated(new)
        if keep.size > MAX_MERGED:
            raise ValueError(
                f"search.sampler: exact: the partial front has {keep.size} designs "
                f"(> {MAX_MERGED}); use fewer objectives or groups"
            )
        picks = np.concatenate([picks[parent[keep]], child[keep, None]], axis=1)
        acc = new[keep]
    return [(tuple(int(x) for x in p), a) for p, a in zip(picks, acc, strict=True)]


def _with(values: dict[str, Any], slots: list[tuple[str, Any]], combo: tuple[Any, ...]) -> Design:
    return Design.of({**values, **dict(zip([n for n, _ in slots], combo, strict=True))})


def _peak_sum(ev: Evaluator, design: Design) -> float:
    return float(_dims(ev, ev.evaluate(design))[1].sum())


def _low_peak(
    ev: Evaluator, groups: list[list[tuple[str, Any]]], ref: dict[str, Any]
) -> dict[str, Any]:
    """A design with every group at its lowest-peak choice, against which each group's own
    peak is read: a group's peak shows only where it exceeds every other group's, so the
    others are held as low as they go. Start from the uniform choice (the same combination in
    every group) with the lowest peak, then minimise group by group with the others held."""
    combos = [list(itertools.product(*(c for _, c in slots))) for slots in groups]
    common = [c for c in combos[0] if all(c in other for other in combos[1:])]

    def uniform(c: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(ref)
        for slots in groups:
            out.update(zip([n for n, _ in slots], c, strict=True))
        return out

    low = min((uniform(c) for c in common), key=lambda v: _peak_sum(ev, Design.of(v)), default=ref)
    for _ in range(2):
        for slots, options in zip(groups, combos, strict=True):
            best = min(options, key=lambda c: _peak_sum(ev, _with(low, slots, c)))
            low.update(zip([n for n, _ in slots], best, strict=True))
    return low


def _solve_hardware(ev: Evaluator, hw: dict[str, Any]) -> list[tuple[Design, list[float]]]:
    """Merged designs, with the objective values the merge assigns them, on one hardware."""
    groups = _group_slots(ev)
    ref_values = {name: choices[0] for name, choices in ev.space.slots()}
    ref_values.update(hw)
    base, base_peaks = _dims(ev, ev.evaluate(Design.of(ref_values)))
    low = _low_peak(ev, groups, ref_values) if base_peaks.size else ref_values
    terms: list[list[Term]] = []
    for slots in groups:
        options: list[Term] = []
        for combo in itertools.product(*(c for _, c in slots)):
            summed, _ = _dims(ev, ev.evaluate(_with(ref_values, slots, combo)))
            _, peak = (
                _dims(ev, ev.evaluate(_with(low, slots, combo)))
                if base_peaks.size
                else (None, base_peaks)
            )
            options.append((combo, summed - base, peak))
        terms.append(options)
    out = []
    width = base.size
    for picks, acc in _merge(terms, width, base_peaks.size):
        values = dict(ref_values)
        for slots, options, i in zip(groups, terms, picks, strict=True):
            values.update(zip([n for n, _ in slots], options[i][0], strict=True))
        estimate = _objective_estimate(ev, base + acc[:width], acc[width:])
        out.append((Design.of(values), estimate))
    return out


def exact_front(ev: Evaluator) -> ExactFront:
    """The exact Pareto front of the evaluator's objectives over its space (see the module doc).

    Raises:
        ValueError: a hardware parameter with a numeric range, or a partial front over
            `MAX_MERGED` designs.
    """
    merged: list[tuple[Design, list[float]]] = []
    for hw in _hardware_choices(ev):
        merged += _solve_hardware(ev, hw)
    scored = [(d, ev.evaluate(d), vec) for d, vec in merged]
    errors = dict.fromkeys((o.key for o in ev.objectives), 0.0)
    for _, e, vec in scored:
        true = _objective_estimate(ev, *_dims(ev, e))
        for k, o in enumerate(ev.objectives):
            scale = abs(true[k]) or 1.0
            errors[o.key] = max(errors[o.key], abs(vec[k] - true[k]) / scale)
    feasible = [(d, e) for d, e, _ in scored if e.feasible]
    idx = pareto_indices([e.values for _, e in feasible])
    front = sorted((feasible[i] for i in idx), key=lambda de: de[1].values)
    return ExactFront(
        designs=tuple(d for d, _ in front),
        evaluations=tuple(e for _, e in front),
        merged=len(merged),
        decomposition_error=errors,
    )


def best_within(front: ExactFront, objective: int, budget: float) -> Evaluation | None:
    """The front design with the lowest first objective among those whose `objective`-th value
    is at most `budget` (a point of the budget sweep); None when none is."""
    within = [e for e in front.evaluations if e.values[objective] <= budget]
    return min(within, key=lambda e: e.values[0], default=None)


def thin(evaluations: Sequence[Evaluation], count: int) -> list[int]:
    """Up to `count` indices spread over the front: farthest-point sampling in the objective
    space scaled to [0, 1] per objective, starting from each objective's best design."""
    if len(evaluations) <= count:
        return list(range(len(evaluations)))
    pts = np.asarray([e.values for e in evaluations], dtype=np.float64)
    span = pts.max(axis=0) - pts.min(axis=0)
    pts = (pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)
    chosen: list[int] = []
    for k in range(pts.shape[1]):
        best = int(np.argmin(pts[:, k]))
        if best not in chosen and len(chosen) < count:
            chosen.append(best)
    dist = np.full(pts.shape[0], math.inf)
    for c in chosen:
        dist = np.minimum(dist, np.linalg.norm(pts - pts[c], axis=1))
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[nxt], axis=1))
    return sorted(chosen)
