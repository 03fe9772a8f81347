"""The gym-style environment: reset/step, index actions, rewards, recording, a user optimizer."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest

from quarch.search import ExploreEnv
from quarch.search._runner import open_study

from .synthetic import synthetic


@pytest.fixture(scope="module")
def env() -> ExploreEnv:
    _, ev = synthetic()
    return ExploreEnv(ev, max_steps=25)


def test_reset_and_step(env: ExploreEnv) -> None:
    obs, info = env.reset(seed=1)
    assert obs == {} and info["params"] == [p.name for p in env.params]
    assert info["nvec"] == [len(p.choices) for p in env.params]
    action = env.sample()
    result = env.step(action)
    obs, reward, terminated, truncated, info = result
    assert set(obs) >= {"ppl", "bits", "tpot@serve", "memory@serve"}
    assert reward == info["hypervolume"] > 0  # the first feasible point creates the front
    assert not terminated and not truncated
    assert info["key"] == env.space.design(action).key


def test_index_actions_and_errors(env: ExploreEnv) -> None:
    env.reset()
    indices = [0] * len(env.params)  # every slot float
    result = env.step(indices)
    assert result.observation["bits"] == 16.0
    with pytest.raises(ValueError, match="entries"):
        env.step([0])
    with pytest.raises(ValueError, match="index 9"):
        env.step([9] + [0] * (len(env.params) - 1))
    with pytest.raises(ValueError, match="unknown design params"):
        env.step({"w.nope": "int8"})


def test_reward_is_hypervolume_gain_and_truncation(env: ExploreEnv) -> None:
    env.reset(seed=3)
    total = 0.0
    for _ in range(25):
        r = env.step(env.sample())
        total += r.reward
        assert r.reward >= -1e-12  # the front only grows
    assert r.truncated
    assert total == pytest.approx(env.hypervolume())


def test_a_user_optimizer_beats_its_own_start(env: ExploreEnv) -> None:
    """Greedy coordinate descent on a scalarised objective, driven only through step()."""
    env.reset(seed=0)
    rng = random.Random(0)
    current = {p.name: p.choices[0] for p in env.params}  # all float

    def score(values: dict) -> float:
        ppl, tpot, mem = env.step(values).info["values"]
        return ppl / 10 + tpot * 1e3 + mem / 4e8

    best = score(current)
    start = best
    for _ in range(3):
        for p in rng.sample(list(env.params), len(env.params)):
            for choice in p.choices:
                trial = {**current, p.name: choice}
                s = score(trial)
                if s < best:
                    best, current = s, trial
    assert best < start
    assert env.front and env.hypervolume() > 0


def test_steps_recorded_in_a_study(tmp_path: Path) -> None:
    _, ev = synthetic()
    study = open_study("gym", f"sqlite:///{tmp_path / 'g.db'}", len(ev.objectives))
    env = ExploreEnv(ev, max_steps=5, study=study)
    for _ in range(3):
        env.step(env.sample())
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    assert all(t.user_attrs["source"] == "gym" for t in trials)
    d, e = env.history[0]
    assert trials[0].user_attrs["key"] == d.key and list(trials[0].values) == list(e.values)
    assert list(trials[0].constraints.values()) == list(e.constraints)


def test_open_env_on_a_finished_study(tiny_result, tmp_path: Path) -> None:
    """`ExploreEnv.open` reuses the study's cached table and measurements and records steps
    in its storage, where a later `explore` finds them."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_result.out_dir, out)
    env = ExploreEnv.open(tiny_result.spec, out, max_steps=3, progress=False)
    table = env.evaluator.proxy
    costs = {k: table.cost(e.slot, e.choice) for k, e in table.entries.items()}
    assert costs == tiny_result.sensitivity.cost
    before = len(env.study.get_trials())
    result = env.step(env.sample())
    assert len(env.study.get_trials()) == before + 1
    assert env.study.get_trials()[-1].user_attrs["key"] == result.info["key"]
