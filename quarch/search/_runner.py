"""Running the search with Optuna: storage, samplers, seeds, parallel workers, resuming.

- **Storage**: an Optuna RDB storage, by default an SQLite file in the output directory, or
  any database URL (`postgresql://…`), which is also how several machines can share a study.
  Each process samples in an in-memory Optuna study and writes every trial to the database
  **when it finishes**, in one transaction (`Study.add_trial`). A process killed at any moment
  (SIGKILL mid-trial included) therefore loses only the trial it was running; the database
  holds only finished trials, so nothing is left half-written or "running" forever. A re-run
  loads every stored trial into its sampler (NSGA-II's generations, TPE's history) and goes on
  until `trials` trials are stored in all. Optuna's own RDB path writes each sampled parameter
  in its own transaction, dozens per trial: the in-memory study avoids that cost, which is
  larger than the whole proxy evaluation.
- **Samplers**: NSGA-II (default), NSGA-III (reference points, for 3+ objectives; Deb & Jain,
  IEEE TEC 18(4) 2014), GP (Optuna's Gaussian-process sampler), TPE, random, grid (categorical
  spaces only), and `exact`: the exact Pareto front of the additive proxy (`_exact`) is
  enqueued first (thinned to the trial budget when larger), and NSGA-II, which sees those
  trials as its history, samples any trials left. Constraint values are set on each trial
  (`Trial.set_constraint`); NSGA-II/III and TPE prefer feasible designs by them.
- **Seeds**: the uniform baselines that lie inside the space are enqueued first (unless stored
  already), so every sampler starts from them and the front is always compared with them.
- **Workers**: `workers > 1` starts that many processes on this machine (the main one included).
  Each stores its finished trials and, after each trial, loads the others' new ones.
- **Several drivers, exactly `trials` trials**: any number of processes on any number of
  machines (workers, or `quarch explore` started again against the same storage) share one
  study. A driver stores a finished trial only while the study holds fewer than `trials`
  finished ones, counting every driver's; the count and the store happen under a lock shared
  through the storage (`_dblock.StudyLock`: an advisory lock on PostgreSQL, a file lock next to
  an SQLite file), so the study ends with exactly `trials` finished trials. A trial finished
  after the study is full is dropped, and its driver stops.
- **PostgreSQL**: `postgresql://user@host/db` runs on psycopg 3 (`pip install quarch[postgres]`).
- **Dashboard**: the stored study carries named objectives and the constraint list
  optuna-dashboard reads (`_dashboard`).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from quarch.search._dashboard import name_metrics, with_legacy_constraints, without_legacy
from quarch.search._dblock import StudyLock
from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._space import Design, DesignSpace
from quarch.search._study import Sampler, SearchSettings

COMPLETE = (optuna.trial.TrialState.COMPLETE,)

EvaluateFn = Callable[[Design], Evaluation]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL with synchronous=NORMAL: a commit is appended to the write-ahead log without an
    # fsync, so it survives the death of the process (SIGKILL) though not a power cut.
    # https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SEED_LIMIT = 2**32
"""Seeds are below this (numpy's `RandomState`, which Optuna's samplers seed)."""

MEMORY = ":memory:"
"""A storage URL for a study kept in this process only (benchmarks; nothing persists)."""


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def database_url(url: str) -> str:
    """`url` with a bare PostgreSQL scheme bound to psycopg 3 (`postgresql+psycopg://`), the
    driver of the `postgres` extra (SQLAlchemy 2.0 binds a bare scheme to psycopg2)."""
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


SCHEMA_ATTEMPTS = 5


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage, retried when another process creates the same new database's
    tables at the same moment (drivers started together on an empty database: one of the
    two schema creations fails on a unique key, and then finds the tables made)."""
    import sqlalchemy

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except sqlalchemy.exc.DBAPIError:
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def storage(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage at `url` (SQLite in WAL mode, waiting up to 60 s on a lock), or an
    in-memory one for `MEMORY`."""
    if url == MEMORY:
        return optuna.storages.InMemoryStorage()
    if not url.startswith("sqlite"):
        url = database_url(url)
        try:
            return _rdb_storage(url, {})
        except ImportError as err:
            extra = " (pip install 'quarch[postgres]')" if url.startswith("postgres") else ""
            raise ImportError(f"no database driver for the storage {url!r}{extra}") from err
    rdb = _rdb_storage(url, {"connect_args": {"timeout": 60}})
    import sqlalchemy

    sqlalchemy.event.listen(rdb.engine, "connect", _sqlite_pragmas)
    rdb.engine.dispose()  # reconnect, so every pooled connection runs the pragmas
    return rdb


def make_sampler(
    settings: SearchSettings, space: DesignSpace, *, seed_offset: int = 0
) -> optuna.samplers.BaseSampler:
    """The study's sampler; `seed_offset` differs per run and worker so they do not repeat."""
    # numpy seeds (which Optuna's samplers use) lie in [0, 2**32): a seed near the top plus a
    # resumed run's offset wraps around instead of failing
    seed = (settings.seed + seed_offset) % SEED_LIMIT
    match settings.sampler:
        case Sampler.NSGA2 | Sampler.EXACT:
            return optuna.samplers.NSGAIISampler(population_size=settings.population, seed=seed)
        case Sampler.NSGA3:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2; stable since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.NSGAIIISampler(
                    population_size=settings.population, seed=seed
                )
        case Sampler.GP:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.GPSampler(seed=seed)
        case Sampler.TPE:
            return optuna.samplers.TPESampler(seed=seed)
        case Sampler.RANDOM:
            return optuna.samplers.RandomSampler(seed=seed)
        case Sampler.GRID:
            bad = [p.name for p in space.params if not p.categorical]
            if bad:
                raise ValueError(f"search.sampler: grid needs categorical params; ranges: {bad}")
            grid = {p.name: list(p.choices) for p in space.params}
            return optuna.samplers.GridSampler(grid, seed=seed)


def suggest(trial: optuna.trial.BaseTrial, space: DesignSpace) -> Design:
    """Ask the trial for every sampled param and return the design."""
    values: dict[str, Any] = {}
    for p in space.params:
        if p.categorical:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.integer:
            assert p.low is not None and p.high is not None
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return space.design(values)


def record(trial: optuna.trial.BaseTrial, design: Design, ev: Evaluation, names: list[str]) -> None:
    """Store a trial's design key, metrics and constraints (which NSGA-II and TPE read)."""
    trial.set_user_attr("key", design.key)
    trial.set_user_attr("metrics", ev.metrics)
    for name, value in zip(names, ev.constraints, strict=True):
        trial.set_constraint(name, value)


@dataclass
class _Objective:
    space: DesignSpace
    evaluate: EvaluateFn
    constraint_names: list[str]
    token: str

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, ...]:
        trial.set_user_attr("uid", f"{self.token}-{trial.number}")
        design = suggest(trial, self.space)
        ev = self.evaluate(design)
        record(trial, design, ev, self.constraint_names)
        return ev.values


def open_study(name: str, url: str, num_objectives: int) -> optuna.Study:
    """The stored study (created when missing); all objectives minimised."""
    return optuna.create_study(
        study_name=name,
        storage=storage(url),
        directions=["minimize"] * num_objectives,
        load_if_exists=True,
    )


def study_lock(study: optuna.Study, url: str) -> StudyLock:
    """The lock every driver of `study` (stored at `url`) stores its trials under."""
    backend: Any = getattr(study._storage, "_backend", study._storage)
    return StudyLock(url, study.study_name, getattr(backend, "engine", None))


def count_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COMPLETE))


class _Mirror:
    """An in-memory study for sampling, mirrored to the stored one (see the module doc)."""

    def __init__(
        self,
        stored: optuna.Study,
        sampler: optuna.samplers.BaseSampler,
        lock: StudyLock,
        constraint_names: list[str],
    ) -> None:
        self.stored = stored
        self.memory = optuna.create_study(directions=stored.directions, sampler=sampler)
        self.lock = lock
        self.constraint_names = constraint_names
        self.seen: set[str] = set()
        self.pull()

    def pull(self) -> int:
        """Load stored trials this process has not seen; returns the stored count."""
        trials = self.stored.get_trials(deepcopy=False, states=COMPLETE)
        new = [t for t in trials if str(t.user_attrs.get("uid", t.number)) not in self.seen]
        if new:
            self.memory.add_trials([without_legacy(t) for t in new])
            self.seen.update(str(t.user_attrs.get("uid", t.number)) for t in new)
        return len(trials)

    def push(self, trial: optuna.trial.FrozenTrial, total: int) -> int:
        """Store a finished trial unless the study already holds `total` finished trials
        (every driver's); returns the stored count afterwards."""
        with self.lock.held():
            count = self.pull()
            if trial.state is optuna.trial.TrialState.COMPLETE and count < total:
                self.stored.add_trial(with_legacy_constraints(trial, self.constraint_names))
                self.seen.add(str(trial.user_attrs["uid"]))
                count += 1
        return count


def enqueue_seeds(
    study: optuna.Study, space: DesignSpace, seeds: list[tuple[str, Design]], stored: set[str]
) -> int:
    """Enqueue the seed designs that lie in the space and are not in `stored` (design keys)."""
    params = {p.name: p for p in space.params}
    n = 0
    for name, design in seeds:
        values = {k: design[k] for k in params}
        if any(p.categorical and values[k] not in p.choices for k, p in params.items()):
            continue
        if any(design[k] != v for k, v in space.fixed.items()) or design.key in stored:
            continue
        study.enqueue_trial(values, user_attrs={"seed": name})
        n += 1
    return n


def enqueue_exact(study: optuna.Study, evaluator: Evaluator, stored: set[str], room: int) -> int:
    """Enqueue the exact front of the additive proxy (`_exact.exact_front`), thinned to `room`
    designs when larger, skipping designs in `stored` (design keys); returns how many."""
    from quarch.search._exact import exact_front, thin

    front = exact_front(evaluator)
    fresh = [i for i, d in enumerate(front.designs) if d.key not in stored]
    chosen = thin([front.evaluations[i] for i in fresh], max(room, 0))
    for j in chosen:
        design = front.designs[fresh[j]]
        study.enqueue_trial(evaluator.space.sampled(design), user_attrs={"exact": True})
    return len(chosen)


def _optimize(
    mirror: _Mirror,
    objective: _Objective,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # counts every driver's trials: a driver alone on the study counts its own
        count = mirror.push(trial, total)
        if progress is not None:
            progress(count, total)
        if count >= total:
            study.stop()

    if mirror.pull() < total:
        mirror.memory.optimize(objective, callbacks=[after], gc_after_trial=False)


def _worker(payload: tuple[Any, ...], ready: Any) -> None:
    name, url, settings, space, evaluator, total, index = payload
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    token = uuid.uuid4().hex[:8]
    sampler = make_sampler(settings, space, seed_offset=1000 * index + int(token, 16) % 997)
    stored = open_study(name, url, len(evaluator.objectives))
    names = evaluator.constraint_names()
    mirror = _Mirror(stored, sampler, study_lock(stored, url), names)
    objective = _Objective(space, evaluator.evaluate, names, token)
    ready.set()
    _optimize(mirror, objective, total, None)


def _check_compatible(stored: optuna.Study, space: DesignSpace, name: str, url: str) -> None:
    """Refuse a stored study whose trials were sampled from another space."""
    for t in stored.get_trials(deepcopy=False, states=COMPLETE):
        try:
            space.design(dict(t.params))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"the stored study {name!r} at {url} was run over another design space "
                f"({err}); give this study another name or output directory"
            ) from None


def run_search(
    *,
    name: str,
    url: str,
    settings: SearchSettings,
    space: DesignSpace,
    evaluator: Evaluator,
    seeds: list[tuple[str, Design]],
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    evaluate: EvaluateFn | None = None,
) -> optuna.Study:
    """Run (or resume) the study until `settings.trials` trials are stored; returns it.

    evaluate: scores a design (default `evaluator.evaluate`); a hook for other fidelities. With
        `workers > 1` the extra processes always use `evaluator.evaluate`.
    progress: called as `progress(stored, total)` after each trial of this process.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and url == MEMORY:
        raise ValueError("workers > 1 need a database storage to share, not an in-memory one")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = open_study(name, url, len(evaluator.objectives))
    _check_compatible(stored, space, name, url)
    lock = study_lock(stored, url)
    with lock.held():  # drivers started together would write the names at the same time
        name_metrics(stored, evaluator.objectives)
    done = count_complete(stored)
    total = settings.trials
    if progress is not None:
        progress(done, total)
    if done >= total:
        return stored
    token = uuid.uuid4().hex[:8]
    # a resumed run samples with a fresh seed: replaying the first run's seed would propose
    # the designs it already stored
    offset = 0 if done == 0 else int(token, 16) % 100_003
    names = evaluator.constraint_names()
    sampler = make_sampler(settings, space, seed_offset=offset)
    mirror = _Mirror(stored, sampler, lock, names)
    keys = {str(t.user_attrs.get("key")) for t in stored.get_trials(deepcopy=False)}
    n_seeds = enqueue_seeds(mirror.memory, space, seeds, keys)
    if settings.sampler is Sampler.EXACT:
        seed_keys = {d.key for _, d in seeds}
        enqueue_exact(mirror.memory, evaluator, keys | seed_keys, total - done - n_seeds)
    ctx = multiprocessing.get_context("spawn")
    events = [ctx.Event() for _ in range(1, workers)]
    procs = [
        ctx.Process(
            target=_worker,
            args=((name, url, settings, space, evaluator, total, i), events[i - 1]),
            daemon=True,
        )
        for i in range(1, workers)
    ]
    for p in procs:
        p.start()
    for event, p in zip(events, procs, strict=True):  # start together: workers import slowly
        while not event.wait(1.0):
            if not p.is_alive():
                raise RuntimeError(f"search worker {p.name} exited with code {p.exitcode}")
    objective = _Objective(space, evaluate or evaluator.evaluate, names, token)
    _optimize(mirror, objective, total, progress)
    for p in procs:
        p.join()
    if progress is not None:
        progress(count_complete(stored), total)
    return stored
