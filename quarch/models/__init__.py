"""quarch.models: loading models (HF directory, GGUF, tiny random ones) and `ModelSpec`.

Names load lazily (PEP 562): `from quarch.models import ModelSpec` imports only the plain-data
modules, so the performance model (which reads a `ModelSpec`, never weights) does not load
torch; the loaders and tiny models import it when first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quarch._lazy import lazy_attributes

if TYPE_CHECKING:
    from quarch.models._blocks import decoder_blocks
    from quarch.models._config import (
        SUPPORTED_FAMILIES,
        list_models,
        load_model_spec,
        spec_from_dict,
        spec_from_hf_config,
    )
    from quarch.models._load import LoadedModel, ModelKind, byte_tokenizer, load_model
    from quarch.models._shipped import shipped_gguf_path
    from quarch.models._spec import LayerGroup, MLASpec, ModelSpec, MoESpec
    from quarch.models._tensors import (
        WeightFile,
        count_weight_tensors,
        iter_weight_tensors,
        open_weight_file,
    )
    from quarch.models._tiny import (
        TINY_MODELS,
        LinearExperts,
        tiny_llama,
        tiny_model,
        unfuse_experts,
    )

_LAZY: dict[str, str] = {
    "SUPPORTED_FAMILIES": "quarch.models._config",
    "TINY_MODELS": "quarch.models._tiny",
    "LayerGroup": "quarch.models._spec",
    "LinearExperts": "quarch.models._tiny",
    "LoadedModel": "quarch.models._load",
    "MLASpec": "quarch.models._spec",
    "MoESpec": "quarch.models._spec",
    "ModelKind": "quarch.models._load",
    "ModelSpec": "quarch.models._spec",
    "WeightFile": "quarch.models._tensors",
    "byte_tokenizer": "quarch.models._load",
    "count_weight_tensors": "quarch.models._tensors",
    "decoder_blocks": "quarch.models._blocks",
    "iter_weight_tensors": "quarch.models._tensors",
    "list_models": "quarch.models._config",
    "load_model": "quarch.models._load",
    "load_model_spec": "quarch.models._config",
    "open_weight_file": "quarch.models._tensors",
    "shipped_gguf_path": "quarch.models._shipped",
    "spec_from_dict": "quarch.models._config",
    "spec_from_hf_config": "quarch.models._config",
    "tiny_llama": "quarch.models._tiny",
    "tiny_model": "quarch.models._tiny",
    "unfuse_experts": "quarch.models._tiny",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "SUPPORTED_FAMILIES",
    "TINY_MODELS",
    "LayerGroup",
    "LinearExperts",
    "LoadedModel",
    "MLASpec",
    "MoESpec",
    "ModelKind",
    "ModelSpec",
    "WeightFile",
    "byte_tokenizer",
    "count_weight_tensors",
    "decoder_blocks",
    "iter_weight_tensors",
    "list_models",
    "load_model",
    "load_model_spec",
    "open_weight_file",
    "shipped_gguf_path",
    "spec_from_dict",
    "spec_from_hf_config",
    "tiny_llama",
    "tiny_model",
    "unfuse_experts",
]
