"""The perf model's predicted time for measured work, in one place.

Calibration and validation price every `Measurement` exactly as `quarch.perf` prices a model's
ops: the sum over its ops of `count × op_time(op).time_s`, with the op's bytes read from the
memory level `quarch.perf` would pick for the bytes the work keeps resident (the fastest level
whose capacity holds them). Repeated timing keeps small working sets in caches, and the
measured Hardware lists those caches as memory levels, so the same rule applies to both.
"""

from __future__ import annotations

from collections.abc import Iterable

from quarch.hardware import Hardware
from quarch.perf import Op, memory_level_for, op_time


def predicted_s(ops: Iterable[Op], hw: Hardware, resident_bytes: float) -> float:
    """Predicted seconds of one run of `ops` (each `count` times) on `hw`."""
    level = memory_level_for(hw, resident_bytes)
    return sum(op.count * op_time(op, hw, memory_level=level).time_s for op in ops)


def level_for(hw: Hardware, resident_bytes: float) -> int:
    """Index of the memory level `quarch.perf` reads `resident_bytes` from."""
    return memory_level_for(hw, resident_bytes)
