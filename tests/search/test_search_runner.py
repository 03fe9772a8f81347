"""The search runner: every sampler, seeds, constraints, resuming, workers (synthetic proxy)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from quarch.search import SearchSettings, run_search
from quarch.search._runner import COMPLETE, _Mirror, database_url, study_lock

from .synthetic import synthetic


def _run(tmp_path: Path, spec, evaluator, trials: int, **kw) -> optuna.Study:
    settings = SearchSettings(**{**spec.search.__dict__, "trials": trials, **kw})
    return run_search(
        name="s",
        url=f"sqlite:///{tmp_path / 'study.db'}",
        settings=settings,
        space=evaluator.space,
        evaluator=evaluator,
        seeds=evaluator.space.baselines(),
    )


@pytest.mark.parametrize("sampler", ["nsga2", "nsga3", "tpe", "random", "grid", "exact"])
def test_every_sampler_runs_and_starts_from_the_baselines(tmp_path: Path, sampler: str) -> None:
    spec, ev = synthetic({"search": {"sampler": sampler, "trials": 14, "population": 4}})
    study = _run(tmp_path, spec, ev, 14)
    trials = study.get_trials(states=COMPLETE)
    assert len(trials) == 14
    seeds = [t for t in trials if "seed" in t.user_attrs]
    # float, 3 weight formats, 1 act, 1 kv baseline, enqueued first (the grid sampler ignores
    # enqueued params' origin but still evaluates them first)
    assert [t.user_attrs["seed"] for t in seeds][:1] == ["float"]
    assert len(seeds) == 6
    for t in trials:
        design = ev.space.design(t.params)
        assert t.user_attrs["key"] == design.key
        assert list(t.values) == list(ev.evaluate(design).values)
        # the named constraint (Optuna 5), and the list optuna-dashboard reads, which Optuna
        # also reads as constraint "0"
        assert t.system_attrs["constraints"] == [t.system_attrs["constraints:fits@serve"]]
        assert set(t.constraints) == {"fits@serve", "0"}


def test_resume_keeps_stored_trials_and_extends(tmp_path: Path) -> None:
    spec, ev = synthetic()
    first = _run(tmp_path, spec, ev, 10)
    before = {t.number: (t.params, t.values) for t in first.get_trials(states=COMPLETE)}
    again = _run(tmp_path, spec, ev, 10)  # already done: nothing new
    assert len(again.get_trials(states=COMPLETE)) == 10
    more = _run(tmp_path, spec, ev, 25)
    after = {t.number: (t.params, t.values) for t in more.get_trials(states=COMPLETE)}
    assert len(after) == 25
    assert all(after[n] == v for n, v in before.items())
    # seeds are not enqueued twice
    assert sum("seed" in t.user_attrs for t in more.get_trials()) == 6


def _feasible_share(tmp_path: Path, sampler: str) -> float:
    # a TPOT limit only designs with most weights at 4 bits meet (float: 0.68 ms, all-4-bit
    # weights: 0.63 ms at the default scenario, see test_search_perf)
    spec, ev = synthetic(
        {
            "constraints": {"tpot_slo_s": 0.00064},
            "search": {"sampler": sampler, "trials": 60, "population": 10},
        }
    )
    study = _run(tmp_path / sampler, spec, ev, 60)
    trials = study.get_trials(states=COMPLETE)[20:]
    return sum(all(v <= 0 for v in t.constraints.values()) for t in trials) / len(trials)


def test_constraints_steer_nsga2(tmp_path: Path) -> None:
    (tmp_path / "nsga2").mkdir()
    (tmp_path / "random").mkdir()
    assert _feasible_share(tmp_path, "nsga2") > _feasible_share(tmp_path, "random")


@pytest.mark.slow
def test_two_workers_share_the_study(tmp_path: Path) -> None:
    spec, ev = synthetic({"search": {"trials": 30, "population": 6}}, slow=True)
    settings = SearchSettings(**{**spec.search.__dict__})
    study = run_search(
        name="w",
        url=f"sqlite:///{tmp_path / 'w.db'}",
        settings=settings,
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
        workers=2,
    )
    trials = study.get_trials(states=COMPLETE)
    assert len(trials) == 30  # exactly: the last store of each worker is checked under a lock
    assert len({t.user_attrs["uid"].split("-")[0] for t in trials}) == 2


def test_samplers_see_each_constraint_once(tmp_path: Path) -> None:
    spec, ev = synthetic({"constraints": {"tpot_slo_s": 0.00064}})
    stored = _run(tmp_path, spec, ev, 8)
    names = ev.constraint_names()
    for t in stored.get_trials(states=COMPLETE):  # stored: named, and the dashboard's list
        assert t.system_attrs["constraints"] == [t.constraints[n] for n in names]
    mirror = _Mirror(stored, optuna.samplers.RandomSampler(), study_lock(stored, "x"), names)
    loaded = mirror.memory.get_trials(states=COMPLETE)
    assert len(loaded) == 8
    assert all(list(t.constraints) == names for t in loaded)  # what a sampler reads


def test_postgres_urls_use_psycopg_3() -> None:
    assert database_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    for url in ("postgresql+psycopg2://u@h/db", "sqlite:///x.db", "mysql://u@h/db"):
        assert database_url(url) == url
