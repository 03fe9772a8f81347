"""Fixtures for the loader tests: a tiny random LLaMA, written as an HF directory and as GGUF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from quarch.models import LoadedModel, tiny_llama


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return tiny_llama(seed=0)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel) -> Path:
    """The tiny model saved as an HF directory (config.json, model.safetensors, tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-hf")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def _permute_for_gguf(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for Q/K projections (interleaved rotary halves).

    The inverse of what transformers undoes when it loads a LLaMA GGUF; see `permute` in
    llama.cpp's convert_hf_to_gguf.py (https://github.com/ggml-org/llama.cpp).
    """
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(model: Any, tokenizer: Any, path: Path, *, mlp_q8_0: bool) -> dict[str, Any]:
    """Write a LLaMA model as GGUF, optionally storing the MLP weights as Q8_0.

    Returns the model's state dict as the GGUF file holds it (Q8_0 weights dequantized), so a
    test can compare the loaded model with exactly what was stored.
    """
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta}
    writer.add_rope_freq_base(rope["rope_theta"])
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])  # normal bytes, then 2 control
    writer.add_token_scores([0.0] * len(tokens))  # no merges: each byte stays a token
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    # like the byte tokenizer: no BOS prepended (said explicitly: transformers' default for a
    # GGUF without this key changed between releases, 4.56 prepends one)
    writer.add_add_bos_token(False)

    stored: dict[str, Any] = {}
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}

    def add(hf_name: str, gguf_name: str, heads: int | None = None, q8: bool = False) -> None:
        array = state[hf_name]
        on_disk = _permute_for_gguf(array, heads) if heads else array
        if q8:
            packed = gguf.quants.quantize(on_disk, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(gguf_name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            array = gguf.quants.dequantize(packed, gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name, on_disk)
        stored[hf_name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    add("model.embed_tokens.weight", "token_embd.weight")
    add("model.norm.weight", "output_norm.weight")
    add("lm_head.weight", "output.weight")
    for layer in range(config.num_hidden_layers):
        for hf, short in names.items():
            heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
            add(
                f"model.layers.{layer}.{hf}.weight",
                f"blk.{layer}.{short}.weight",
                heads=heads.get(short),
                q8=mlp_q8_0 and short.startswith("ffn_") and short != "ffn_norm",
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel) -> tuple[Path, dict]:
    """The tiny model as a GGUF file with Q8_0 MLP weights, and the weights the file holds."""
    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny.Q8_0-mlp.gguf"
    stored = write_tiny_gguf(tiny.model, tiny.tokenizer, path, mlp_q8_0=True)
    return path, stored
