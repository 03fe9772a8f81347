"""quarch.measure: timing real ops and models on this machine; calibration and validation.

>>> from quarch.measure import calibrate, validate
>>> result = calibrate(quick=True)          # doctest: +SKIP
>>> result.write("local.yaml")              # doctest: +SKIP
>>> report = validate("local.yaml", quick=True)  # doctest: +SKIP
"""

from quarch.measure._bench import DTYPES, Measurement, OpClass, matmul_op
from quarch.measure._calibrate import CalibrationResult, calibrate
from quarch.measure._fit import FitResult, apply_params, fit_device, levenberg_marquardt
from quarch.measure._levels import Host, Level, host, memory_levels
from quarch.measure._published import PUBLISHED_DIR, PublishedRow, load_published, split_for
from quarch.measure._published_check import (
    PublishedReport,
    PublishedResult,
    SliceSummary,
    kernel_op,
    predict_row,
    scenario_for,
    summarize_published,
    validate_published,
)
from quarch.measure._timing import Statistic, Timing, time_callable, torch_threads
from quarch.measure._validate import (
    ClassSummary,
    ValidationReport,
    ValidationRow,
    summarize,
    update_band,
    validate,
)

__all__ = [
    "DTYPES",
    "PUBLISHED_DIR",
    "CalibrationResult",
    "ClassSummary",
    "FitResult",
    "Host",
    "Level",
    "Measurement",
    "OpClass",
    "PublishedReport",
    "PublishedResult",
    "PublishedRow",
    "SliceSummary",
    "Statistic",
    "Timing",
    "ValidationReport",
    "ValidationRow",
    "apply_params",
    "calibrate",
    "fit_device",
    "host",
    "kernel_op",
    "levenberg_marquardt",
    "load_published",
    "matmul_op",
    "memory_levels",
    "predict_row",
    "scenario_for",
    "split_for",
    "summarize",
    "summarize_published",
    "time_callable",
    "torch_threads",
    "update_band",
    "validate",
    "validate_published",
]
