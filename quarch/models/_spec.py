"""A model's architecture as plain numbers: what it computes, with no weights and no hardware.

`ModelSpec` describes decoder-only transformers of the LLaMA lineage: pre-norm RMSNorm blocks,
rotary attention with grouped-query heads (or DeepSeek's multi-head latent attention), a gated
(SwiGLU) or plain MLP, optionally replaced by a mixture of experts in some layers. Parameter
counts are exact for the checkpoints the HF `transformers` implementations of these families
build (every weight, bias and norm vector), so they can be checked against published totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from quarch._yaml import show

# Upper bounds on every integer field, so a typo cannot make a spec that takes hours to build
# or analyse: per-layer work loops over the layers (the deepest published models have ~130;
# Llama-3.1-405B: 126), and every width fits a tensor dimension (int32).
MAX_LAYERS = 10_000
MAX_DIM = 2**31 - 1
_MAX_BY_FIELD = {"num_layers": MAX_LAYERS}


def _bounded_int(owner: str, name: str, value: object, lo: int, kind: str) -> None:
    hi = _MAX_BY_FIELD.get(name, MAX_DIM)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{owner}.{name} must be a {kind} integer ≤ {hi}, got {show(value)}")


def _positive(owner: str, name: str, value: object) -> None:
    _bounded_int(owner, name, value, 1, "positive")


def _non_negative(owner: str, name: str, value: object) -> None:
    _bounded_int(owner, name, value, 0, "non-negative")


@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """The mixture-of-experts part of a model (routed experts, shared experts, which layers).

    Fields:
        num_experts: routed experts per MoE layer.
        experts_per_token: routed experts each token is sent to (top-k).
        expert_intermediate_size: intermediate width of one routed expert's MLP.
        num_shared_experts: experts every token goes through (DeepSeek, Qwen-MoE); 0 if none.
        shared_intermediate_size: intermediate width of one shared expert.
        first_dense_layers: the first layers keep a dense MLP (DeepSeek `first_k_dense_replace`).
        layer_period, layer_offset: among the others, layer `i` (0-based) is MoE when
            `(i + layer_offset) % layer_period == 0` (DeepSeek `moe_layer_freq`: offset 0;
            Qwen-MoE `decoder_sparse_step`: offset 1).
        dense_layers: further layers forced dense (Qwen-MoE `mlp_only_layers`).
        shared_expert_gate: a sigmoid gate `Linear(hidden, 1)` scales the shared expert (Qwen-MoE).
        router_bias: the router has a per-expert bias (DeepSeek-V3's `e_score_correction_bias`).
    """

    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    num_shared_experts: int = 0
    shared_intermediate_size: int = 0
    first_dense_layers: int = 0
    layer_period: int = 1
    layer_offset: int = 0
    dense_layers: tuple[int, ...] = ()
    shared_expert_gate: bool = False
    router_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("num_experts", "experts_per_token", "expert_intermediate_size"):
            _positive("MoESpec", name, getattr(self, name))
        for name in ("num_shared_experts", "shared_intermediate_size", "first_dense_layers"):
            _non_negative("MoESpec", name, getattr(self, name))
        _positive("MoESpec", "layer_period", self.layer_period)
        _non_negative("MoESpec", "layer_offset", self.layer_offset)
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"MoESpec.experts_per_token={self.experts_per_token} exceeds "
                f"num_experts={self.num_experts}"
            )
        if self.num_shared_experts and not self.shared_intermediate_size:
            raise ValueError("MoESpec.shared_intermediate_size must be set with shared experts")
        object.__setattr__(self, "dense_layers", tuple(sorted(set(self.dense_layers))))

    def is_moe_layer(self, index: int) -> bool:
        """Whether decoder layer `index` (0-based) has experts rather than a dense MLP."""
        return (
            index >= self.first_dense_layers
            and (index + self.layer_offset) % self.layer_period == 0
            and index not in self.dense_layers
        )


@dataclass(frozen=True, kw_only=True)
class MLASpec:
    """DeepSeek's multi-head latent attention (DeepSeek-V2, https://arxiv.org/abs/2405.04434 §2.1).

    Keys and values are rebuilt per head from a shared latent of `kv_lora_rank` elements; a
    separate `qk_rope_head_dim`-wide rotary key is shared by all heads. The KV cache holds only
    the latent and the rotary key: `kv_lora_rank + qk_rope_head_dim` elements per token per layer.

    Fields:
        q_lora_rank: rank of the query down-projection; None for a plain query projection
            (DeepSeek-V2-Lite).
        kv_lora_rank: width of the compressed KV latent.
        qk_nope_head_dim: per-head query/key width without rotary embedding.
        qk_rope_head_dim: per-head query width (and shared key width) with rotary embedding.
        v_head_dim: per-head value width.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        if self.q_lora_rank is not None:
            _positive("MLASpec", "q_lora_rank", self.q_lora_rank)
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            _positive("MLASpec", name, getattr(self, name))

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: `qk_nope_head_dim + qk_rope_head_dim`."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Elements cached per token per layer: `kv_lora_rank + qk_rope_head_dim`."""
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class LayerGroup:
    """Identical decoder layers, described once: `name` (`dense` or `moe`), `count`, `moe`."""

    name: str
    count: int
    moe: bool


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A decoder-only transformer's architecture.

    Fields:
        name: display name (`Llama-3.1-8B`).
        family: HF `model_type` (`llama`, `qwen2`, `deepseek_v3`, …) or a free label.
        vocab_size, hidden_size, num_layers: embedding rows, model width, decoder layers.
        num_heads, num_kv_heads, head_dim: query heads, key/value heads (GQA), per-head width
            (for MLA: `qk_nope_head_dim + qk_rope_head_dim`, and `num_kv_heads == num_heads`).
        intermediate_size: width of the dense MLP (layers without experts).
        gated_mlp: SwiGLU-style MLP with gate, up and down projections (else up and down only).
        qkv_bias: the query, key and value projections have biases (Qwen2).
        qk_norm: per-head RMSNorm on queries and keys (Qwen3).
        tied_embeddings: the LM head reuses the embedding matrix.
        max_position_embeddings: longest context the config declares.
        sliding_window: each query attends to at most this many most recent positions
            (Mistral-7B-v0.1's 4096), and the KV cache keeps no more; None for full attention.
        moe: the mixture-of-experts part, or None for a dense model.
        mla: multi-head latent attention, or None for standard (GQA) attention.
        source: where the numbers come from (a config.json URL or file path).
    """

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_mlp: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False
    tied_embeddings: bool = False
    max_position_embeddings: int
    sliding_window: int | None = None
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    source: str = ""
    _hash: int = field(init=False, repr=False, compare=False)
    _layer_groups: tuple[LayerGroup, ...] = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        # computed once: specs key the op-graph caches, which are hit thousands of times a second
        return self._hash

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "max_position_embeddings",
        ):
            _positive("ModelSpec", name, getattr(self, name))
        if self.sliding_window is not None:
            _positive("ModelSpec", "sliding_window", self.sliding_window)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelSpec.num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}"
            )
        if self.mla is not None and self.head_dim != self.mla.qk_head_dim:
            raise ValueError(
                f"ModelSpec.head_dim={self.head_dim} must equal MLA qk_nope_head_dim + "
                f"qk_rope_head_dim = {self.mla.qk_head_dim}"
            )
        values = tuple(getattr(self, f.name) for f in fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash(values))
        # computed once: the op graph and memory model ask for it on every prediction
        object.__setattr__(self, "_layer_groups", self._group_layers())

    # --- shapes ---------------------------------------------------------------------------

    @property
    def v_head_dim(self) -> int:
        """Per-head value width (MLA's `v_head_dim`, else `head_dim`)."""
        return self.mla.v_head_dim if self.mla is not None else self.head_dim

    @property
    def kv_elements_per_token(self) -> int:
        """KV-cache elements one token stores in one layer, all heads together.

        GQA: keys and values of every KV head, `2 × num_kv_heads × head_dim`. MLA: the latent and
        the shared rotary key, `kv_lora_rank + qk_rope_head_dim` (DeepSeek-V2 §2.1.2).
        """
        if self.mla is not None:
            return self.mla.kv_cache_dim
        return 2 * self.num_kv_heads * self.head_dim

    def layer_groups(self) -> tuple[LayerGroup, ...]:
        """The decoder layers grouped by kind: `dense` then `moe`, empty groups left out."""
        return self._layer_groups

    def _group_layers(self) -> tuple[LayerGroup, ...]:
        if self.moe is None:
            return (LayerGroup("dense", self.num_layers, False),)
        moe = sum(1 for i in range(self.num_layers) if self.moe.is_moe_layer(i))
        groups = (LayerGroup("dense", self.num_layers - moe, False), LayerGroup("moe", moe, True))
        return tuple(g for g in groups if g.count)

    # --- parameter counts -----------------------------------------------------------------

    @property
    def attention_params(self) -> int:
        """Parameters of one layer's attention block (projections, biases, MLA/QK norms)."""
        h, heads = self.hidden_size, self.num_heads
        mla = self.mla
        if mla is not None:
            if mla.q_lora_rank is None:
                q = h * heads * mla.qk_head_dim
            else:  # q_a_proj, q_a_layernorm, q_b_proj
                q = (
                    h * mla.q_lora_rank
                    + mla.q_lora_rank
                    + mla.q_lora_rank * heads * mla.qk_head_dim
                )
            # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
            kv = h * mla.kv_cache_dim + mla.kv_lora_rank
            kv += mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
            return q + kv + heads * mla.v_head_dim * h
        q_out = heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        params = h * (q_out + 2 * kv_out) + q_out * h
        if self.qkv_bias:
            params += q_out + 2 * kv_out
        if self.qk_norm:
            params += 2 * self.head_dim
        return params

    def mlp_params(self, intermediate_size: int) -> int:
        """Parameters of one MLP of the given intermediate width (no biases)."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * intermediate_size

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert (0 for a dense model)."""
        return self.mlp_params(self.moe.expert_intermediate_size) if self.moe else 0

    def ffn_params(self, moe_layer: bool) -> int:
        """Parameters of one layer's feed-forward block: dense MLP, or router + experts."""
        moe = self.moe
        if not moe_layer or moe is None:
            return self.mlp_params(self.intermediate_size)
        h = self.hidden_size
        params = moe.num_experts * h + (moe.num_experts if moe.router_bias else 0)
        params += moe.num_experts * self.expert_params
        params += moe.num_shared_experts * self.mlp_params(moe.shared_intermediate_size)
        if moe.shared_expert_gate:
            params += h
        return params

    def layer_params(self, moe_layer: bool) -> int:
        """Parameters of one decoder layer: attention, feed-forward and its two RMSNorms."""
        return self.attention_params + self.ffn_params(moe_layer) + 2 * self.hidden_size

    @property
    def embedding_params(self) -> int:
        """Parameters of the input embedding table."""
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Parameters of the LM head that are not shared with the embedding (0 when tied)."""
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        """Every parameter of the checkpoint's main model: embeddings, layers, final norm, head.

        Extra modules a checkpoint may carry for training or speculation (DeepSeek-V3's
        multi-token-prediction layer) are not part of the spec and not counted.
        """
        layers = sum(g.count * self.layer_params(g.moe) for g in self.layer_groups())
        return self.embedding_params + layers + self.hidden_size + self.lm_head_params

    @property
    def active_params_per_token(self) -> int:
        """Parameters one token uses: all but the routed experts it is not sent to.

        Counts the embedding table and the LM head in full, as Mistral's 12.9B for Mixtral does;
        DeepSeek's published 37B (36.6B) for V3 leaves the input embedding out.
        """
        moe = self.moe
        if moe is None:
            return self.num_params
        moe_layers = sum(g.count for g in self.layer_groups() if g.moe)
        unused = moe_layers * (moe.num_experts - moe.experts_per_token) * self.expert_params
        return self.num_params - unused
