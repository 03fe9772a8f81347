"""What a stored study carries for optuna-dashboard (`optuna-dashboard STORAGE_URL`).

- **Objective names**: `Study.set_metric_names` with each objective's title, scenario and unit
  from the metric registry (`_metrics.METRICS`), instead of the dashboard's "0", "1", ….
- **Constraints**: quarch sets named constraints (`Trial.set_constraint`, stored as one
  `constraints:<name>` system attribute each, Optuna ≥ 5). optuna-dashboard 0.21 reads only the
  older list under the system attribute `constraints` (`CONSTRAINTS_KEY` in its
  `_serializer.py`), so stored trials carry that list too, in `constraint_names` order.
  Optuna reads both forms (`_get_constraints_from_system_attrs`), so a sampler given both
  would count every constraint twice: `without_legacy` drops the list from trials before they
  reach a sampler.
- **Measured values**: the perplexity measured on the eval text (front and baselines) as user
  attributes `measured_ppl` and `measured_nll` of every trial of that design. Optuna refuses to
  update a finished trial through its API, so they are written as rows of the RDB storage's
  user-attribute table (the schema Optuna's `RDBStorage` reads them from).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna

from quarch.search._study import Objective

LEGACY_CONSTRAINTS_KEY = "constraints"
"""The system attribute optuna-dashboard reads a trial's constraint values from."""

MEASURED_PPL = "measured_ppl"
MEASURED_NLL = "measured_nll"


def objective_name(objective: Objective) -> str:
    """`time per output token @serve (s)`: title, scenario and stored unit of an objective; a
    maximised metric (stored negated, as every objective is minimised) is prefixed with `−`."""
    info = objective.metric.info
    name = info.title
    if objective.scenario is not None:
        name += f" @{objective.scenario}"
    if info.unit:
        name += f" ({info.unit})"
    return name if info.sign > 0 else f"−{name}"


def metric_names(objectives: Sequence[Objective]) -> list[str]:
    """The dashboard's names of the study's objective values, in order."""
    return [objective_name(o) for o in objectives]


def name_metrics(study: optuna.Study, objectives: Sequence[Objective]) -> None:
    """Store the objective names on `study` (only when they differ from the stored ones)."""
    names = metric_names(objectives)
    if len(names) != len(study.directions):
        raise ValueError(
            f"{len(names)} objective names for a study with {len(study.directions)} objectives"
        )
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def with_legacy_constraints(
    trial: optuna.trial.FrozenTrial, names: Sequence[str]
) -> optuna.trial.FrozenTrial:
    """A copy of `trial` whose system attributes also hold the constraint list the dashboard
    reads (values in `names` order)."""
    attrs = trial.system_attrs
    missing = [n for n in names if f"{LEGACY_CONSTRAINTS_KEY}:{n}" not in attrs]
    if missing:
        raise ValueError(f"trial {trial.number} has no value for the constraints {missing}")
    out = copy.copy(trial)
    out.system_attrs = {
        **attrs,
        LEGACY_CONSTRAINTS_KEY: [float(attrs[f"{LEGACY_CONSTRAINTS_KEY}:{n}"]) for n in names],
    }
    return out


def without_legacy(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """`trial` without the dashboard's constraint list (see the module doc); itself when it
    has none."""
    if LEGACY_CONSTRAINTS_KEY not in trial.system_attrs:
        return trial
    out = copy.copy(trial)
    out.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != LEGACY_CONSTRAINTS_KEY}
    return out


def attach_measured(study: optuna.Study, measured: Mapping[str, float]) -> int:
    """Set `measured_nll` and `measured_ppl` on every stored finished trial whose design key
    (user attribute `key`) is in `measured` (key → measured eval NLL). Returns the number of
    trials written; 0 for a storage that is not an RDB one (nothing persists there)."""
    rdb = _rdb(study)
    if rdb is None:
        return 0
    todo: list[tuple[int, float]] = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        nll = measured.get(str(t.user_attrs.get("key")))
        if nll is not None and t.user_attrs.get(MEASURED_NLL) != nll:
            todo.append((t._trial_id, float(nll)))
    if todo:
        _write_user_attrs(rdb, todo)
    return len(todo)


def _rdb(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    storage: Any = study._storage
    backend = getattr(storage, "_backend", storage)  # the RDB storage under Optuna's cache
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def _write_user_attrs(rdb: optuna.storages.RDBStorage, todo: Iterable[tuple[int, float]]) -> None:
    from optuna.storages._rdb import models

    model = models.TrialUserAttributeModel
    session = rdb.scoped_session()
    try:
        for trial_id, nll in todo:
            values = {MEASURED_NLL: nll, MEASURED_PPL: math.exp(nll)}
            session.query(model).filter(
                model.trial_id == trial_id, model.key.in_(list(values))
            ).delete(synchronize_session=False)
            for key, value in values.items():
                session.add(model(trial_id=trial_id, key=key, value_json=json.dumps(value)))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
