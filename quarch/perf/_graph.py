"""The op graph of one forward pass: what a model computes and moves, per device, per op.

`build_ops(spec, scenario, phase, kv_len=..., tokens=...)` lists the ops of one forward pass
through the whole pipeline for `batch / dp` sequences on one attention replica, each carrying
`tokens` new tokens on top of `kv_len` cached ones. Identical layers appear once with a `count`.

Conventions (each a stated choice, not a hidden constant):

- Attention FLOPs count the attended (query, key) pairs only: a causal query at position `p`
  sees `p + 1` keys, so a prefill of `s` tokens after `c` cached ones has `s·c + s(s+1)/2` pairs
  per head, as causal FlashAttention kernels compute (masked tiles skipped). Each pair costs
  `2·d_qk` (scores) + `2·d_v` (values) FLOPs; softmax exponentials are not counted.
- KV bytes: every attended key/value is read once from memory and the new tokens' keys and
  values are written once (re-reads across query tiles are assumed to hit on-chip memory).
- The LM head computes logits for the last token of each sequence in prefill (what serving
  engines sample from) and for every new token in decode.
- MoE: tokens are routed uniformly at random, so `T` routed tokens touch on average
  `E·(1 − (1 − k/E)^T)` distinct experts, each reading its weights once; FLOPs follow the
  expected `T·k` (token, expert) pairs. Load imbalance across devices is not modelled.
- MLA (DeepSeek-V2 §2.1): prefill decompresses the latent KV with `kv_b_proj` and runs ordinary
  multi-head attention; decode absorbs `W_UK` into the query and `W_UV` into the output and
  attends over the latent directly (all heads sharing it), as vLLM and SGLang do.
- Norm ops are fused residual-add + RMSNorm: read input and residual, write both. Norm weights
  and biases are counted at the activation format (they are not quantized).
- Elementwise FLOPs per element: RMSNorm + residual add 5 (add, square, accumulate, two scales),
  SiLU(gate)·up 5 (exp, add, divide, two multiplies), RoPE 3 (two multiplies, one add).
"""

from __future__ import annotations

import operator
from enum import StrEnum
from functools import lru_cache
from typing import SupportsIndex

from quarch.models import ModelSpec
from quarch.perf._attention import attention_ops, attention_static_ops
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._scenario import Scenario, bits_per_element, check_scenario
from quarch.perf._shapes import FLOPS_NORM, FLOPS_SILU_MUL, Ctx, comm_op, elementwise, matmul


class Phase(StrEnum):
    """Which forward pass: `prefill` (the prompt) or `decode` (one generated token per step)."""

    PREFILL = "prefill"
    DECODE = "decode"


def build_ops(
    spec: ModelSpec, scenario: Scenario, phase: Phase | str, *, kv_len: int, tokens: int
) -> tuple[Op, ...]:
    """The ops of one forward pass, per device, for `scenario.batch / dp` sequences.

    Args:
        spec: the model.
        scenario: batch, parallelism and formats.
        phase: `prefill` or `decode` (decides MLA's formulation and the LM head's rows).
        kv_len: tokens already in each sequence's KV cache before this pass.
        tokens: new tokens per sequence in this pass (the prompt length in a full prefill, 1 in
            decode).

    Returns:
        Ops in execution order: embedding, each layer group's ops (counted over its layers),
        pipeline transfers, final norm and LM head.

    Raises:
        ValueError: an unknown phase, a negative `kv_len`, `tokens < 1`, or a scenario that does
            not fit the model (see `check_scenario`).
    """
    phase = phase if type(phase) is Phase else _phase(phase)
    kv_len, tokens = _count_arg("kv_len", kv_len, 0), _count_arg("tokens", tokens, 1)
    return _build(spec, scenario, phase, kv_len, tokens)


# The graph caches serve reuse within one prediction (prefill graph for memory and time, shared
# static decode ops) and a few recent scenarios; they are kept small because a search asks new
# scenarios, and large caches of op objects cost more (memory traffic, garbage collection) than
# rebuilding does.
@lru_cache(maxsize=256)
def _build(
    spec: ModelSpec, scenario: Scenario, phase: Phase, kv_len: int, tokens: int
) -> tuple[Op, ...]:
    # the KV-independent ops come from their own cache, so graphs for many KV lengths share them
    ctx, static = _static_ops(spec, scenario, phase, tokens)
    prefill = phase is Phase.PREFILL
    ops: list[Op] = []
    for item in static:
        if isinstance(item, tuple):  # a layer group whose KV-length-dependent ops go here
            ops.extend(attention_ops(spec, scenario, ctx, prefill, item[0], item[1], kv_len))
        else:
            ops.append(item)
    return tuple(ops)


def prefill_ops(spec: ModelSpec, scenario: Scenario) -> tuple[Op, ...]:
    """The prefill of the whole prompt: `tokens = prompt_len`, empty cache."""
    return build_ops(spec, scenario, Phase.PREFILL, kv_len=0, tokens=scenario.prompt_len)


def decode_ops(spec: ModelSpec, scenario: Scenario, kv_len: int) -> tuple[Op, ...]:
    """One decode step: one new token per sequence over `kv_len` cached tokens."""
    return build_ops(spec, scenario, Phase.DECODE, kv_len=kv_len, tokens=1)


def _count_arg(name: str, value: SupportsIndex, minimum: int) -> int:
    try:
        count = operator.index(value)  # ints and numpy integers; floats raise TypeError
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return count


def _phase(phase: Phase | str) -> Phase:
    try:
        return Phase(phase)
    except ValueError:
        valid = ", ".join(p.value for p in Phase)
        raise ValueError(f"unknown phase {phase!r}; valid: {valid}") from None


def _context(spec: ModelSpec, scenario: Scenario, tokens: int) -> Ctx:
    check_scenario(spec, scenario)
    seqs = scenario.seqs_per_replica
    return Ctx(
        seqs=seqs,
        tokens=tokens,
        rows=seqs * tokens,
        tp=scenario.tp,
        act_format=scenario.act_format,
        kv_format=scenario.kv_format,
        act_bytes=bits_per_element(scenario.act_format) / 8,
        kv_bytes=bits_per_element(scenario.kv_format) / 8,
    )


_AttnSlot = tuple[str, int]  # (layer group name, layer count): attention ops go here


@lru_cache(maxsize=64)
def _static_ops(
    spec: ModelSpec, scenario: Scenario, phase: Phase, tokens: int
) -> tuple[Ctx, tuple[Op | _AttnSlot, ...]]:
    """Every op that does not depend on the KV length, with slots for the attention ops."""
    ctx = _context(spec, scenario, tokens)
    prefill = phase is Phase.PREFILL
    items: list[Op | _AttnSlot] = list(_embedding_ops(spec, scenario, ctx))
    for group in spec.layer_groups():
        count = group.count
        items.append(_norm(ctx, spec, f"{group.name}.attn_norm", group.name, count))
        items.extend(
            attention_static_ops(
                spec, scenario, ctx, group.name, count, before=True, prefill=prefill
            )
        )
        items.append((group.name, count))
        items.extend(
            attention_static_ops(
                spec, scenario, ctx, group.name, count, before=False, prefill=prefill
            )
        )
        items.append(_norm(ctx, spec, f"{group.name}.mlp_norm", group.name, count))
        if group.moe:
            items.extend(_moe_ops(spec, scenario, ctx, group.name, count))
        else:
            items.extend(_mlp_ops(spec, scenario, ctx, group.name, count))
    if scenario.pp > 1:
        payload = ctx.rows * spec.hidden_size * ctx.act_bytes
        items.append(
            comm_op(
                ctx, "pp.send", "pp", scenario.pp - 1, spec.hidden_size, payload, CommKind.P2P, 2
            )
        )
    items.extend(_head_ops(spec, scenario, ctx, phase))
    return ctx, tuple(items)


def _norm(ctx: Ctx, spec: ModelSpec, name: str, group: str, count: int) -> Op:
    h = spec.hidden_size
    # fused residual add + RMSNorm: read x and residual, write normed and residual
    return elementwise(
        ctx,
        name,
        group,
        count,
        ctx.rows,
        h,
        flops=FLOPS_NORM * ctx.rows * h,
        act_elements=4 * ctx.rows * h,
        weight_bytes=h * ctx.act_bytes,
    )


def _embedding_ops(spec: ModelSpec, scenario: Scenario, ctx: Ctx) -> list[Op]:
    h, rows = spec.hidden_size, ctx.rows
    fmt = scenario.weight_format_for("embed", "embedding")
    # a gather reads one row per token; vocab-parallel over tp, each device holds 1/tp of the
    # table and serves the tokens whose ids fall in its shard (1/tp of them, ids taken uniform)
    touched = min(rows, spec.vocab_size) / ctx.tp
    ops = [
        Op(
            name="embed",
            kind=OpKind.EMBEDDING,
            group="embed",
            count=1,
            m=rows,
            n=h,
            k=0,
            weight_bytes=touched * h * bits_per_element(fmt) / 8,
            act_bytes=rows * h * ctx.act_bytes,
            weight_format=fmt,
            act_format=ctx.act_format,
            kv_format=ctx.kv_format,
        )
    ]
    if ctx.tp > 1:  # vocab-parallel embedding: partial rows summed across the group
        payload = rows * h * ctx.act_bytes
        ops.append(
            comm_op(ctx, "embed.allreduce", "embed", 1, h, payload, CommKind.ALLREDUCE, ctx.tp)
        )
    return ops


def _mlp_block(
    spec: ModelSpec,
    ctx: Ctx,
    prefix: str,
    group: str,
    count: int,
    *,
    rows: float,
    width: float,
    fmt: str,
    batch: float = 1.0,
) -> list[Op]:
    """Gate/up, activation and down GEMMs of `batch` MLPs of intermediate `width` on this device.

    `rows` is the token rows of each MLP (an expectation for experts); `batch` how many MLPs.
    """
    h = spec.hidden_size
    up_width = 2 * width if spec.gated_mlp else width
    total_rows = rows * batch
    ops = [
        matmul(ctx, f"{prefix}.gate_up", group, count, rows, up_width, h, fmt, batch=batch),
        elementwise(
            ctx,
            f"{prefix}.act",
            group,
            count,
            total_rows,
            width,
            flops=FLOPS_SILU_MUL * total_rows * width,
            act_elements=total_rows * (up_width + width),
        ),
        matmul(ctx, f"{prefix}.down", group, count, rows, h, width, fmt, batch=batch),
    ]
    return ops


def _mlp_ops(spec: ModelSpec, scenario: Scenario, ctx: Ctx, group: str, count: int) -> list[Op]:
    fmt = scenario.weight_format_for(group, "mlp")
    width = spec.intermediate_size / ctx.tp  # column-parallel gate/up, row-parallel down
    ops = _mlp_block(spec, ctx, f"{group}.mlp", group, count, rows=ctx.rows, width=width, fmt=fmt)
    if ctx.tp > 1:
        payload = ctx.rows * spec.hidden_size * ctx.act_bytes
        ops.append(
            comm_op(
                ctx,
                f"{group}.mlp.allreduce",
                group,
                count,
                spec.hidden_size,
                payload,
                CommKind.ALLREDUCE,
                ctx.tp,
            )
        )
    return ops


def expert_tp_size(scenario: Scenario) -> int:
    """Ways each routed expert's matrices are split: `tp / ep` with replicated tokens (dp = 1),
    `tp` with replicated experts (ep = 1), 1 with experts spread over DP replicas (ep = dp)."""
    if scenario.ep == 1:
        return scenario.tp
    return scenario.tp // scenario.ep if scenario.dp == 1 else 1


def expected_experts_touched(num_experts: int, experts_per_token: int, tokens: float) -> float:
    """Expected distinct experts `tokens` tokens touch under uniform top-k routing.

    Each expert is missed by one token with probability `1 − k/E`, so by all `T` tokens with
    probability `(1 − k/E)^T`: `E·(1 − (1 − k/E)^T)` experts are touched on average.
    """
    if tokens <= 0:
        return 0.0
    miss = 1.0 - experts_per_token / num_experts
    return num_experts * (1.0 - miss**tokens)


def _moe_ops(spec: ModelSpec, scenario: Scenario, ctx: Ctx, group: str, count: int) -> list[Op]:
    moe = spec.moe
    assert moe is not None
    h, rows = spec.hidden_size, ctx.rows
    dispatch = scenario.dp > 1 and scenario.ep > 1  # DP attention: tokens travel to experts
    # tokens routed in the stage: one replica's rows, or every replica's under all-to-all
    stage_rows = rows * scenario.dp if dispatch else rows
    expert_tp = expert_tp_size(scenario)
    local_experts = moe.num_experts / scenario.ep
    touched = (
        local_experts
        * expected_experts_touched(moe.num_experts, moe.experts_per_token, stage_rows)
        / moe.num_experts
    )
    pairs = stage_rows * moe.experts_per_token / scenario.ep  # (token, expert) pairs here
    router_fmt = scenario.weight_format_for(group, "router")
    router_n = moe.num_experts + (1 if moe.shared_expert_gate else 0)  # + Qwen's shared gate
    ops = [
        matmul(
            ctx,
            f"{group}.router",
            group,
            count,
            rows,
            router_n,
            h,
            router_fmt,
            bias=moe.num_experts if moe.router_bias else 0,  # DeepSeek-V3's correction bias
            kind=OpKind.ROUTER,
        )
    ]
    if dispatch:
        payload = rows * moe.experts_per_token * h * ctx.act_bytes
        ops.append(
            comm_op(
                ctx,
                f"{group}.dispatch",
                group,
                count,
                h,
                payload,
                CommKind.ALLTOALL,
                scenario.ep,
            )
        )
    width = moe.expert_intermediate_size / expert_tp
    if touched > 0:
        ops.extend(
            _mlp_block(
                spec,
                ctx,
                f"{group}.experts",
                group,
                count,
                rows=pairs / touched,
                width=width,
                batch=touched,
                fmt=scenario.weight_format_for(group, "experts"),
            )
        )
    # weighted sum of each token's expert outputs: k multiply-adds per output element
    ops.append(
        elementwise(
            ctx,
            f"{group}.experts.sum",
            group,
            count,
            rows,
            h,
            flops=2 * pairs * h,
            act_elements=pairs * h + rows * h,
        )
    )
    if moe.num_shared_experts:
        # shared experts are split like a dense MLP over the tp group
        shared_width = moe.num_shared_experts * moe.shared_intermediate_size / ctx.tp
        fmt = scenario.weight_format_for(group, "shared_experts")
        ops.extend(
            _mlp_block(
                spec,
                ctx,
                f"{group}.shared",
                group,
                count,
                rows=rows,
                width=shared_width,
                fmt=fmt,
            )
        )
    if dispatch:
        payload = rows * moe.experts_per_token * h * ctx.act_bytes
        ops.append(
            comm_op(
                ctx,
                f"{group}.combine",
                group,
                count,
                h,
                payload,
                CommKind.ALLTOALL,
                scenario.ep,
            )
        )
    elif ctx.tp > 1:
        payload = rows * h * ctx.act_bytes
        ops.append(
            comm_op(ctx, f"{group}.allreduce", group, count, h, payload, CommKind.ALLREDUCE, ctx.tp)
        )
    return ops


def _head_ops(spec: ModelSpec, scenario: Scenario, ctx: Ctx, phase: Phase) -> list[Op]:
    h = spec.hidden_size
    # prefill samples from each sequence's last position only; decode from every new token
    rows = ctx.seqs if phase is Phase.PREFILL else ctx.rows
    fmt = scenario.weight_format_for("head", "lm_head")
    norm = elementwise(
        ctx,
        "head.norm",
        "head",
        1,
        rows,
        h,
        flops=FLOPS_NORM * rows * h,
        act_elements=2 * rows * h,
        weight_bytes=h * ctx.act_bytes,
    )
    # vocab-parallel LM head: each device computes vocab / tp logits
    head = matmul(ctx, "lm_head", "head", 1, rows, spec.vocab_size / ctx.tp, h, fmt)
    return [norm, head]
