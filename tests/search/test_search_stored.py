"""The expensive results of a study kept in its storage (`_stored`, `_stages`): rows keyed by
what determines them, the first writer winning, and a second run or a second machine on the
same storage computing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quarch.models import tiny_llama
from quarch.search import explore, study_from_dict
from quarch.search._accuracy import AccuracyLab
from quarch.search._executor import (
    LocalExecutor,
    SensBase,
    SensCell,
    StageWorker,
    Task,
    executor_kind,
)
from quarch.search._proxy import build_table, needed_entries
from quarch.search._runner import MEMORY, storage
from quarch.search._space import build_space
from quarch.search._stages import cell_about, measure_stage, measured_about, sensitivity_stage
from quarch.search._stored import MEASURED, SENS_CELL, ResultStore, result_key

from .conftest import TINY_STUDY


def _sqlite_store(tmp_path: Path) -> ResultStore:
    return ResultStore.for_storage(storage(f"sqlite:///{tmp_path / 's.db'}"))


def test_first_writer_wins_and_values_round_trip(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    assert store.persistent
    value = {"nll": 1 / 3, "kl": 0.1 + 0.2, "time_s": 1e-300}
    assert store.put(SENS_CELL, "k1", value, {"what": "a"})
    assert not store.put(SENS_CELL, "k1", {"nll": 9.0}, {"what": "b"})  # stored already
    again = _sqlite_store(tmp_path)  # another connection reads the same row
    assert again.get_many(SENS_CELL, ["k1", "absent"]) == {"k1": value}  # floats exact
    assert again.get_many(MEASURED, ["k1"]) == {}  # kinds are separate
    assert again.count(SENS_CELL) == 1


def test_memory_store_and_bad_kind() -> None:
    store = ResultStore.for_storage(storage(MEMORY))
    assert not store.persistent
    assert store.put(MEASURED, "k", {"ppl": 2.0}, {})
    assert not store.put(MEASURED, "k", {"ppl": 3.0}, {})
    assert store.get_many(MEASURED, ["k"]) == {"k": {"ppl": 2.0}}
    with pytest.raises(ValueError, match="'pickle'"):
        store.put("pickle", "k", {}, {})


def test_result_key_is_canonical_and_complete() -> None:
    a = {"model": "m#1", "config": {"rules": [1, 2]}, "calib": None}
    assert result_key(a) == result_key(dict(reversed(list(a.items()))))
    assert result_key(a) != result_key({**a, "model": "m#2"})
    assert result_key(a) != result_key({**a, "config": {"rules": [2, 1]}})


def test_executor_kind_names_a_bad_value() -> None:
    with pytest.raises(ValueError, match="'dask'"):
        executor_kind("dask")


class Counting(LocalExecutor):
    """The local executor, recording every task it runs."""

    def __init__(self, worker: StageWorker) -> None:
        super().__init__(worker)
        self.ran: list[Task] = []

    def run(
        self, tasks: Sequence[Task], skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, value in super().run(tasks, skip):
            self.ran.append(tasks[i])
            yield i, value


@pytest.fixture(scope="module")
def worker() -> StageWorker:
    spec = study_from_dict(TINY_STUDY)
    m = tiny_llama(seed=0)
    lab = AccuracyLab(m.model, m.tokenizer, spec.accuracy)
    return StageWorker(lab, build_space(spec, lab.layout), "tiny#test")


def _noop(*_: Any, **__: Any) -> None:
    pass


def test_sensitivity_stage_equals_the_local_table_and_reuses_it(
    worker: StageWorker, tmp_path: Path
) -> None:
    store = _sqlite_store(tmp_path)
    first = Counting(worker)
    args = {"store": store, "model_id": worker.model_id, "signal": "kl", "update": _noop}
    table, count = sensitivity_stage(worker.lab, worker.space, executor=first, **args)
    cells = len(needed_entries(worker.space))
    assert (count.reused, count.computed) == (0, cells + 1) and len(first.ran) == cells + 1
    local = build_table(worker.lab, worker.space, None, model_id=worker.model_id)
    assert table.base_nll == local.base_nll
    assert {k: (e.kl, e.delta_nll) for k, e in table.entries.items()} == {
        k: (e.kl, e.delta_nll) for k, e in local.entries.items()
    }
    second = Counting(worker)
    again, count = sensitivity_stage(worker.lab, worker.space, executor=second, **args)
    assert (count.reused, count.computed) == (cells + 1, 0) and second.ran == []
    assert again.entries == table.entries and again.meta == table.meta
    # another model: nothing is reused
    _other, count = sensitivity_stage(
        worker.lab, worker.space, executor=Counting(worker), **{**args, "model_id": "other#1"}
    )
    assert count.reused == 0


def test_two_drivers_split_a_stage_without_duplicate_work(
    worker: StageWorker, tmp_path: Path
) -> None:
    """Another driver on the same storage runs the same stage, one task between each two of
    ours, skipping what is stored as we do: every cell is computed once, by one of the two."""
    store = _sqlite_store(tmp_path)
    theirs = [
        (result_key(about), cell, about)
        for cell in (SensCell(slot=s, choice=c, layers=ly, part=p) for s, c, ly, p in
                     needed_entries(worker.space))
        for about in [cell_about(worker.lab, worker.space, worker.model_id, cell)]
    ]  # fmt: skip
    by_them: list[str] = []

    class Meanwhile(Counting):
        def run(
            self, tasks: Sequence[Task], skip: Callable[[int], bool] | None = None
        ) -> Iterator[tuple[int, dict[str, Any]]]:
            def their_turn_then_skip(i: int) -> bool:
                while theirs:  # the other driver's next task not stored yet
                    key, cell, about = theirs.pop()
                    if not store.get_many(SENS_CELL, [key]):
                        store.put(SENS_CELL, key, worker.run(cell), about)
                        by_them.append(key)
                        break
                return skip is not None and skip(i)

            return super().run(tasks, their_turn_then_skip)

    ours = Meanwhile(worker)
    args = {"store": store, "model_id": worker.model_id, "signal": "kl", "update": _noop}
    table, count = sensitivity_stage(worker.lab, worker.space, executor=ours, **args)
    cells = len(needed_entries(worker.space))
    ran_by_us = [t for t in ours.ran if not isinstance(t, SensBase)]
    assert by_them and ran_by_us  # both drivers did part of the work ...
    assert len(ran_by_us) + len(by_them) == cells  # ... and no cell twice
    assert store.count(SENS_CELL) == cells
    assert count.computed == len(ours.ran) and count.reused == cells + 1 - len(ours.ran)
    local = build_table(worker.lab, worker.space, None, model_id=worker.model_id)
    assert {k: e.kl for k, e in table.entries.items()} == {
        k: e.kl for k, e in local.entries.items()
    }


def test_measure_stage_stores_each_design_once(worker: StageWorker, tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    designs = [d for _, d in worker.space.baselines()][:3]
    ex = Counting(worker)
    kw = {"store": store, "executor": ex, "model_id": worker.model_id, "update": _noop}
    got, count = measure_stage(worker.lab, worker.space, [*designs, designs[0]], **kw)
    assert (count.reused, count.computed) == (0, 3) and len(ex.ran) == 3
    assert set(got) == {d.key for d in designs}
    assert got[designs[1].key].nll == worker.lab.measure(worker.space, designs[1]).nll
    again, count = measure_stage(worker.lab, worker.space, designs, **kw)
    assert (count.reused, count.computed) == (3, 0) and len(ex.ran) == 3
    assert again == got
    # the stored row says what it measured
    about = measured_about(worker.lab, worker.space, worker.model_id, designs[1])
    assert about["model"] == worker.model_id and about["config"]["rules"]
    assert store.count(MEASURED) == 3


def test_a_second_machine_on_the_same_storage_computes_nothing(
    tiny_result: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tiny_result.out_dir / 'study.db'}"
    spec = replace(tiny_result.spec, search=replace(tiny_result.spec.search, storage=url))
    with caplog.at_level("INFO", logger="quarch.search"):
        again = explore(spec, tmp_path / "elsewhere", progress=False, trusted_storage=True)
    stored = again.eval_info["stored_results"]
    assert stored["sensitivity"]["computed"] == 0 and stored["sensitivity"]["reused"] > 0
    assert stored["baselines"]["computed"] == 0 and stored["baselines"]["reused"] > 0
    assert stored.get("front", {"computed": 0})["computed"] == 0
    assert "reused" in caplog.text and "sensitivity cells from storage, computed 0" in caplog.text
    assert [p.key for p in again.front_points] == [p.key for p in tiny_result.front_points]
    measured = json.loads((tmp_path / "elsewhere" / "measured.json").read_text())
    assert measured == json.loads((tiny_result.out_dir / "measured.json").read_text())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--executor", "dask"], "'dask'"),
        (["--address", "10.0.0.1:6379"], "'10.0.0.1:6379'"),
        (["--workers", "0"], "workers must be >= 1"),
    ],
)
def test_cli_refuses_bad_executor_settings_before_loading(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from quarch.cli import app

    args = ["explore", "--model", "tiny-llama", "--out", str(tmp_path), "--quiet", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "study.yaml").exists()  # refused before anything ran
