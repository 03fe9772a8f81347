"""A measured point's record: window NLLs and interval ends survive JSON, one window included."""

from __future__ import annotations

import json
import math

from quarch.search import Measured


def _measured(windows: tuple[float, ...], low: float, high: float) -> Measured:
    return Measured(
        ppl=20.0,
        nll=math.log(20.0),
        num_windows=len(windows),
        seqlen=64,
        num_tokens=63 * len(windows),
        wall_s=0.1,
        window_nll=windows,
        ppl_low=low,
        ppl_high=high,
    )


def test_round_trip_through_json() -> None:
    m = _measured((2.9, 3.1), 15.0, 26.0)
    data = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert Measured.from_dict(data) == m


def test_one_window_has_no_upper_end_in_json() -> None:
    m = _measured((3.0,), 0.0, math.inf)
    data = json.loads(json.dumps(m.to_dict(), allow_nan=False))  # no Infinity written
    assert data["ppl_high"] is None
    assert Measured.from_dict(data).ppl_high == math.inf
