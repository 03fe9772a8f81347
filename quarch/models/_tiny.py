"""Small random models for fast tests and examples: a LLaMA, a mixture-of-experts, an MLA model.

Each is built by transformers from a config in this file (no download), with random weights
from a seed and the byte-level tokenizer of `byte_tokenizer`:

- `tiny-llama`: a 2-layer LLaMA (hidden 64, 4 query heads sharing 2 KV heads of width 16,
  SwiGLU MLP of width 128).
- `tiny-moe`: a 2-layer Mixtral (4 routed experts of width 64, top-2; GQA with 4 query and 2 KV
  heads of width 16; hidden 64).
- `tiny-mla`: a 2-layer DeepSeek-V2 (multi-head latent attention: 4 heads, KV latent of rank 32,
  no query compression, 16 + 8 query/key widths, value width 16); layer 0 has a dense SwiGLU MLP
  of width 128, layer 1 4 routed experts of width 32 (top-2) and one shared expert.

transformers ≥ 5 keeps the routed experts of an MoE block as two 3-D parameters
(`gate_up_proj [E, 2I, h]`, `down_proj [E, h, I]`), which quarch's linear-layer quantization does
not see. `tiny-moe` replaces them with `LinearExperts`, the same function with one `nn.Linear`
triple per expert (`mlp.experts.<e>.{gate,up,down}_proj`), so every expert matrix is quantized
and counted like any other linear layer.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

TINY_MODELS = ("tiny-llama", "tiny-moe", "tiny-mla")
"""Names `tiny_model` builds."""


class _Expert(nn.Module):
    def __init__(self, hidden: int, width: int, gate_up: torch.Tensor, down: torch.Tensor) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, width, bias=False)
        self.up_proj = nn.Linear(hidden, width, bias=False)
        self.down_proj = nn.Linear(width, hidden, bias=False)
        with torch.no_grad():
            self.gate_proj.weight.copy_(gate_up[:width])  # [I, h]
            self.up_proj.weight.copy_(gate_up[width:])
            self.down_proj.weight.copy_(down)  # [h, I]


class LinearExperts(nn.Module):
    """An HF fused experts module as one `nn.Linear` triple per expert (children `0..E-1`).

    `forward(hidden [T, h], top_k_index [T, k], top_k_weights [T, k])` computes what the fused
    module does: each token's output is the weighted sum over its k experts of
    `down(act(gate(x)) * up(x))`. Not an `nn.ModuleList`, so decoder-block finders that look for
    the longest list of blocks do not take the experts for blocks.
    """

    def __init__(self, fused: nn.Module) -> None:
        super().__init__()
        params: Any = fused
        gate_up, down = params.gate_up_proj.detach(), params.down_proj.detach()
        self.num_experts, hidden = int(gate_up.shape[0]), int(gate_up.shape[2])
        width = int(down.shape[2])
        if gate_up.shape[1] != 2 * width or down.shape[1] != hidden:
            raise ValueError(
                f"fused experts of shapes {tuple(gate_up.shape)}, {tuple(down.shape)}: expected "
                "gate_up_proj [E, 2I, h] and down_proj [E, h, I]"
            )
        self.act_fn = params.act_fn
        for e in range(self.num_experts):
            self.add_module(str(e), _Expert(hidden, width, gate_up[e], down[e]))

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)  # [T, h]
        for e in range(self.num_experts):
            token, slot = torch.where(top_k_index == e)
            if token.numel() == 0:
                continue
            expert: Any = getattr(self, str(e))
            x = hidden_states[token]
            y = expert.down_proj(self.act_fn(expert.gate_proj(x)) * expert.up_proj(x))
            y = y * top_k_weights[token, slot, None]
            out.index_add_(0, token, y.to(out.dtype))
        return out


def unfuse_experts(model: nn.Module) -> int:
    """Replace every fused experts module (3-D `gate_up_proj` and `down_proj`) of `model` by a
    `LinearExperts`; returns how many were replaced."""
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "gate_up_proj", None), nn.Parameter) and m.gate_up_proj.dim() == 3
    ]
    for name, m in found:
        parent, _, child = name.rpartition(".")
        model.get_submodule(parent).add_module(child, LinearExperts(m))
    return len(found)


def _config(name: str, vocab: int, bos: int, eos: int) -> Any:
    from transformers import DeepseekV2Config, LlamaConfig, MixtralConfig

    common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 4096,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "tie_word_embeddings": False,
    }
    if name == "tiny-llama":
        return LlamaConfig(**common, intermediate_size=128, num_key_value_heads=2)
    if name == "tiny-moe":
        return MixtralConfig(
            **common,
            intermediate_size=64,
            num_key_value_heads=2,
            head_dim=16,
            num_local_experts=4,
            num_experts_per_tok=2,
        )
    if name == "tiny-mla":
        return DeepseekV2Config(
            **common,
            intermediate_size=128,
            num_key_value_heads=4,
            q_lora_rank=None,
            kv_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            first_k_dense_replace=1,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            n_shared_experts=1,
        )
    raise ValueError(f"unknown tiny model {name!r}; valid: {', '.join(TINY_MODELS)}")


_CLASSES = {
    "tiny-llama": "LlamaForCausalLM",
    "tiny-moe": "MixtralForCausalLM",
    "tiny-mla": "DeepseekV2ForCausalLM",
}


def tiny_llama(seed: int = 0, *, dtype: torch.dtype = torch.float32) -> Any:
    """A small random LLaMA with a byte-level tokenizer, for fast tests (test support).

    2 decoder layers, hidden size 64, 4 query heads sharing 2 KV heads (grouped-query
    attention, head dim 16), SwiGLU MLP of width 128, untied LM head, 258-token byte vocabulary.
    The same seed gives the same weights; the global torch RNG is left as it was.

    Args:
        seed: seed of the weight initialisation.
        dtype: floating dtype of the weights.
    """
    return tiny_model("tiny-llama", seed, dtype=dtype)


def tiny_model(name: str, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> Any:
    """The `LoadedModel` of tiny model `name` (see the module doc), random weights from `seed`.

    The same seed gives the same weights; the global torch RNG is left as it was.

    Raises:
        ValueError: `name` is not one of `TINY_MODELS`.
    """
    from quarch.models._load import (
        LoadedModel,
        ModelKind,
        _check_dtype_device,
        _dtype_name,
        byte_tokenizer,
    )

    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; valid: {', '.join(TINY_MODELS)}")
    _check_dtype_device(dtype, "cpu")
    import transformers

    start = time.perf_counter()
    tokenizer = byte_tokenizer()
    config = _config(name, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = getattr(transformers, _CLASSES[name])(config)
    unfuse_experts(model)
    model.to(dtype)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=f"{name}(seed={seed})",
        kind=ModelKind.RANDOM,
        note=f"random weights (seed {seed}) in {_dtype_name(dtype)}",
        load_s=time.perf_counter() - start,
    )
