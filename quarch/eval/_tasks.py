"""Optional bridge to EleutherAI's lm-evaluation-harness (`lm_eval`) for downstream tasks.

Used only when the harness is installed and its task data is already in the local `datasets`
cache: the hub is forced offline for the call, so a task whose data is missing fails with a
clear error instead of downloading. Harness: https://github.com/EleutherAI/lm-evaluation-harness
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from quarch.eval._corpus import _offline

LM_EVAL_EXTRA = "lm-eval"
"""The PyPI package that provides `lm_eval`."""


def require_harness() -> None:
    """Raise the `evaluate_tasks` ImportError now, before a model is loaded, if `lm_eval` is
    missing."""
    import importlib.util

    try:
        found = importlib.util.find_spec("lm_eval") is not None
    except (ImportError, ValueError):  # a None entry in sys.modules (tests), a broken install
        found = False
    if not found:
        raise ImportError(
            f"task evaluation needs the optional `{LM_EVAL_EXTRA}` package (pip install "
            f"'quarch[{LM_EVAL_EXTRA}]') with its task data in the local cache"
        )


def evaluate_tasks(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 1,
    num_fewshot: int | None = None,
) -> dict[str, dict[str, float]]:
    """Run lm-eval-harness tasks on an in-memory model; numeric metrics per task.

    Args:
        model: a transformers causal LM (e.g. `LoadedModel.model`, quantized or not).
        tokenizer: its tokenizer.
        tasks: harness task names, e.g. `["hellaswag", "arc_easy"]`.
        limit: evaluate only the first N examples of each task.
        batch_size: examples per forward pass.
        num_fewshot: few-shot examples (None: each task's default).

    Returns:
        `{task: {"acc,none": 0.61, ...}}`, the harness's metric keys, numeric values only.

    Raises:
        ValueError: `tasks` is empty or not strings, or a task or its data is unavailable.
        ImportError: the optional `lm-eval` package is not installed.
    """
    if isinstance(tasks, str) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise ValueError(f"tasks must be a non-empty list of task names, got {tasks!r}")
    try:
        import datasets
        import huggingface_hub.constants
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as error:
        raise ImportError(
            f"task evaluation needs the optional `{LM_EVAL_EXTRA}` package (pip install "
            f"{LM_EVAL_EXTRA}) with its task data in the local cache; missing: {error.name}"
        ) from None
    harness_model = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    try:
        with _offline(datasets.config, huggingface_hub.constants):
            output = lm_eval.simple_evaluate(
                model=harness_model, tasks=list(tasks), limit=limit, num_fewshot=num_fewshot
            )
    except Exception as error:  # the harness raises many types for unknown tasks or no data
        raise ValueError(
            f"lm-eval could not run tasks {list(tasks)} offline: {type(error).__name__}: {error}"
        ) from error
    return {
        task: {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}
        for task, metrics in (output or {}).get("results", {}).items()
    }
