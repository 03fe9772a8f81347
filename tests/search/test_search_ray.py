"""`quarch explore --executor ray` on a real PostgreSQL server: the same measured designs as a
serial SQLite run of the same seed, nothing recomputed by a second invocation, and a Ray worker
or the driver killed mid-stage losing nothing (slow: each run starts Ray and loads the model
in every worker)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from quarch.search import study_from_dict
from quarch.search._proxy import needed_entries
from quarch.search._runner import COMPLETE, storage
from quarch.search._stored import MEASURED, SENS_BASE, SENS_CELL, ResultStore

from . import postgres

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "explore-tiny.yaml"
REQUIRE_RAY = "QUARCH_REQUIRE_RAY"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _ray_installed() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get(REQUIRE_RAY) == "1":
            pytest.fail(f"{REQUIRE_RAY}=1 but Ray is not installed")
        pytest.skip("Ray is not installed (pip install 'quarch[ray]')")


@pytest.fixture(scope="module")
def pg_server() -> Iterator[postgres.Server]:
    try:
        server = postgres.start()
    except postgres.Unavailable as err:
        if os.environ.get(postgres.REQUIRE_ENV) == "1":
            pytest.fail(f"{postgres.REQUIRE_ENV}=1 but no PostgreSQL server starts: {err}")
        pytest.skip(f"no PostgreSQL server can start here: {err}")
    yield server
    server.stop()


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}"}


def _explore(*args: str | Path, wait: bool = True, log: Path | None = None) -> Any:
    cmd = [sys.executable, "-m", "quarch", "explore", *map(str, args), "--no-report"]
    if not wait:
        assert log is not None
        with log.open("w") as handle:  # a file, not a pipe nobody reads while it runs
            return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stderr=handle, text=True)
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _measured(out: Path) -> dict[str, float]:
    data = json.loads((out / "measured.json").read_text())
    return {key: m["nll"] for key, m in data.items()}


def _front(stdout: str) -> Any:
    """The printed front without wall times (measured designs keep their first run's time)."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "wall_s"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(stdout))


def _computed(log: str) -> list[int]:
    """The `computed N` counts of every stage line of an explore log."""
    return [int(n) for n in re.findall(r"computed (\d+) on", log)]


def test_ray_postgres_run_matches_a_serial_sqlite_run_and_reruns_nothing(
    tmp_path: Path, pg_server: postgres.Server
) -> None:
    url = pg_server.create_database().replace("postgresql+psycopg://", "postgresql://")
    serial = _explore(EXAMPLE, "--out", tmp_path / "serial", "--json")
    ray_args = (EXAMPLE, "--storage", url, "--executor", "ray", "--workers", "2", "--json")
    first = _explore(*ray_args, "--out", tmp_path / "ray")
    assert sum(_computed(first.stderr)) > 0 and "on ray (2 workers)" in first.stderr
    # the same measured designs (and the same perplexities, bit for bit) and the same front
    assert _measured(tmp_path / "ray") == _measured(tmp_path / "serial")
    assert _front(first.stdout) == _front(serial.stdout)
    # a second invocation against the same storage (another output directory) computes nothing
    second = _explore(*ray_args, "--out", tmp_path / "again")
    assert _computed(second.stderr) and set(_computed(second.stderr)) == {0}, second.stderr
    assert re.search(r"reused \d+ sensitivity cells from storage", second.stderr)
    assert "Started a local Ray instance" not in second.stderr  # no worker was needed
    assert _front(second.stdout) == _front(serial.stdout)


# ---- killing a worker, killing the driver --------------------------------------------------


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (Ray's head processes and workers started by a driver)."""
    children, out, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stage_actors(driver: int) -> list[int]:
    return [p for p in _descendants(driver) if _cmdline(p).startswith("ray::_StageActor")]


def _wait_for(what: str, ready: Any, child: subprocess.Popen[str], limit_s: float = 300) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = ready()
        if got:
            return got
        assert child.poll() is None, f"the driver exited before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _study_file(tmp_path: Path, trials: int) -> tuple[Path, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["search"]["trials"] = trials
    # 16 windows of 512 tokens: cells of about 0.2 s on one thread, so the stage lasts long
    # enough to kill a worker in the middle of it (the example's cells take 10 ms)
    data["accuracy"].update(sensitivity_seqlen=512, sensitivity_windows=16)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, study_from_dict(data)


def _check_complete(url: str, spec: Any, out: Path, trials: int) -> ResultStore:
    """Every trial, cell and measurement stored once: nothing lost, nothing twice."""
    rdb = storage(url)
    store = ResultStore.for_storage(rdb)
    study = optuna.load_study(study_name=spec.name, storage=rdb)
    stored = study.get_trials(deepcopy=False)
    assert len(stored) == trials and all(t.state in COMPLETE for t in stored)
    assert len({t.user_attrs["uid"] for t in stored}) == trials
    result = json.loads((out / "result.json").read_text())
    cells = result["eval_info"]["sensitivity_entries"]
    assert store.count(SENS_CELL) == cells and store.count(SENS_BASE) == 1
    assert store.count(MEASURED) == len(json.loads((out / "measured.json").read_text()))
    return store


def test_killed_ray_worker_and_killed_driver_lose_nothing(
    tmp_path: Path, pg_server: postgres.Server
) -> None:
    study, spec = _study_file(tmp_path, trials=24)
    url = pg_server.create_database()
    rdb = storage(url)
    store = ResultStore.for_storage(rdb)
    args = (study, "--storage", url, "--executor", "ray", "--workers", "2", "--quiet")

    # 1. a Ray worker SIGKILLed mid-stage: Ray restarts it and re-runs its task
    log = tmp_path / "a.log"
    child = _explore(*args, "--out", tmp_path / "a", wait=False, log=log)
    try:
        _wait_for("two workers", lambda: len(_stage_actors(child.pid)) == 2, child)
        _wait_for("the first cells", lambda: store.count(SENS_CELL) >= 2, child)
        victim = _stage_actors(child.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = store.count(SENS_CELL)
        assert child.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if child.poll() is None:
            child.kill()
    assert killed_at < len(needed_entries_of(spec))  # the kill came mid-stage
    _check_complete(url, spec, tmp_path / "a", trials=24)

    # 2. the driver SIGKILLed mid-stage (its Ray processes with it), then the study run again
    url2 = pg_server.create_database()
    store2 = ResultStore.for_storage(storage(url2))
    args2 = (study, "--storage", url2, "--executor", "ray", "--workers", "2", "--quiet")
    child = _explore(*args2, "--out", tmp_path / "b", wait=False, log=tmp_path / "b.log")
    ray_procs: list[int] = []
    try:
        _wait_for("the first cells", lambda: store2.count(SENS_CELL) >= 2, child)
        ray_procs = _descendants(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        for pid in ray_procs:  # the local Ray instance the killed driver started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kept = store2.count(SENS_CELL)
    assert 2 <= kept < len(needed_entries_of(spec))
    kept += store2.count(SENS_BASE)  # the float base, if stored, is counted with the cells
    again = _explore(*args2[:-1], "--out", tmp_path / "b")
    assert f"reused {kept} sensitivity cells from storage" in again.stderr
    _check_complete(url2, spec, tmp_path / "b", trials=24)


def needed_entries_of(spec: Any) -> list[Any]:
    from quarch.models import tiny_model
    from quarch.search._layout import model_layout
    from quarch.search._space import build_space

    return needed_entries(build_space(spec, model_layout(tiny_model(spec.model, seed=0).model)))
