"""The exact solver: its front equals brute-force enumeration, on the synthetic proxy over
SmolLM2-135M's real layout and the real performance model."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from quarch.search import SearchSettings, run_search
from quarch.search._exact import best_within, exact_front, thin
from quarch.search._pareto import pareto_indices
from quarch.search._runner import COMPLETE

from .synthetic import synthetic

SMALL = {
    "space": {
        "groups": 2,
        "weight": ["float", "int8", "mxfp4"],
        "act": ["float", "fp8_e4m3_c"],
        "kv": ["float", "fp8_e4m3"],
    },
    "search": {"trials": 40, "population": 8},
}


def _brute_force(ev):  # type: ignore[no-untyped-def]
    """Every feasible design's objective values, and the front among them."""
    params = ev.space.params
    evals = []
    for combo in itertools.product(*(p.choices for p in params)):
        e = ev.evaluate(ev.space.design(dict(zip([p.name for p in params], combo, strict=True))))
        if e.feasible:
            evals.append(tuple(e.values))
    return evals, sorted({evals[i] for i in pareto_indices(evals)})


def _covers(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """`a` is no worse than `b` in every objective, up to float rounding (the performance
    model sums the same terms in another order for different designs: 1-ulp differences)."""
    return all(x <= y + 1e-12 * abs(y) for x, y in zip(a, b, strict=True))


def _assert_exact(ev) -> None:  # type: ignore[no-untyped-def]
    """Every point of the exact front is on the enumerated front, and every enumerated front
    point is matched (up to rounding) by one of the exact front."""
    front = [tuple(e.values) for e in exact_front(ev).evaluations]
    every, enumerated = _brute_force(ev)
    for b in enumerated:
        assert any(_covers(a, b) for a in front), b
    assert set(front) <= set(enumerated)  # nothing enumerated dominates a front point
    assert len(every) > len(front)


@pytest.mark.parametrize("objectives", [["ppl", "bits"], ["ppl", "tpot", "memory"]])
def test_exact_front_equals_enumeration(objectives: list[str]) -> None:
    _, ev = synthetic({**SMALL, "objectives": objectives})
    _assert_exact(ev)
    front = exact_front(ev)
    # the group sum is the evaluator's value (memory through its activation-peak maximum)
    assert max(front.decomposition_error.values()) < 1e-9
    assert front.merged >= len(front.designs)


def test_memory_constraint_keeps_the_best_feasible_design() -> None:
    # a tight memory limit: only designs that fit survive, and the best of them is found
    data = {**SMALL, "objectives": ["ppl", "bits"], "constraints": {"fits_memory": True}}
    data["scenarios"] = [{"name": "serve", "batch": 1024, "prompt_len": 2048, "output_len": 2048}]
    _, ev = synthetic(data)
    assert not all(ev.evaluate(d).feasible for _, d in ev.space.baselines())  # it binds
    _assert_exact(ev)


def test_budget_sweep_reads_the_front() -> None:
    _, ev = synthetic({**SMALL, "objectives": ["ppl", "bits"]})
    front = exact_front(ev)
    bits = sorted(e.values[1] for e in front.evaluations)
    best = best_within(front, 1, bits[len(bits) // 2])
    assert best is not None and best.values[1] <= bits[len(bits) // 2]
    assert best_within(front, 1, bits[0] - 1.0) is None
    # a larger budget never gives a worse perplexity
    ppl = [best_within(front, 1, b).values[0] for b in bits]  # type: ignore[union-attr]
    assert ppl == sorted(ppl, reverse=True)


def test_thin_keeps_each_objectives_best() -> None:
    _, ev = synthetic({**SMALL, "objectives": ["ppl", "tpot", "memory"]})
    front = exact_front(ev)
    chosen = thin(front.evaluations, 5)
    assert len(chosen) == 5
    for k in range(3):
        best = min(range(len(front.evaluations)), key=lambda i: front.evaluations[i].values[k])
        assert front.evaluations[best].values[k] in {front.evaluations[i].values[k] for i in chosen}


def test_exact_sampler_stores_the_front(tmp_path: Path) -> None:
    spec, ev = synthetic({**SMALL, "objectives": ["ppl", "bits"], "search": {"sampler": "exact"}})
    front = exact_front(ev)
    trials = len(front.designs) + 10
    study = run_search(
        name="s",
        url=f"sqlite:///{tmp_path / 'study.db'}",
        settings=SearchSettings(**{**spec.search.__dict__, "trials": trials}),
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
    )
    stored = {t.user_attrs["key"] for t in study.get_trials(states=COMPLETE)}
    assert len(study.get_trials(states=COMPLETE)) == trials
    assert {d.key for d in front.designs} <= stored


def test_exact_refuses_template_ranges() -> None:
    data = {
        **SMALL,
        "hardware": {
            "template": {
                "systolic_rows": 128,
                "systolic_cols": 128,
                "num_arrays": 16,
                "clock_hz": {"low": 1.0e9, "high": 2.0e9},
                "sram_bytes": 150e6,
                "sram_bytes_per_s": 50e12,
                "memory_tech": "lpddr5x",
                "memory_stacks_or_channels": 4,
            }
        },
        "search": {"sampler": "exact"},
    }
    with pytest.raises(ValueError, match=r"exact cannot sample hardware\.template ranges"):
        synthetic(data)


@pytest.mark.slow  # the GP sampler fits a Gaussian process per trial: ~20 s for 14 trials
def test_gp_sampler_runs(tmp_path: Path) -> None:
    spec, ev = synthetic({**SMALL, "search": {"sampler": "gp", "trials": 14, "population": 4}})
    study = run_search(
        name="s",
        url=f"sqlite:///{tmp_path / 'study.db'}",
        settings=spec.search,
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
    )
    assert len(study.get_trials(states=COMPLETE)) == 14
