"""KV-cache quantization through transformers' attention-function registry.

transformers (≥ 4.48) dispatches attention through
`ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`, called with the key and value states
after RoPE and after the cache update, so they hold every cached token
([batch, kv_heads, kv_len, head_dim]). We register one function, `quarch_kv`, that quantizes
them along the head dimension with the formats stored on the attention module
(`module.quarch_kv`) and then calls the model's own implementation (`sdpa` or `eager`), and a
mask function of the same name that builds the mask that implementation expects. Setting the
model's attention implementation to `quarch_kv` turns it on; nothing else global changes.

The cache itself keeps float values and they are re-quantized on every step. With scales local
to one token (no scaling, per-channel = per token and head, or groups along the head dimension)
every token's quantized key depends on that token alone, so this equals storing a quantized
cache. Formats whose scale spans tokens (per-tensor, 2-D blocks, a second per-tensor scale as in
NVFP4) would depend on the sequence length and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quarch.formats import Format, quantize

ATTN_NAME = "quarch_kv"
_BASE_ATTR = "quarch_kv_base_attn"  # on the model config: the implementation we wrap
_SUPPORTED_BASES = ("sdpa", "eager")


@dataclass(frozen=True, kw_only=True)
class KVFormats:
    """Formats of one attention module's keys and values (None = float)."""

    k: Format | None = None
    v: Format | None = None


def check_kv_format(fmt: Format, *, where: str) -> None:
    """Refuse formats whose scales span tokens (see the module docstring)."""
    from quarch.formats import ScalingKind

    sc = fmt.scaling
    if sc.kind in (ScalingKind.TENSOR, ScalingKind.BLOCK2D) or sc.tensor_scale or sc.axis != -1:
        raise ValueError(
            f"{where}: KV-cache format {fmt} has scales that span tokens "
            f"(scaling {sc.kind}, axis {sc.axis}, tensor scale {sc.tensor_scale}); "
            "use no scaling, per-channel (one scale per token and head) or groups along the "
            "head dimension (a=-1)"
        )


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Attention modules that dispatch through transformers' AttentionInterface."""
    return {
        name: m
        for name, m in model.named_modules()
        if type(m).__name__.endswith("Attention") and hasattr(m, "head_dim")
    }


def install_kv_quant(model: nn.Module, formats: Mapping[str, KVFormats]) -> None:
    """Quantize K/V of the named attention modules; switch the model to `quarch_kv` attention."""
    if not formats:
        return
    config: Any = model.config
    current = config._attn_implementation
    base = getattr(config, _BASE_ATTR, None) if current == ATTN_NAME else current
    if base not in _SUPPORTED_BASES:
        raise ValueError(
            f"KV-cache quantization wraps the {_SUPPORTED_BASES} attention implementations; "
            f"this model uses {current!r} (load it with attn_implementation='sdpa')"
        )
    modules = dict(model.named_modules())
    for name, kv in formats.items():
        modules[name].quarch_kv = kv  # type: ignore[assignment]
    _register()
    setattr(config, _BASE_ATTR, base)
    model.set_attn_implementation(ATTN_NAME)  # type: ignore[operator]


def remove_kv_quant(model: nn.Module) -> None:
    """Undo `install_kv_quant`: float K/V and the model's original attention implementation."""
    for m in model.modules():
        if hasattr(m, "quarch_kv"):
            del m.quarch_kv
    config: Any = model.config
    if config._attn_implementation == ATTN_NAME:
        model.set_attn_implementation(getattr(config, _BASE_ATTR))  # type: ignore[operator]
    if hasattr(config, _BASE_ATTR):
        delattr(config, _BASE_ATTR)


def quantize_kv(
    module: nn.Module, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key/value states [batch, kv_heads, kv_len, head_dim] on the module's formats."""
    kv: KVFormats | None = getattr(module, "quarch_kv", None)
    if kv is not None and kv.k is not None:
        key = quantize(kv.k, key)
    if kv is not None and kv.v is not None:
        value = quantize(kv.v, value)
    return key, value


def _attention(
    module: nn.Module,
    query: torch.Tensor,  # [batch, heads, q_len, head_dim]
    key: torch.Tensor,  # [batch, kv_heads, kv_len, head_dim], after RoPE and cache update
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    key, value = quantize_kv(module, key, value)
    base = getattr(module.config, _BASE_ATTR, "sdpa")
    if base == "eager":
        return _eager(module, query, key, value, attention_mask, **kwargs)
    return ALL_ATTENTION_FUNCTIONS[base](module, query, key, value, attention_mask, **kwargs)


def _eager(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's own eager attention (its modeling module's `eager_attention_forward`)."""
    import sys

    modeling = sys.modules[type(module).__module__]
    fn = getattr(modeling, "eager_attention_forward", None)
    if fn is None:
        raise ValueError(f"{type(module).__name__} has no eager_attention_forward; use sdpa")
    return fn(module, query, key, value, attention_mask, **kwargs)


def _mask(*args: Any, config: Any = None, **kwargs: Any) -> Any:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    base = getattr(config, _BASE_ATTR, "sdpa")
    return ALL_MASK_ATTENTION_FUNCTIONS[base](*args, config=config, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, _attention)
    AttentionMaskInterface.register(ATTN_NAME, _mask)
