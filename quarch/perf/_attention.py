"""Attention ops of one layer: projections, RoPE, attention over the KV cache, output.

Two attention kinds:

- GQA (LLaMA, Qwen, Mixtral): `num_kv_heads` key/value heads shared by groups of query heads.
  Under tensor parallelism each device holds `num_heads / tp` query heads and
  `num_kv_heads / tp` KV heads, or one replicated KV head when `tp > num_kv_heads`.
- MLA (DeepSeek-V2/V3, https://arxiv.org/abs/2405.04434 §2.1): queries through a low-rank
  down/up projection, keys and values rebuilt from a cached latent. The query/KV down
  projections are replicated on every TP device and so is the latent cache (it has no head
  dimension to split); the up projections are split by heads.
"""

from __future__ import annotations

from quarch.models import MLASpec, ModelSpec
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._scenario import Scenario
from quarch.perf._shapes import (
    FLOPS_RMSNORM,
    FLOPS_ROPE,
    Ctx,
    ceil_int,
    comm_op,
    elementwise,
    matmul,
    pass_op,
)


def _local_heads(spec: ModelSpec, tp: int) -> tuple[float, float]:
    """(query heads, KV heads) on one device."""
    kv = spec.num_kv_heads / tp if spec.num_kv_heads >= tp else 1.0
    return spec.num_heads / tp, kv


def attention_static_ops(
    spec: ModelSpec,
    scenario: Scenario,
    ctx: Ctx,
    group: str,
    count: int,
    *,
    before: bool,
    prefill: bool,
) -> list[Op]:
    """The attention ops that do not depend on the KV length: those before the attention
    itself (`before=True`: projections, norms, RoPE) or after it (output projection, reduce)."""
    fmt = scenario.weight_format_for(group, "attn")
    if spec.mla is not None:
        if before:
            return _mla_before(spec, ctx, group, count, fmt, prefill)
        ops = _mla_after(spec, ctx, group, count, fmt, prefill)
    elif before:
        return _gqa_before(spec, ctx, group, count, fmt)
    else:
        ops = []
    heads, _ = _local_heads(spec, ctx.tp)
    h = spec.hidden_size
    ops.append(
        matmul(ctx, f"{group}.attn.o_proj", group, count, ctx.rows, h, heads * spec.v_head_dim, fmt)
    )
    if ctx.tp > 1:
        payload = ctx.rows * h * ctx.act_bytes
        ops.append(
            comm_op(
                ctx, f"{group}.attn.allreduce", group, count, h, payload, CommKind.ALLREDUCE, ctx.tp
            )
        )
    return ops


def attention_ops(
    spec: ModelSpec,
    scenario: Scenario,
    ctx: Ctx,
    prefill: bool,
    group: str,
    count: int,
    kv_len: int,
) -> list[Op]:
    """The ops that depend on the KV length: attention itself (and MLA prefill's KV rebuild)."""
    if spec.mla is None:
        return [_gqa_attention(spec, ctx, group, count, kv_len)]
    if prefill:
        fmt = scenario.weight_format_for(group, "attn")
        return _mla_prefill_attention(spec, ctx, group, count, kv_len, fmt)
    return [_mla_decode_attention(spec, ctx, group, count, kv_len)]


def _pairs_per_sequence(tokens: int, kv_len: int, window: int | None = None) -> float:
    """Attended (query, key) pairs of one head: query `i` of `tokens` sees `kv_len + i + 1` keys,
    at most `window` of them with sliding-window attention."""
    first, last = kv_len + 1, kv_len + tokens  # keys seen by the first and the last new query
    if window is None or last <= window:
        return (first + last) * tokens / 2
    if first > window:
        return float(window * tokens)
    return (first + window) * (window - first + 1) / 2 + window * (last - window)


# --- GQA -----------------------------------------------------------------------------------


def _gqa_before(spec: ModelSpec, ctx: Ctx, group: str, count: int, fmt: str) -> list[Op]:
    heads, kv_heads = _local_heads(spec, ctx.tp)
    d, rows, h = spec.head_dim, ctx.rows, spec.hidden_size
    width = (heads + 2 * kv_heads) * d  # fused Q, K, V column-parallel projection
    bias = width if spec.qkv_bias else 0.0
    ops = [matmul(ctx, f"{group}.attn.qkv_proj", group, count, rows, width, h, fmt, bias=bias)]
    qk = (heads + kv_heads) * d
    if spec.qk_norm:  # Qwen3: RMSNorm over each query and key head (one weight each for Q, K)
        ops.append(_rmsnorm(ctx, f"{group}.attn.qk_norm", group, count, qk, weights=2 * d))
    ops.append(_rope(ctx, group, count, qk))
    return ops


def _gqa_attention(spec: ModelSpec, ctx: Ctx, group: str, count: int, kv_len: int) -> Op:
    heads, kv_heads = _local_heads(spec, ctx.tp)
    d, dv, seqs, tokens = spec.head_dim, spec.v_head_dim, ctx.seqs, ctx.tokens
    window = spec.sliding_window
    pairs = seqs * _pairs_per_sequence(tokens, kv_len, window)
    attended = kv_len + tokens  # keys the last query sees, and keys the pass reads
    read = attended
    if window is not None:  # the first query reaches back window - 1 keys before itself
        attended, read = min(attended, window), min(attended, window - 1 + tokens)
    # read every attended key and value once, write the new tokens' keys and values once
    kv_elements = seqs * kv_heads * (d + dv) * (read + tokens)
    return _attention(
        ctx,
        group,
        count,
        (tokens * heads / kv_heads, attended, d, seqs * kv_heads),
        flops=2.0 * (d + dv) * heads * pairs,
        act_elements=seqs * tokens * heads * (d + dv),  # read Q, write O
        kv_elements=kv_elements,
    )


# --- MLA -----------------------------------------------------------------------------------


def _mla_heads(spec: ModelSpec, ctx: Ctx) -> tuple[MLASpec, float]:
    """The MLA part of an MLA model, and its query heads on one device."""
    assert spec.mla is not None
    return spec.mla, _local_heads(spec, ctx.tp)[0]


def _rmsnorm(
    ctx: Ctx, name: str, group: str, count: int, width: float, *, weights: float | None = None
) -> Op:
    """RMSNorm over `width` features of every row, with `weights` norm weights (default: one per
    feature) read at the activation format."""
    norm_weights = width if weights is None else weights
    return _per_row(ctx, name, group, count, width, FLOPS_RMSNORM, norm_weights * ctx.act_bytes)


def _rope(ctx: Ctx, group: str, count: int, width: float) -> Op:
    """Rotary embedding of `width` features of every row."""
    return _per_row(ctx, f"{group}.attn.rope", group, count, width, FLOPS_ROPE, 0.0)


def _per_row(
    ctx: Ctx,
    name: str,
    group: str,
    count: int,
    width: float,
    flops_per_element: int,
    weight_bytes: float,
) -> Op:
    """An elementwise op reading and writing `width` features of every row once."""
    rows = ctx.rows
    return elementwise(
        ctx,
        name,
        group,
        count,
        rows,
        width,
        flops=flops_per_element * rows * width,
        act_elements=2 * rows * width,
        weight_bytes=weight_bytes,
    )


def _mla_before(
    spec: ModelSpec, ctx: Ctx, group: str, count: int, fmt: str, prefill: bool
) -> list[Op]:
    mla, heads = _mla_heads(spec, ctx)
    h, rows = spec.hidden_size, ctx.rows
    ops: list[Op] = []
    if mla.q_lora_rank is None:
        ops.append(
            matmul(ctx, f"{group}.attn.q_proj", group, count, rows, heads * mla.qk_head_dim, h, fmt)
        )
    else:
        rank = mla.q_lora_rank
        ops.append(matmul(ctx, f"{group}.attn.q_a_proj", group, count, rows, rank, h, fmt))
        ops.append(_rmsnorm(ctx, f"{group}.attn.q_a_norm", group, count, rank))
        ops.append(
            matmul(
                ctx,
                f"{group}.attn.q_b_proj",
                group,
                count,
                rows,
                heads * mla.qk_head_dim,
                rank,
                fmt,
            )
        )
    ops.append(matmul(ctx, f"{group}.attn.kv_a_proj", group, count, rows, mla.kv_cache_dim, h, fmt))
    ops.append(_rmsnorm(ctx, f"{group}.attn.kv_a_norm", group, count, mla.kv_lora_rank))
    rotated = (heads + 1) * mla.qk_rope_head_dim  # every query head's rope part + the shared key
    ops.append(_rope(ctx, group, count, rotated))
    if not prefill:  # absorbed decode: q_nope @ W_UK per head, into the latent space
        ops.append(
            matmul(
                ctx,
                f"{group}.attn.q_absorb",
                group,
                count,
                rows,
                mla.kv_lora_rank,
                mla.qk_nope_head_dim,
                fmt,
                batch=heads,
            )
        )
    return ops


def _mla_after(
    spec: ModelSpec, ctx: Ctx, group: str, count: int, fmt: str, prefill: bool
) -> list[Op]:
    if prefill:
        return []
    mla, heads = _mla_heads(spec, ctx)
    # absorbed decode: the latent attention output @ W_UV per head gives each head's value
    return [
        matmul(
            ctx,
            f"{group}.attn.v_absorb",
            group,
            count,
            ctx.rows,
            mla.v_head_dim,
            mla.kv_lora_rank,
            fmt,
            batch=heads,
        )
    ]


def _mla_prefill_attention(
    spec: ModelSpec, ctx: Ctx, group: str, count: int, kv_len: int, fmt: str
) -> list[Op]:
    mla, heads = _mla_heads(spec, ctx)
    seqs, tokens = ctx.seqs, ctx.tokens
    attended = kv_len + tokens
    kv_rows = seqs * attended
    up_width = heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    # kv_b_proj rebuilds per-head K_nope and V from the latents of every attended token: the new
    # tokens' latents are activations, the cached ones are read from the KV cache
    kv_b = matmul(
        ctx, f"{group}.attn.kv_b_proj", group, count, kv_rows, up_width, mla.kv_lora_rank, fmt
    )
    cached_latent = seqs * kv_len * mla.kv_lora_rank
    new_latent = seqs * tokens * mla.kv_lora_rank
    kv_b = _with_bytes(
        kv_b,
        act_bytes=(new_latent + kv_rows * up_width) * ctx.act_bytes,
        kv_bytes=cached_latent * ctx.kv_bytes,
    )
    qk, dv = mla.qk_head_dim, mla.v_head_dim
    pairs = seqs * _pairs_per_sequence(tokens, kv_len)
    act = seqs * tokens * heads * (qk + dv) + kv_rows * up_width  # Q, O; rebuilt K_nope and V
    # the shared rotary key is read from the cache; the new latents + rotary keys written
    kv = kv_rows * mla.qk_rope_head_dim + seqs * tokens * mla.kv_cache_dim
    attention = _attention(
        ctx,
        group,
        count,
        (tokens, attended, qk, seqs * heads),
        flops=2.0 * (qk + dv) * heads * pairs,
        act_elements=act,
        kv_elements=kv,
    )
    return [kv_b, attention]


def _mla_decode_attention(spec: ModelSpec, ctx: Ctx, group: str, count: int, kv_len: int) -> Op:
    mla, heads = _mla_heads(spec, ctx)
    seqs, tokens = ctx.seqs, ctx.tokens
    attended = kv_len + tokens
    score_k = mla.kv_cache_dim  # absorbed query · [latent, rotary key]
    value_k = mla.kv_lora_rank  # probabilities · latent
    pairs = seqs * _pairs_per_sequence(tokens, kv_len)
    return _attention(
        ctx,
        group,
        count,
        (tokens * heads, attended, score_k, seqs),  # all local heads share one latent "KV head"
        flops=2.0 * (score_k + value_k) * heads * pairs,
        act_elements=seqs * tokens * heads * (score_k + value_k),
        kv_elements=seqs * mla.kv_cache_dim * (attended + tokens),
    )


def _attention(
    ctx: Ctx,
    group: str,
    count: int,
    shape: tuple[float, int, int, float],
    *,
    flops: float,
    act_elements: float,
    kv_elements: float,
) -> Op:
    """The attention op itself: `shape` is (query rows, keys, score width, batch) of its GEMMs,
    `m` and the batch rounded up; activations and KV elements at the pass's formats."""
    m, n, k, batch = shape
    return pass_op(
        ctx,
        f"{group}.attn.attention",
        group,
        count,
        OpKind.ATTENTION,
        m,
        n,
        k,
        batch=ceil_int(batch),
        flops=flops,
        act_bytes=act_elements * ctx.act_bytes,
        kv_bytes=kv_elements * ctx.kv_bytes,
    )


def _with_bytes(op: Op, *, act_bytes: float, kv_bytes: float) -> Op:
    from dataclasses import replace

    return replace(op, act_bytes=act_bytes, kv_bytes=kv_bytes)
