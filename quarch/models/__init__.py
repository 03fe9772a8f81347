"""quarch.models."""

from quarch.models._blocks import decoder_blocks
from quarch.models._config import (
    SUPPORTED_FAMILIES,
    list_models,
    load_model_spec,
    spec_from_dict,
    spec_from_hf_config,
)
from quarch.models._load import LoadedModel, ModelKind, byte_tokenizer, load_model, tiny_llama
from quarch.models._shipped import shipped_gguf_path
from quarch.models._spec import LayerGroup, MLASpec, ModelSpec, MoESpec

__all__ = [
    "SUPPORTED_FAMILIES",
    "LayerGroup",
    "LoadedModel",
    "MLASpec",
    "MoESpec",
    "ModelKind",
    "ModelSpec",
    "byte_tokenizer",
    "decoder_blocks",
    "list_models",
    "load_model",
    "load_model_spec",
    "shipped_gguf_path",
    "spec_from_dict",
    "spec_from_hf_config",
    "tiny_llama",
]
