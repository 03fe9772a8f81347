"""Generated bad inputs over every verb (see `fuzzcli.py`): no traceback and no hang, ever.

The default run takes two cases of each verb that refuses them before loading a model; the
slow one a thousand over every verb. The README's figure comes from
`python tests/chaos/fuzzcli.py 10000` (its counts are printed as JSON).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzcli import _verbs, run

QUICK = {"formats", "models", "hw", "predict", "roofline", "validate", "report", "export"}
"""Verbs whose bad inputs are refused without loading a model (the default run's)."""


def _check(n: int, seed: int, tmp_path: Path, only: set[str] | None = None) -> None:
    out = run(n, seed, tmp_path, only=only)
    assert sum(out.counts.values()) == n
    assert out.counts["traceback"] == out.counts["hang"] == out.counts["echo"] == 0, out.to_dict()
    assert out.counts["refused"] + out.counts["usage"] >= n // 2  # mostly refusals, really
    assert set(out.by_verb) == (only or set(_verbs()))


def test_bad_inputs_of_the_quick_verbs(tmp_path: Path) -> None:
    _check(2 * len(QUICK), 7, tmp_path, QUICK)


@pytest.mark.slow
def test_a_thousand_bad_inputs(tmp_path: Path) -> None:
    _check(1000, 8, tmp_path)
