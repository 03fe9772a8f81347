"""quarch.perf."""

from quarch.perf._bands import ALL as BAND_ALL
from quarch.perf._bands import BANDS_PATH, architecture_of, band_for, load_bands
from quarch.perf._deploy import FusedGroup, KernelSupport, find_kernel, kernel_class
from quarch.perf._efficiency import ARCHITECTURE, DEFAULT_EFFICIENCY, efficiency_for
from quarch.perf._engine import IDEAL, Engine, engine_from_dict, list_engines, load_engine
from quarch.perf._graph import (
    Phase,
    build_ops,
    decode_ops,
    prefill_ops,
)
from quarch.perf._linears import Linear, expected_experts_touched, part_linears
from quarch.perf._memory import (
    MemoryBreakdown,
    kv_cache_bytes_per_token,
    memory_per_device,
    stage_layers,
)
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._plan import ExtraGemm, LayerPlan, Overhead, Plan
from quarch.perf._plot import roofline_figure, write_roofline
from quarch.perf._predict import Prediction, memory_level_for, predict
from quarch.perf._roofline import Bound, OpTime, RatePlan, comm_time_s, matrix_rate, op_time
from quarch.perf._scenario import Scenario, check_scenario
from quarch.perf._sweep import HardwareSweep, PredictionTable, predict_many, sweep_hardware

__all__ = [
    "ARCHITECTURE",
    "BANDS_PATH",
    "BAND_ALL",
    "DEFAULT_EFFICIENCY",
    "IDEAL",
    "Bound",
    "CommKind",
    "Engine",
    "ExtraGemm",
    "FusedGroup",
    "HardwareSweep",
    "KernelSupport",
    "LayerPlan",
    "Linear",
    "MemoryBreakdown",
    "Op",
    "OpKind",
    "OpTime",
    "Overhead",
    "Phase",
    "Plan",
    "Prediction",
    "PredictionTable",
    "RatePlan",
    "Scenario",
    "architecture_of",
    "band_for",
    "build_ops",
    "check_scenario",
    "comm_time_s",
    "decode_ops",
    "efficiency_for",
    "engine_from_dict",
    "expected_experts_touched",
    "find_kernel",
    "kernel_class",
    "kv_cache_bytes_per_token",
    "list_engines",
    "load_bands",
    "load_engine",
    "matrix_rate",
    "memory_level_for",
    "memory_per_device",
    "op_time",
    "part_linears",
    "predict",
    "predict_many",
    "prefill_ops",
    "roofline_figure",
    "stage_layers",
    "sweep_hardware",
    "write_roofline",
]
