"""Studies on a real PostgreSQL server: `explore --storage postgresql://…`, SIGKILL and resume,
two drivers on one study, and what optuna-dashboard reads from the stored study."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from quarch.search._dashboard import MEASURED_NLL, MEASURED_PPL, metric_names
from quarch.search._runner import COMPLETE

from . import postgres
from .conftest import TINY_STUDY
from .test_search_kill_resume import kill_and_resume, two_drivers


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.Server]:
    try:
        server = postgres.start()
    except postgres.Unavailable as err:
        if os.environ.get(postgres.REQUIRE_ENV) == "1":
            pytest.fail(f"{postgres.REQUIRE_ENV}=1 but no PostgreSQL server starts: {err}")
        pytest.skip(f"no PostgreSQL server can start here: {err}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: postgres.Server) -> str:
    """A fresh empty database on the session's server."""
    return pg_server.create_database()


def test_sigkill_mid_trial_then_resume_on_postgres(tmp_path: Path, pg_url: str) -> None:
    kill_and_resume(tmp_path, pg_url)


def test_two_drivers_store_exactly_the_requested_trials_on_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    two_drivers(tmp_path, pg_url)


def check_dashboard_view(url: str, name: str, spec: Any) -> optuna.Study:
    """The stored study as optuna-dashboard reads it: named objectives, the constraint list
    under the system attribute `constraints`, measured perplexity on measured designs."""
    study = optuna.load_study(study_name=name, storage=url)  # a fresh read, no cache
    assert study.metric_names == metric_names(spec.objectives)
    assert study.metric_names[0] == "perplexity"
    assert study.metric_names[1] == "time per output token @serve (s)"
    trials = study.get_trials(states=COMPLETE)
    for t in trials:
        named = {k: v for k, v in t.system_attrs.items() if k.startswith("constraints:")}
        assert named and sorted(t.system_attrs["constraints"]) == sorted(named.values())
    measured = [t for t in trials if MEASURED_PPL in t.user_attrs]
    assert any("seed" in t.user_attrs for t in measured)  # the baselines are all measured
    for t in measured:
        ppl, nll = t.user_attrs[MEASURED_PPL], t.user_attrs[MEASURED_NLL]
        assert ppl == pytest.approx(2.718281828459045**nll) and ppl > 1
    return study


def test_dashboard_view_of_an_explored_sqlite_study(tiny_result: Any) -> None:
    url = f"sqlite:///{tiny_result.out_dir / 'study.db'}"
    study = check_dashboard_view(url, TINY_STUDY["name"], tiny_result.spec)
    measured = {t.user_attrs["key"] for t in study.trials if MEASURED_PPL in t.user_attrs}
    # every measured front point that is a trial carries its measured perplexity
    keys = {p.key for p in tiny_result.front_points if p.trial is not None}
    assert keys <= measured


def test_cli_explore_on_postgres(tmp_path: Path, pg_url: str) -> None:
    from quarch.cli import app
    from quarch.search import study_from_dict

    data = {**TINY_STUDY, "space": {**TINY_STUDY["space"], "act": ["float"], "kv": ["float"]}}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    bare = pg_url.replace("postgresql+psycopg://", "postgresql://")  # what a user types
    args = ["explore", str(study), "--storage", bare, "--trials", "8", "--quiet", "--no-report"]
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    stored = check_dashboard_view(pg_url, data["name"], study_from_dict(data))
    assert len(stored.get_trials(states=COMPLETE)) == 8
    # a second machine (another output directory) on the same storage: the 8 trials are there
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    after = optuna.load_study(study_name=data["name"], storage=pg_url)
    assert [t.params for t in after.get_trials(states=COMPLETE)] == [
        t.params for t in stored.get_trials(states=COMPLETE)
    ]
