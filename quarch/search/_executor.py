"""Where a study's expensive work runs: the tasks, the worker that runs them, the executors.

The model-bound stages of `explore` (the sensitivity table, the baselines, the front
measurements; calibrated methods included, as their calibration runs inside a task) are cut
into independent **tasks**:

- `SensBase`: the float model's mean NLL on the sensitivity windows;
- `SensCell`: one cell of the sensitivity table (one slot alone quantized with one choice);
- `Measure`: one design's real perplexity on the eval windows.

A **worker** (`StageWorker`) holds the loaded model (an `AccuracyLab`) and the design space,
and runs any task; its results are plain JSON-able dicts, which the driver stores
(`_stored.ResultStore`) as each one arrives. An **executor** hands tasks to workers and yields
`(index, result)` pairs as they finish, in any order:

- `LocalExecutor` (the default): one worker, the driver's own loaded model, tasks in order;
- `_ray.RayExecutor` (`--executor ray`): N Ray actors, each loading the model once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from quarch.search._space import Design, DesignSpace


class ExecutorKind(StrEnum):
    """Where the expensive stages run."""

    LOCAL = "local"
    RAY = "ray"


def executor_kind(value: str) -> ExecutorKind:
    """The `ExecutorKind` named `value`; ValueError naming it otherwise."""
    try:
        return ExecutorKind(value)
    except ValueError:
        valid = ", ".join(k.value for k in ExecutorKind)
        raise ValueError(f"unknown executor {value!r} ({valid})") from None


@dataclass(frozen=True)
class SensBase:
    """The float model's mean NLL on the sensitivity windows."""


@dataclass(frozen=True, kw_only=True)
class SensCell:
    """One sensitivity-table cell (see `_proxy.needed_entries`)."""

    slot: str
    choice: str
    layers: tuple[int, ...]
    part: str | None


@dataclass(frozen=True)
class Measure:
    """A design's real perplexity on the eval windows."""

    design: Design


Task = SensBase | SensCell | Measure


def model_fingerprint(loaded: Any, layout: Any) -> str:
    """`source#digest`: the model's source and the SHA-1 of its first and last block linear
    weights (what stored results are keyed by; reading every weight would cost seconds on
    large models)."""
    first, last = layout.linears[0][0].name, layout.linears[-1][-1].name
    digest = hashlib.sha1()
    for name in dict.fromkeys((first, last)):
        w = loaded.model.get_submodule(name).weight.detach().float().cpu().contiguous()
        digest.update(w.numpy().tobytes())
    return f"{loaded.source}#{digest.hexdigest()[:12]}"


class StageWorker:
    """The loaded model, its lab and the space: runs any task (see the module doc)."""

    def __init__(self, lab: Any, space: DesignSpace, model_id: str) -> None:
        self.lab = lab
        self.space = space
        self.model_id = model_id
        self._sens_eval: Any = None

    @staticmethod
    def from_spec(spec: Any) -> StageWorker:
        """Load the study's model and build its lab and space (what a remote worker does once)."""
        from quarch.search._accuracy import AccuracyLab
        from quarch.search._explore import load_study_model
        from quarch.search._space import build_space

        loaded = load_study_model(spec.model)
        lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
        space = build_space(spec, lab.layout)
        return StageWorker(lab, space, model_fingerprint(loaded, lab.layout))

    def _sensitivity_eval(self) -> Any:
        if self._sens_eval is None:
            from quarch.search._proxy import sensitivity_eval

            self._sens_eval = sensitivity_eval(self.lab)
        return self._sens_eval

    def run(self, task: Task) -> dict[str, Any]:
        """The task's result as plain data."""
        from quarch.search._proxy import measure_cell

        match task:
            case SensBase():
                return {"nll": float(self._sensitivity_eval().base_nll)}
            case SensCell(slot=slot, choice=choice, layers=layers, part=part):
                ev = self._sensitivity_eval()
                nll, kl, time_s = measure_cell(self.lab, ev, self.space, slot, choice, layers, part)
                return {"nll": nll, "kl": kl, "time_s": time_s}
            case Measure(design=design):
                return self.lab.measure(self.space, design).to_dict()
        raise TypeError(f"not a task: {type(task).__name__}")


class Executor(Protocol):
    """Runs tasks on workers (see the module doc)."""

    name: str
    workers: int

    def run(
        self, tasks: Sequence[Task], skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield `(index in tasks, result)` for every task, as each finishes; a task for which
        `skip(index)` is true when it is about to be handed out is not run."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


class LocalExecutor:
    """Every task in this process, in order, on the driver's loaded model."""

    name = ExecutorKind.LOCAL.value
    workers = 1

    def __init__(self, worker: StageWorker) -> None:
        self.worker = worker

    def run(
        self, tasks: Sequence[Task], skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, task in enumerate(tasks):
            if skip is None or not skip(i):
                yield i, self.worker.run(task)

    def close(self) -> None:
        pass
