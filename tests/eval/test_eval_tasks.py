"""The optional lm-eval-harness bridge: clear errors when it cannot run."""

from __future__ import annotations

import sys

import pytest

from quarch.eval import LM_EVAL_EXTRA, evaluate_tasks
from quarch.models import LoadedModel


def test_missing_harness_names_the_extra(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` fail
    with pytest.raises(ImportError, match=f"optional `{LM_EVAL_EXTRA}` package"):
        evaluate_tasks(tiny.model, tiny.tokenizer, ["hellaswag"])
    assert LM_EVAL_EXTRA == "lm-eval"


@pytest.mark.parametrize("tasks", [[], "hellaswag", [""], [3]])
def test_bad_task_lists(tiny: LoadedModel, tasks: object) -> None:
    with pytest.raises(ValueError, match="non-empty list of task names"):
        evaluate_tasks(tiny.model, tiny.tokenizer, tasks)  # type: ignore[arg-type]


def test_eval_cli_tasks_without_the_harness_fails_before_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from quarch.cli import app
    from quarch.models import _load

    monkeypatch.setitem(sys.modules, "lm_eval", None)

    def no_load(*_a: object, **_k: object) -> None:
        raise AssertionError("loaded the model before checking for the harness")

    monkeypatch.setattr(_load, "load_model", no_load)
    result = CliRunner().invoke(app, ["eval", "--tasks", "hellaswag"])
    assert result.exit_code == 2
    assert "optional `lm-eval` package" in result.output


def test_eval_cli_tasks_go_into_the_record(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import json

    from typer.testing import CliRunner

    import quarch.models
    from quarch.cli import app
    from quarch.eval import _tasks

    seen: dict[str, object] = {}

    def fake_tasks(model: object, tokenizer: object, names: list[str], **kw: object) -> dict:
        seen.update(names=names, **kw)
        return {"arc_easy": {"acc,none": 0.5}}

    monkeypatch.setattr(_tasks, "require_harness", lambda: None)
    monkeypatch.setattr(_tasks, "evaluate_tasks", fake_tasks)
    monkeypatch.setattr(quarch.models, "load_model", lambda *a, **k: tiny)  # as run_eval finds it
    args = ["eval", "--tasks", "arc_easy", "--task-limit", "3", "--seqlen", "16"]
    result = CliRunner().invoke(app, [*args, "--max-windows", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["names"] == ["arc_easy"] and seen["limit"] == 3
    assert json.loads(result.output)["tasks"] == {"arc_easy": {"acc,none": 0.5}}
    bad = CliRunner().invoke(app, ["eval", "--tasks", "arc_easy,,x"])
    assert bad.exit_code == 2 and "comma-separated task names" in bad.output
