"""A study killed with SIGKILL in the middle of a trial resumes keeping every finished trial;
two drivers on one study end with exactly the requested number of trials (SQLite here; the
same helpers run on PostgreSQL in test_search_postgres)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from quarch.search import SearchSettings, run_search

from .synthetic import synthetic

CHILD = """
import sys, time
sys.path.insert(0, {here!r})
from synthetic import synthetic
from quarch.search import SearchSettings, run_search

spec, ev = synthetic({{"search": {{"trials": 200, "population": 6}}}})
log = open({log!r}, "a", buffering=1)

def slow(design):
    log.write("start\\n")  # a trial is running from here ...
    time.sleep(0.4)
    return ev.evaluate(design)  # ... until it is stored

run_search(name="k", url={url!r}, settings=SearchSettings(trials=200, population=6),
           space=ev.space, evaluator=ev, seeds=ev.space.baselines(), evaluate=slow)
"""


def _env() -> dict[str, str]:
    """The environment of a child process: it imports this checkout's quarch."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


def _stored(url: str, name: str = "k") -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def test_sigkill_mid_trial_then_resume(tmp_path: Path) -> None:
    kill_and_resume(tmp_path, f"sqlite:///{tmp_path / 'k.db'}")


def kill_and_resume(tmp_path: Path, url: str) -> None:
    """SIGKILL a search mid-trial, resume it and check no finished trial was lost or doubled."""
    log = tmp_path / "starts.log"
    script = CHILD.format(here=str(Path(__file__).parent), log=str(log), url=url)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            done = len(_stored(url))
            starts = log.read_text().count("start") if log.exists() else 0
            if done >= 5 and starts > done:  # a trial has started and is not stored yet
                break
        else:
            raise AssertionError("the child study did not get going")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    before = _stored(url)
    assert len(before) >= 5
    # only finished trials are ever stored: nothing half-written, nothing left "running"
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in before)
    started = log.read_text().count("start")
    assert started == len(before) + 1  # the killed trial was lost, every finished one kept

    _, ev = synthetic({"search": {"trials": len(before) + 6, "population": 6}})
    study = run_search(
        name="k",
        url=url,
        settings=SearchSettings(trials=len(before) + 6, population=6),
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
    )
    after = study.get_trials(deepcopy=False)
    assert len(after) == len(before) + 6
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in after)
    assert len({t.user_attrs["uid"] for t in after}) == len(after)  # none stored twice
    old = {t.number: (t.params, t.values, t.user_attrs["uid"]) for t in before}
    assert all(
        (t.params, t.values, t.user_attrs["uid"]) == old[t.number] for t in after if t.number in old
    )
    # the six baselines were enqueued once, in the first run
    assert sum("seed" in t.user_attrs for t in after) == 6


DRIVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from synthetic import synthetic
from quarch.search import SearchSettings, run_search

spec, ev = synthetic({{"search": {{"trials": {trials}, "population": 6}}}})
Path({ready!r}).touch()
while not Path({go!r}).exists():  # both drivers start searching together
    time.sleep(0.02)

def slow(design):
    time.sleep(0.03)
    return ev.evaluate(design)

run_search(name="two", url={url!r}, settings=SearchSettings(trials={trials}, population=6),
           space=ev.space, evaluator=ev, seeds=ev.space.baselines(), evaluate=slow)
"""


def test_two_drivers_store_exactly_the_requested_trials(tmp_path: Path) -> None:
    two_drivers(tmp_path, f"sqlite:///{tmp_path / 'two.db'}")


def two_drivers(tmp_path: Path, url: str, trials: int = 30) -> None:
    """Two processes run the same study with `trials` each: the study ends with exactly
    `trials` finished trials, from both, none twice."""
    go = tmp_path / "go"
    children = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        script = DRIVER.format(
            here=str(Path(__file__).parent), trials=trials, url=url, ready=str(ready), go=str(go)
        )
        child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=_env())
        children.append((ready, child))
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r, _ in children):
            assert time.monotonic() < deadline, "the drivers did not start"
            assert all(c.poll() is None for _, c in children), "a driver exited early"
            time.sleep(0.05)
        go.touch()
        for _, child in children:
            assert child.wait(timeout=120) == 0
    finally:
        for _, child in children:
            if child.poll() is None:
                child.kill()
    stored = _stored(url, "two")
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in stored)
    assert len(stored) == trials
    uids = [t.user_attrs["uid"] for t in stored]
    assert len(set(uids)) == trials  # no trial stored twice
    assert len({u.split("-")[0] for u in uids}) == 2  # both drivers stored trials
    # the six baselines: each driver enqueues those it does not see stored, so a design may be
    # evaluated by both, but every stored trial is a distinct finished trial
    assert sum("seed" in t.user_attrs for t in stored) >= 6
