"""quarch.export: write a quantized design as a checkpoint other tools load.

>>> from quarch.export import export_model
>>> record = export_model(loaded, config, "compressed-tensors", "out/")  # doctest: +SKIP

Targets: `hf` (dequantized safetensors any HF tool loads) and `compressed-tensors` (packed codes
with quarch's scales, as vLLM and transformers load them; needs `pip install 'quarch[export]'`)
and `gguf` (one GGUF file for llama.cpp, each weight in its own GGUF type).
"""

from quarch.export._api import SIDECAR, ExportRecord, Target, export_model
from quarch.export._schemes import input_args, kv_args, nearest_supported, weight_args

__all__ = [
    "SIDECAR",
    "ExportRecord",
    "Target",
    "export_model",
    "input_args",
    "kv_args",
    "nearest_supported",
    "weight_args",
]
