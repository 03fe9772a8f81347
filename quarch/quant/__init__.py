"""quarch.quant: QuantConfig, applying it to a torch model, and the PTQ methods."""

from quarch.quant._apply import LayerReport, QuantReport, apply_config, plan_config, quantized
from quarch.quant._cache import DEFAULT_CACHE_BYTES, WeightCache
from quarch.quant._calib import collect_calib
from quarch.quant._config import QuantConfig, Role, Rule, TensorSpec
from quarch.quant._kv import KVFormats
from quarch.quant._linear import QuantLinear
from quarch.quant._methods_api import (
    METHODS,
    LayerCalib,
    Method,
    ParamSpec,
    WeightResult,
    get_method,
    reconstruction_error,
    rotate_model,
    rotation_matrix,
)
from quarch.quant._pipeline import run_quantize, run_sensitivity
from quarch.quant._sensitivity import (
    Additivity,
    AdditivityPoint,
    SensitivityEntry,
    SensitivityTable,
    WindowEval,
    config_cost,
    layer_groups,
    layer_sensitivity,
    measure_additivity,
)

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "METHODS",
    "Additivity",
    "AdditivityPoint",
    "KVFormats",
    "LayerCalib",
    "LayerReport",
    "Method",
    "ParamSpec",
    "QuantConfig",
    "QuantLinear",
    "QuantReport",
    "Role",
    "Rule",
    "SensitivityEntry",
    "SensitivityTable",
    "TensorSpec",
    "WeightCache",
    "WeightResult",
    "WindowEval",
    "apply_config",
    "collect_calib",
    "config_cost",
    "get_method",
    "layer_groups",
    "layer_sensitivity",
    "measure_additivity",
    "plan_config",
    "quantized",
    "reconstruction_error",
    "rotate_model",
    "rotation_matrix",
    "run_quantize",
    "run_sensitivity",
]
