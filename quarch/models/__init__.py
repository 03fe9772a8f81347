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

_HOMES: dict[str, tuple[str, ...]] = {
    "quarch.models._blocks": ("decoder_blocks",),
    "quarch.models._config": (
        "SUPPORTED_FAMILIES",
        "list_models",
        "load_model_spec",
        "spec_from_dict",
        "spec_from_hf_config",
    ),
    "quarch.models._load": ("LoadedModel", "ModelKind", "byte_tokenizer", "load_model"),
    "quarch.models._shipped": ("shipped_gguf_path",),
    "quarch.models._spec": ("LayerGroup", "MLASpec", "MoESpec", "ModelSpec"),
    "quarch.models._tensors": (
        "WeightFile",
        "count_weight_tensors",
        "iter_weight_tensors",
        "open_weight_file",
    ),
    "quarch.models._tiny": (
        "TINY_MODELS",
        "LinearExperts",
        "tiny_llama",
        "tiny_model",
        "unfuse_experts",
    ),
}
"""Each private module and the public names it defines (torch loads with `_load`, `_tensors`
and `_tiny` only)."""

_LAZY = {name: module for module, names in _HOMES.items() for name in names}

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
