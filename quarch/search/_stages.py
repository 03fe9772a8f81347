"""The model-bound stages of a study, through the result store and an executor.

Each stage lists the results it needs, keys each one by what determines it (`_stored`), reads
the stored ones, sends only the missing ones to the executor as tasks, and stores each result
the moment it arrives, so a killed driver or worker loses at most the tasks in flight and a
re-run (on this machine or any other pointed at the same storage) computes only those. The
counts of reused and computed results are returned for the log and `result.json`.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from quarch.search._accuracy import Measured, _rtn_only
from quarch.search._config import design_config
from quarch.search._executor import Executor, Measure, SensBase, SensCell, Task
from quarch.search._proxy import ProxyTable, SensEntry, needed_entries, slot_config, table_meta
from quarch.search._space import Design, DesignSpace
from quarch.search._stored import MEASURED, SENS_BASE, SENS_CELL, ResultStore, result_key

Update = Callable[..., None]
"""`update(done, total, label)`: a stage's progress callback."""

EVAL_PROTOCOL = "gptq-nonoverlap-first-n"
"""How the eval perplexity is measured (`AccuracyLab.measure`): part of every measured key."""


@dataclass(frozen=True)
class StageCount:
    """How many results a stage read from the store and how many it computed."""

    reused: int
    computed: int


def windows_digest(windows: Any) -> str:
    """SHA-256 of a `[n, seqlen]` token-id tensor and its shape: the exact tokens measured on."""
    digest = hashlib.sha256(str(tuple(windows.shape)).encode())
    digest.update(windows.contiguous().numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def calib_about(lab: Any) -> dict[str, Any]:
    """What determines the calibration windows of calibrated methods."""
    s = lab.settings
    return {
        "text_sha256": lab.calib_text.sha256,
        "windows": s.calib_windows,
        "seqlen": s.calib_seqlen,
        "seed": s.seed,
    }


def base_about(lab: Any, model_id: str) -> dict[str, Any]:
    return {"what": SENS_BASE, "model": model_id, "windows": windows_digest(lab.sens_windows)}


def cell_about(lab: Any, space: DesignSpace, model_id: str, cell: SensCell) -> dict[str, Any]:
    config, calibrated = slot_config(space, cell.slot, cell.choice, cell.layers, cell.part)
    return {
        "what": SENS_CELL,
        "model": model_id,
        "windows": windows_digest(lab.sens_windows),
        "config": config.to_dict(),
        "calib": calib_about(lab) if calibrated else None,
    }


def measured_about(lab: Any, space: DesignSpace, model_id: str, design: Design) -> dict[str, Any]:
    config = design_config(space, design, seed=lab.settings.seed)
    return {
        "what": MEASURED,
        "protocol": EVAL_PROTOCOL,
        "model": model_id,
        "windows": windows_digest(lab.eval_windows),
        "config": config.to_dict(),
        "calib": None if _rtn_only(space, design) else calib_about(lab),
    }


def _run_missing(
    store: ResultStore,
    executor: Executor,
    jobs: Sequence[tuple[str, str, dict[str, Any]]],
    tasks: Sequence[Task],
    found: dict[str, dict[str, Any]],
    update: Update,
    labels: Sequence[str],
) -> int:
    """Run `tasks` (parallel to `jobs`: kind, key, about) and store each result into the store
    and `found` as it arrives; returns how many ran.

    Other drivers may run the same stage on the same storage at the same time. Each driver
    starts at a random point of the list and goes round it, and skips a task whose result was
    stored meanwhile (checked just before the task is handed out), so two drivers split the
    work between them; only tasks in flight on both at the moment they meet run twice (their
    rows are stored once: the first writer wins).
    """
    n = len(tasks)
    start = random.Random(uuid.uuid4().int).randrange(n) if n else 0
    order = [(start + j) % n for j in range(n)]
    total = len(found) + n
    ran = 0

    def stored_meanwhile(j: int) -> bool:
        kind, key, _ = jobs[order[j]]
        value = store.get_many(kind, [key]).get(key)
        if value is not None:
            found[key] = value
            update(len(found), total, labels[order[j]])
        return value is not None

    for j, value in executor.run([tasks[i] for i in order], skip=stored_meanwhile):
        kind, key, about = jobs[order[j]]
        store.put(kind, key, value, about)
        found[key] = value
        ran += 1
        update(len(found), total, labels[order[j]])
    return ran


def sensitivity_stage(
    lab: Any,
    space: DesignSpace,
    *,
    store: ResultStore,
    executor: Executor,
    model_id: str,
    signal: str,
    update: Update,
) -> tuple[ProxyTable, StageCount]:
    """The proxy table of the space: every cell (and the float base) read from the store or
    computed by the executor (see the module doc)."""
    cells = [SensCell(slot=s, choice=c, layers=ly, part=p) for s, c, ly, p in needed_entries(space)]
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    b_about = base_about(lab, model_id)
    jobs.append((SENS_BASE, result_key(b_about), b_about))
    for cell in cells:
        about = cell_about(lab, space, model_id, cell)
        jobs.append((SENS_CELL, result_key(about), about))
    found = store.get_many(SENS_BASE, [jobs[0][1]])
    found.update(store.get_many(SENS_CELL, [k for _, k, _ in jobs[1:]]))
    everything: list[Task] = [SensBase(), *cells]
    labels = ["float"] + [f"{c.slot}={c.choice}" for c in cells]
    todo = [i for i, (_, key, _) in enumerate(jobs) if key not in found]
    update(len(found), len(jobs), "")
    computed = _run_missing(
        store,
        executor,
        [jobs[i] for i in todo],
        [everything[i] for i in todo],
        found,
        update,
        [labels[i] for i in todo],
    )
    base_nll = float(found[jobs[0][1]]["nll"])
    table = ProxyTable(meta=table_meta(lab, space, model_id), base_nll=base_nll, signal=signal)
    for cell, (_, key, _) in zip(cells, jobs[1:], strict=True):
        v = found[key]
        table.entries[ProxyTable.key(cell.slot, cell.choice)] = SensEntry(
            slot=cell.slot,
            choice=cell.choice,
            delta_nll=float(v["nll"]) - base_nll,
            kl=float(v["kl"]),
            time_s=float(v["time_s"]),
        )
    # the base is counted with the cells: "reused 13 sensitivity cells" includes it
    return table, StageCount(reused=len(jobs) - computed, computed=computed)


def measure_stage(
    lab: Any,
    space: DesignSpace,
    designs: Sequence[Design],
    *,
    store: ResultStore,
    executor: Executor,
    model_id: str,
    update: Update,
) -> tuple[dict[str, Measured], StageCount]:
    """The real perplexity of each design (by design key), read from the store or measured by
    the executor (see the module doc)."""
    unique = list({d.key: d for d in designs}.values())
    jobs = []
    for design in unique:
        about = measured_about(lab, space, model_id, design)
        jobs.append((MEASURED, result_key(about), about))
    found = store.get_many(MEASURED, [k for _, k, _ in jobs])
    todo = [i for i, (_, key, _) in enumerate(jobs) if key not in found]
    update(len(jobs) - len(todo), len(jobs), "")
    computed = _run_missing(
        store,
        executor,
        [jobs[i] for i in todo],
        [Measure(unique[i]) for i in todo],
        found,
        update,
        [unique[i].key for i in todo],
    )
    pairs = zip(unique, jobs, strict=True)
    out = {d.key: Measured.from_dict(found[key]) for d, (_, key, _) in pairs}
    return out, StageCount(reused=len(jobs) - computed, computed=computed)
