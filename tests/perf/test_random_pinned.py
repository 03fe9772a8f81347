"""600 random predictions (dense, MoE, MLA, sliding windows, engines, formats, TP) equal what the
code gave before the pricing was made faster (commit fb44ac8), to 1e-12 relative.

The golden file was written by `python tests/perf/perf_cases.py OUT.json 600` run on that
commit; `None` marks a case whose scenario does not fit its model (it must still be rejected).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from perf_cases import cases, run, values

from quarch.perf._ops import Op, OpKind, new_op

GOLDEN = Path(__file__).parents[1] / "data" / "perf_random_predictions.json"


def test_random_predictions_equal_the_pinned_ones() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for i, (case, expected) in enumerate(zip(cases(len(golden)), golden, strict=True)):
        got = values(run(case))
        if expected is None:
            assert got is None, (i, case)
            continue
        assert got == pytest.approx(expected, rel=1e-12, abs=0.0), (i, case)


def test_new_op_equals_the_keyword_constructor() -> None:
    kw = Op(name="a.b", kind=OpKind.MATMUL, group="a", count=3, m=4, n=5, k=6, flops=7.0)
    fast = new_op("a.b", OpKind.MATMUL, "a", 3, 4, 5, 6, 1, 7.0, 0.0, 0.0, 0.0, "bf16", "bf16",
                  "bf16", 0.0, kw.comm, 1)  # fmt: skip
    assert fast == kw and hash(fast) == hash(kw)
