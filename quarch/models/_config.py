"""Building a `ModelSpec` from an HF `config.json`, a hand-written YAML spec, or the catalog.

The field names read from HF configs follow the `transformers` configuration classes of each
family (`LlamaConfig`, `Qwen2Config`, `Qwen3Config`, `MixtralConfig`, `Qwen2MoeConfig`,
`Qwen3MoeConfig`, `DeepseekV2Config`, `DeepseekV3Config`). Nothing is downloaded and no model code
runs: a config is data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from importlib import resources
from pathlib import Path
from typing import Any

from quarch._yaml import load_yaml_file, load_yaml_text, read_text_file
from quarch.models._spec import MLASpec, ModelSpec, MoESpec

_DENSE_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3")
SUPPORTED_FAMILIES = _DENSE_FAMILIES + _MOE_FAMILIES
"""HF `model_type` values `spec_from_hf_config` understands."""


class _Fields:
    """Typed access to a config mapping; every error names the source and the field."""

    def __init__(self, config: Mapping[str, Any], where: str) -> None:
        self.config = config
        self.where = where

    def get_int(self, key: str, default: int | None = None) -> int:
        value = self.config.get(key, default)
        if value is None:
            raise ValueError(f"{self.where}: missing field {key!r}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{self.where}: field {key!r} must be an integer, got {value!r}")
        return value

    def opt_int(self, key: str) -> int | None:
        return None if self.config.get(key) is None else self.get_int(key)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.config.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValueError(f"{self.where}: field {key!r} must be true or false, got {value!r}")
        return value


def spec_from_hf_config(
    config: Mapping[str, Any], *, name: str | None = None, source: str = ""
) -> ModelSpec:
    """Build a `ModelSpec` from the contents of an HF `config.json`.

    Args:
        config: the parsed `config.json`.
        name: display name; defaults to the config's `_name_or_path`, else its `model_type`.
        source: where the config came from (recorded in the spec).

    Raises:
        ValueError: unknown `model_type`, a missing or mistyped field (named), or an
            architecture feature the spec cannot describe.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    family = config.get("model_type")
    where = f"config {source}" if source else "config"
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"{where}: unknown model_type {family!r}; supported: {', '.join(SUPPORTED_FAMILIES)}"
        )
    f = _Fields(config, where)
    if f.get_bool("mlp_bias", False):
        raise ValueError(f"{where}: field 'mlp_bias' = true is not supported (no MLP biases)")
    act = config.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"{where}: field 'hidden_act' = {act!r}; only gated SiLU MLPs supported")
    builder: Callable[[_Fields], dict[str, Any]] = _FAMILY_BUILDERS[family]
    kwargs = _common(f) | builder(f)
    display = name or str(config.get("_name_or_path") or family).rstrip("/").split("/")[-1]
    try:
        return ModelSpec(name=display, family=family, source=source, **kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def _common(f: _Fields) -> dict[str, Any]:
    heads = f.get_int("num_attention_heads")
    hidden = f.get_int("hidden_size")
    return {
        "vocab_size": f.get_int("vocab_size"),
        "hidden_size": hidden,
        "num_layers": f.get_int("num_hidden_layers"),
        "num_heads": heads,
        "num_kv_heads": f.get_int("num_key_value_heads", heads),
        "head_dim": f.get_int("head_dim", hidden // heads),
        "intermediate_size": f.get_int("intermediate_size"),
        "tied_embeddings": f.get_bool("tie_word_embeddings", False),
        "max_position_embeddings": f.get_int("max_position_embeddings"),
    }


def _llama(f: _Fields) -> dict[str, Any]:
    return {"qkv_bias": f.get_bool("attention_bias", False)}


def _mistral(f: _Fields) -> dict[str, Any]:
    # MistralAttention/MixtralAttention: a sliding window when the config sets one
    return _llama(f) | {"sliding_window": f.opt_int("sliding_window")}


def _no_qwen_windows(f: _Fields) -> None:
    # Qwen configs carry `sliding_window` but apply it only with use_sliding_window, and then
    # only above max_window_layers: per-layer windows the spec does not describe
    if f.get_bool("use_sliding_window", False):
        raise ValueError(f"{f.where}: field 'use_sliding_window' = true is not supported")


def _qwen2(f: _Fields) -> dict[str, Any]:
    _no_qwen_windows(f)
    return {"qkv_bias": True}  # Qwen2Attention: q/k/v_proj with bias=True, o_proj without


def _qwen3(f: _Fields) -> dict[str, Any]:
    _no_qwen_windows(f)
    return {"qkv_bias": f.get_bool("attention_bias", False), "qk_norm": True}


def _mixtral(f: _Fields) -> dict[str, Any]:
    moe = MoESpec(
        num_experts=f.get_int("num_local_experts"),
        experts_per_token=f.get_int("num_experts_per_tok"),
        expert_intermediate_size=f.get_int("intermediate_size"),
    )
    return _mistral(f) | {"moe": moe}


def _qwen_moe(f: _Fields, **shared: Any) -> MoESpec:
    """The routed experts of a Qwen2-MoE / Qwen3-MoE config (`shared`: its shared expert)."""
    return MoESpec(
        num_experts=f.get_int("num_experts"),
        experts_per_token=f.get_int("num_experts_per_tok"),
        expert_intermediate_size=f.get_int("moe_intermediate_size"),
        dense_layers=_qwen_dense_layers(f),
        # Qwen2MoeDecoderLayer: experts when (layer_idx + 1) % decoder_sparse_step == 0
        layer_period=f.get_int("decoder_sparse_step", 1),
        layer_offset=1,
        **shared,
    )


def _qwen_dense_layers(f: _Fields) -> tuple[int, ...]:
    only = f.config.get("mlp_only_layers") or []
    if not isinstance(only, list) or not all(isinstance(i, int) for i in only):
        raise ValueError(f"{f.where}: field 'mlp_only_layers' must be a list of layer indices")
    return tuple(only)


def _qwen2_moe(f: _Fields) -> dict[str, Any]:
    size = f.get_int("shared_expert_intermediate_size", 0)
    moe = _qwen_moe(
        f,
        num_shared_experts=1 if size else 0,
        shared_intermediate_size=size,
        shared_expert_gate=bool(size),
    )
    _no_qwen_windows(f)
    return {"qkv_bias": True, "moe": moe}


def _qwen3_moe(f: _Fields) -> dict[str, Any]:
    return _qwen3(f) | {"moe": _qwen_moe(f)}


def _deepseek(f: _Fields) -> dict[str, Any]:
    mla = MLASpec(
        q_lora_rank=f.opt_int("q_lora_rank"),
        kv_lora_rank=f.get_int("kv_lora_rank"),
        qk_nope_head_dim=f.get_int("qk_nope_head_dim"),
        qk_rope_head_dim=f.get_int("qk_rope_head_dim"),
        v_head_dim=f.get_int("v_head_dim"),
    )
    moe = None
    if f.config.get("n_routed_experts") is not None:
        expert = f.get_int("moe_intermediate_size")
        moe = MoESpec(
            num_experts=f.get_int("n_routed_experts"),
            experts_per_token=f.get_int("num_experts_per_tok"),
            expert_intermediate_size=expert,
            num_shared_experts=f.get_int("n_shared_experts", 0),
            shared_intermediate_size=expert,
            first_dense_layers=f.get_int("first_k_dense_replace", 0),
            layer_period=f.get_int("moe_layer_freq", 1),
            # DeepseekV3MoE keeps e_score_correction_bias for the noaux_tc router
            router_bias=f.config.get("topk_method") == "noaux_tc",
        )
    heads = f.get_int("num_attention_heads")
    return {
        "qkv_bias": f.get_bool("attention_bias", False),
        "num_kv_heads": heads,
        "head_dim": mla.qk_head_dim,
        "mla": mla,
        "moe": moe,
    }


_FAMILY_BUILDERS: dict[str, Callable[[_Fields], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
}


# --- hand-written specs --------------------------------------------------------------------


def _sub_spec(cls: type[MoESpec] | type[MLASpec], data: object, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a mapping of {cls.__name__} fields")
    known = {fl.name for fl in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {sorted(known)}")
    kwargs = dict(data)
    if "dense_layers" in kwargs:
        kwargs["dense_layers"] = tuple(kwargs["dense_layers"])
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"{where}: {err}") from err


def spec_from_dict(data: Mapping[str, Any], *, source: str = "") -> ModelSpec:
    """Build a `ModelSpec` from a mapping of its own field names (a hand-written YAML spec).

    `moe` and `mla` are nested mappings of `MoESpec` / `MLASpec` fields.

    Raises:
        ValueError: an unknown field, a missing field (named), or an invalid value.
    """
    where = f"model spec {source}" if source else "model spec"
    known = {fl.name for fl in fields(ModelSpec) if fl.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {sorted(known)}")
    required = [
        fl.name
        for fl in fields(ModelSpec)
        if fl.init
        and fl.name not in data
        and fl.default is MISSING
        and fl.default_factory is MISSING
    ]
    if required:
        raise ValueError(f"{where}: missing field(s) {required}")
    kwargs = dict(data)
    for key, cls in (("moe", MoESpec), ("mla", MLASpec)):
        if kwargs.get(key) is not None:
            kwargs[key] = _sub_spec(cls, kwargs[key], f"{where}: field {key!r}")
    kwargs.setdefault("source", source)
    try:
        return ModelSpec(**kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


# --- files and the catalog -----------------------------------------------------------------


def _catalog_files() -> dict[str, Any]:
    root = resources.files("quarch.models").joinpath("catalog")
    return {p.name[: -len(".yaml")].lower(): p for p in root.iterdir() if p.name.endswith(".yaml")}


def _catalog_entry(entry: Any) -> Any:
    """A catalog file's document (a package resource: read as text, not as a path)."""
    return load_yaml_text(entry.read_text(encoding="utf-8"), where=entry.name)


def _from_yaml_data(data: object, source: str) -> ModelSpec:
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping at the top level")
    if "config" in data:  # a catalog entry: name, source URL, and the config.json fields
        config = data["config"]
        if not isinstance(config, Mapping):
            raise ValueError(f"{source}: field 'config' must be a mapping")
        url = str(data.get("source") or source)
        return spec_from_hf_config(config, name=data.get("name"), source=url)
    if "model_type" in data:
        return spec_from_hf_config(data, source=source)
    return spec_from_dict(data, source=source)


def load_model_spec(name_or_path: str | Path | Mapping[str, Any]) -> ModelSpec:
    """Resolve a model: a catalog name, a `config.json`, a directory holding one, or a YAML spec.

    Args:
        name_or_path: a catalog name (case-insensitive, e.g. `llama-3.1-70b`); a path to a
            `config.json`, to a directory containing `config.json`, or to a `.yaml`/`.yml` file
            (an HF config, a catalog entry, or `ModelSpec` fields); or an already-parsed
            config mapping.

    Raises:
        ValueError: an unknown name (valid names listed), a missing file, or a malformed config.
    """
    if isinstance(name_or_path, Mapping):
        return _from_yaml_data(name_or_path, "mapping")
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"{name_or_path}: directory has no config.json")
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return _from_yaml_data(load_yaml_file(path, where=str(path)), str(path))
        text = read_text_file(path, where=str(path))
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to read") from None
        return _from_yaml_data(config, str(path))
    catalog = _catalog_files()
    entry = catalog.get(str(name_or_path).lower())
    if entry is None:
        raise ValueError(
            f"unknown model {str(name_or_path)!r}: not a file, a directory, or a catalog name; "
            f"catalog: {', '.join(list_models())}"
        )
    return _from_yaml_data(_catalog_entry(entry), entry.name)


def list_models() -> list[str]:
    """Names of the catalog's models (as `load_model_spec` accepts them), sorted."""
    return sorted(str(load_yaml_file(p).get("name", key)) for key, p in _catalog_files().items())
