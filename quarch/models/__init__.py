"""quarch.models."""

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
from quarch.models._tiny import TINY_MODELS, LinearExperts, tiny_llama, tiny_model, unfuse_experts

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
