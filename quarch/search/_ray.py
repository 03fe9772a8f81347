"""Ray as the executor of a study's model-bound stages (`quarch explore --executor ray`).

`RayExecutor` starts `workers` Ray actors (`_StageActor`), each of which loads the study's
model once (`StageWorker.from_spec`) and then runs tasks (`_executor`): sensitivity cells,
baselines and front measurements, calibrated methods included. The driver keeps one task in
flight per actor and hands the next one to whichever actor finishes first, so a slow cell
never idles the others; it stores each result as it arrives (`_stages`).

- **Cluster**: `address=None` starts a local Ray instance sized to the workers (one CPU per
  actor, a small object store: tasks and results are a few hundred bytes); an address
  (`ray start --head` prints one; `auto` for the cluster this machine belongs to) joins an
  existing cluster, whose nodes must have quarch and the model. Each actor asks Ray for one
  CPU; the study's model-bound work runs on the CPU today (`load_study_model` loads there),
  so actors ask for no GPU.
- **A killed worker**: actors are created with `max_restarts` and `max_task_retries`
  (https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html): Ray restarts a dead
  actor (on any node with room; the model is loaded again) and re-runs the tasks that were
  in flight on it. Results are stored by the driver only, keyed by what determines them, so a
  re-run task cannot store a duplicate.
- **The model**: each actor checks that its model has the driver's fingerprint, so actors on
  machines with another file under the same path are refused.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from quarch.search._executor import ExecutorKind, StageWorker, Task

MAX_RESTARTS = 3
"""Restarts of a killed actor (and retries of its tasks) before the stage fails."""

LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
"""A local instance's object store: results are small dicts; Ray's default is 30% of RAM."""


class _StageActor:
    """A Ray actor around a `StageWorker` (see the module doc)."""

    def __init__(self, spec: Any) -> None:
        self.worker = StageWorker.from_spec(spec)

    def model_id(self) -> str:
        return self.worker.model_id

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Task) -> dict[str, Any]:
        return self.worker.run(task)


def require_ray() -> Any:
    """The `ray` module; ImportError naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ImportError("the ray executor needs Ray: pip install 'quarch[ray]'") from None
    return ray


class RayExecutor:
    """Tasks on `workers` Ray actors (see the module doc). The actors start on the first
    `run` with tasks, so a study whose results are all stored starts no Ray at all."""

    name = ExecutorKind.RAY.value

    def __init__(
        self, spec: Any, *, workers: int, address: str | None = None, model_id: str
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        require_ray()  # fail early, before the model is loaded twice
        self.spec = spec
        self.workers = workers
        self.address = address
        self.model_id = model_id
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self._started_ray = False

    def _init(self) -> None:
        ray = require_ray()
        if ray.is_initialized():
            return
        if self.address is not None:
            ray.init(address=self.address)
        else:
            # the workers import this quarch, wherever it is (a checkout or site-packages)
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            ray.init(
                num_cpus=self.workers,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
            )
        self._started_ray = True

    def start(self) -> None:
        """Start the actors (each loads the model) and check their models."""
        if self.actors:
            return
        self._init()
        ray = require_ray()
        actor = ray.remote(
            num_cpus=1,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS,
        )(_StageActor)
        self.actors = [actor.remote(self.spec) for _ in range(self.workers)]
        ids = ray.get([a.model_id.remote() for a in self.actors])
        wrong = sorted({i for i in ids if i != self.model_id})
        if wrong:
            self.close()
            raise ValueError(
                f"Ray workers loaded another model ({wrong[0]!r}) than this driver "
                f"({self.model_id!r}): every node needs the same model file"
            )
        self.pids = ray.get([a.pid.remote() for a in self.actors])

    def run(
        self, tasks: Sequence[Task], skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        if not tasks:
            return
        self.start()
        ray = require_ray()
        pending = deque(enumerate(tasks))
        idle = list(self.actors)
        in_flight: dict[Any, tuple[int, Any]] = {}
        while pending or in_flight:
            while idle and pending:
                index, task = pending.popleft()
                if skip is not None and skip(index):
                    continue
                actor = idle.pop()
                in_flight[actor.run.remote(task)] = (index, actor)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                index, actor = in_flight.pop(ref)
                idle.append(actor)
                yield index, ray.get(ref)

    def close(self) -> None:
        """Stop the actors, and the local Ray instance if this executor started it."""
        if not self.actors and not self._started_ray:
            return
        ray = require_ray()
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
