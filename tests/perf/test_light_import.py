"""The performance model reads a ModelSpec and never weights: importing it must not load torch."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import quarch.perf, quarch.models
print(json.dumps(sorted(m for m in ("torch", "transformers") if m in sys.modules)))
"""


def test_perf_and_model_specs_import_without_torch() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
