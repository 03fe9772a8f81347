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
- A `Plan` splits each layer group into blocks of equally planned layers (`plan_blocks`); a
  block's ops are the group's ops built with the block's formats (its `Scenario` with the
  layer plan's formats as `<group>.<role>` overrides and its activation and KV formats),
  counted over the block's layers, and followed by the extra GEMMs of its method overheads,
  one per linear layer of the checkpoint (`_linears.py`) on the same rows. Embedding, final
  norm, LM head and pipeline transfers keep the scenario's formats. With pipeline parallelism
  the counts still run over the whole pipeline, so each layer's formats are timed where it is.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import SupportsIndex

from quarch._checks import choice
from quarch.models import ModelSpec
from quarch.perf._attention import attention_ops, attention_static_ops
from quarch.perf._blocks import Block, plan_blocks
from quarch.perf._linears import (
    expert_tp_size,
    moe_routing,
    part_linears,
)
from quarch.perf._ops import CommKind, Op, OpKind
from quarch.perf._plan import Plan, check_plan
from quarch.perf._scenario import Scenario, bits_per_element, check_scenario
from quarch.perf._shapes import FLOPS_NORM, FLOPS_SILU_MUL, Ctx, comm_op, elementwise, matmul


class Phase(StrEnum):
    """Which forward pass: `prefill` (the prompt) or `decode` (one generated token per step)."""

    PREFILL = "prefill"
    DECODE = "decode"


def build_ops(
    spec: ModelSpec,
    scenario: Scenario,
    phase: Phase | str,
    *,
    kv_len: int,
    tokens: int,
    plan: Plan | None = None,
) -> tuple[Op, ...]:
    """The ops of one forward pass, per device, for `scenario.batch / dp` sequences.

    Args:
        spec: the model.
        scenario: batch, parallelism and formats.
        phase: `prefill` or `decode` (decides MLA's formulation and the LM head's rows).
        kv_len: tokens already in each sequence's KV cache before this pass.
        tokens: new tokens per sequence in this pass (the prompt length in a full prefill, 1 in
            decode).
        plan: per-layer formats and method overheads (None: the scenario's, in every layer).

    Returns:
        Ops in execution order: embedding, each layer group's ops (counted over its layers),
        pipeline transfers, final norm and LM head. With a plan, a layer group whose layers
        plan differently gets one block of ops per distinct layer plan, counted over its
        layers and named `<group>[<layers>].<op>` (`dense[0-9].attn.qkv_proj`); the op's
        `group` stays the layer group. A method's overhead adds ops named after the checkpoint
        layer (`dense.attn.q_proj.lowrank_a`).

    Raises:
        ValueError: an unknown phase, a negative `kv_len`, `tokens < 1`, a scenario that does
            not fit the model (see `check_scenario`), or a plan of another layer count.
        TypeError: a plan that is not a `Plan`.
    """
    phase = phase if type(phase) is Phase else choice(Phase, phase, "phase")
    kv_len, tokens = _count_arg("kv_len", kv_len, 0), _count_arg("tokens", tokens, 1)
    check_plan(plan, spec.num_layers)
    return _build(spec, scenario, phase, kv_len, tokens, plan)


# The graph caches serve reuse within one prediction (prefill graph for memory and time, shared
# static decode ops) and a few recent scenarios; they are kept small because a search asks new
# scenarios, and large caches of op objects cost more (memory traffic, garbage collection) than
# rebuilding does.
@lru_cache(maxsize=256)
def _build(
    spec: ModelSpec, scenario: Scenario, phase: Phase, kv_len: int, tokens: int, plan: Plan | None
) -> tuple[Op, ...]:
    # the KV-independent ops come from their own cache, so graphs for many KV lengths share them
    static = _static_ops(spec, scenario, phase, tokens, plan)
    prefill = phase is Phase.PREFILL
    ops: list[Op] = []
    for item in static:
        if isinstance(item, _Slot):  # a block whose KV-length-dependent ops go here
            ops.extend(_slot_ops(spec, item, prefill, kv_len))
        else:
            ops.append(item)
    return tuple(ops)


# cached: a search's plans share blocks, and predictions build their decode graphs at the same
# KV lengths, so a block's attention ops recur (and so do their priced rows, see `op_row`)
@lru_cache(maxsize=4096)
def _slot_ops(spec: ModelSpec, slot: _Slot, prefill: bool, kv_len: int) -> tuple[Op, ...]:
    return tuple(
        attention_ops(spec, slot.scenario, slot.ctx, prefill, slot.group, slot.count, kv_len)
    )


def prefill_ops(spec: ModelSpec, scenario: Scenario, plan: Plan | None = None) -> tuple[Op, ...]:
    """The prefill of the whole prompt: `tokens = prompt_len`, empty cache."""
    return build_ops(spec, scenario, Phase.PREFILL, kv_len=0, tokens=scenario.prompt_len, plan=plan)


def decode_ops(
    spec: ModelSpec, scenario: Scenario, kv_len: int, plan: Plan | None = None
) -> tuple[Op, ...]:
    """One decode step: one new token per sequence over `kv_len` cached tokens."""
    return build_ops(spec, scenario, Phase.DECODE, kv_len=kv_len, tokens=1, plan=plan)


def _count_arg(name: str, value: SupportsIndex, minimum: int) -> int:
    try:
        count = operator.index(value)  # ints and numpy integers; floats raise TypeError
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return count


def _context(spec: ModelSpec, scenario: Scenario, tokens: int) -> Ctx:
    check_scenario(spec, scenario)
    return _ctx_of(scenario, tokens)


def _ctx_of(scenario: Scenario, tokens: int, prefix: str = "") -> Ctx:
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
        prefix=prefix,
    )


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a block's KV-length-dependent (attention) ops go, and what builds them."""

    group: str
    count: int
    scenario: Scenario
    ctx: Ctx
    prefix: str


@lru_cache(maxsize=64)
def _static_ops(
    spec: ModelSpec, scenario: Scenario, phase: Phase, tokens: int, plan: Plan | None
) -> tuple[Op | _Slot, ...]:
    """Every op that does not depend on the KV length, with slots for the attention ops."""
    ctx = _context(spec, scenario, tokens)
    prefill = phase is Phase.PREFILL
    items: list[Op | _Slot] = list(_embedding_ops(spec, scenario, ctx))
    for block in plan_blocks(spec, scenario, plan):
        items.extend(_block_items(spec, block, tokens, prefill))
    if scenario.pp > 1:
        payload = ctx.rows * spec.hidden_size * ctx.act_bytes
        items.append(
            comm_op(
                ctx, "pp.send", "pp", scenario.pp - 1, spec.hidden_size, payload, CommKind.P2P, 2
            )
        )
    items.extend(_head_ops(spec, scenario, ctx, phase))
    return tuple(items)


# cached: blocks recur across the plans of a search (a layer group's layers planned alike)
@lru_cache(maxsize=1024)
def _block_items(
    spec: ModelSpec, block: Block, tokens: int, prefill: bool
) -> tuple[Op | _Slot, ...]:
    """One block's static ops and its attention slot, named after the block."""
    scenario, name, count = block.scenario, block.group.name, block.count
    ctx = _ctx_of(scenario, tokens, "" if block.prefix == name else block.prefix)
    items: list[Op | _Slot] = [_norm(ctx, spec, f"{name}.attn_norm", name, count)]
    items.extend(
        attention_static_ops(spec, scenario, ctx, name, count, before=True, prefill=prefill)
    )
    items.append(_Slot(name, count, scenario, ctx, block.prefix))
    items.extend(
        attention_static_ops(spec, scenario, ctx, name, count, before=False, prefill=prefill)
    )
    items.append(_norm(ctx, spec, f"{name}.mlp_norm", name, count))
    if block.group.moe:
        items.extend(_moe_ops(spec, scenario, ctx, name, count))
    else:
        items.extend(_mlp_ops(spec, scenario, ctx, name, count))
    if block.layer is not None:
        items.extend(_overhead_ops(spec, block, ctx))
    return tuple(items)


def _overhead_ops(spec: ModelSpec, block: Block, ctx: Ctx) -> list[Op]:
    """The extra GEMMs a method's `Overhead` adds to every linear layer of a part."""
    layer = block.layer
    assert layer is not None
    ops: list[Op] = []
    for part in ("attn", "mlp"):
        overhead = layer.overhead(part)
        if overhead is None:
            continue
        for lin in part_linears(spec, block.scenario, block.group.moe, part, ctx.rows):
            if lin.batch <= 0:
                continue  # no expert touched
            for gemm in overhead.gemms:
                k, n = gemm.shape(lin.in_features, lin.out_features)
                ops.append(
                    matmul(
                        ctx,
                        f"{block.group.name}.{lin.name}.{gemm.name}",
                        block.group.name,
                        block.count,
                        lin.rows,
                        n,
                        k,
                        gemm.weight_format,
                        batch=lin.batch,
                    )
                )
    return ops


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


def _expert_alltoall(
    spec: ModelSpec, scenario: Scenario, ctx: Ctx, name: str, group: str, count: int
) -> Op:
    """The all-to-all that sends each token's hidden state to its k experts (dispatch), or
    brings the k expert outputs back (combine), over the `ep` devices."""
    moe = spec.moe
    assert moe is not None
    h = spec.hidden_size
    payload = ctx.rows * moe.experts_per_token * h * ctx.act_bytes
    return comm_op(ctx, name, group, count, h, payload, CommKind.ALLTOALL, scenario.ep)


def _moe_ops(spec: ModelSpec, scenario: Scenario, ctx: Ctx, group: str, count: int) -> list[Op]:
    moe = spec.moe
    assert moe is not None
    h, rows = spec.hidden_size, ctx.rows
    dispatch = scenario.dp > 1 and scenario.ep > 1  # DP attention: tokens travel to experts
    expert_tp = expert_tp_size(scenario)
    touched, pairs = moe_routing(spec, scenario, rows)  # experts, (token, expert) pairs here
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
        ops.append(_expert_alltoall(spec, scenario, ctx, f"{group}.dispatch", group, count))
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
        ops.append(_expert_alltoall(spec, scenario, ctx, f"{group}.combine", group, count))
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
