"""Small builders shared by the op-graph modules: per-pass context and op constructors.

Shapes may be expectations (MoE rows per expert, experts touched); FLOPs and bytes keep the
exact values and the integer shape fields are rounded up, as `Op` documents.
"""

from __future__ import annotations

from dataclasses import dataclass

from quarch.perf._ops import CommKind, Op, OpKind, new_op
from quarch.perf._scenario import bits_per_element

FLOPS_NORM = 5
"""Fused residual add + RMSNorm, per element: add, square, accumulate, scale by rsqrt, by weight."""
FLOPS_RMSNORM = 4
"""RMSNorm alone (no residual), per element."""
FLOPS_SILU_MUL = 5
"""SiLU(gate) × up, per output element: exp, add, divide, multiply by gate, multiply by up."""
FLOPS_ROPE = 3
"""Rotary embedding, per rotated element: `x·cos + rotate(x)·sin`."""


@dataclass(frozen=True, slots=True)
class Ctx:
    """What one forward pass on one device looks like, independent of the model's layers.

    Fields: `seqs` sequences on this attention replica, `tokens` new tokens per sequence, `rows`
    = seqs × tokens, `tp`, the activation and KV formats and their bytes per element, and
    `prefix`: the name of the block of layers being built (`dense[0-3]`), which replaces the
    layer group's name at the head of op names; empty to keep them.
    """

    seqs: int
    tokens: int
    rows: int
    tp: int
    act_format: str
    kv_format: str
    act_bytes: float
    kv_bytes: float
    prefix: str = ""


def op_name(ctx: Ctx, group: str, name: str) -> str:
    """`name` (`<group>.<rest>`) with the block prefix of `ctx` in place of the group."""
    prefix = ctx.prefix
    return name if not prefix or not name.startswith(group) else prefix + name[len(group) :]


def pass_op(
    ctx: Ctx,
    name: str,
    group: str,
    count: int,
    kind: OpKind,
    m: float,
    n: float,
    k: int = 0,
    *,
    batch: int = 1,
    flops: float = 0.0,
    weight_bytes: float = 0.0,
    act_bytes: float = 0.0,
    kv_bytes: float = 0.0,
    weight_format: str = "bf16",
    comm_bytes: float = 0.0,
    comm: CommKind = CommKind.NONE,
    comm_group: int = 1,
) -> Op:
    """An op of this pass: named under the block prefix, `m` and `n` rounded up (`ceil_int`), at
    the pass's activation and KV formats; the keywords are the rest of `Op`'s fields (with
    `Op`'s defaults)."""
    prefix = ctx.prefix
    if prefix and name.startswith(group):
        name = prefix + name[len(group) :]
    return new_op(
        name,
        kind,
        group,
        count,
        ceil_int(m),
        ceil_int(n),
        k,
        batch,
        flops,
        weight_bytes,
        act_bytes,
        kv_bytes,
        weight_format,
        ctx.act_format,
        ctx.kv_format,
        comm_bytes,
        comm,
        comm_group,
    )


def ceil_int(x: float) -> int:
    """A shape rounded up to an integer, at least 1 (a tolerance absorbs float noise)."""
    if type(x) is int:
        return x if x > 0 else 1
    i = int(x)
    if i < x - 1e-9:
        i += 1
    return i if i > 0 else 1


def matmul(
    ctx: Ctx,
    name: str,
    group: str,
    count: int,
    m: float,
    n: float,
    k: float,
    weight_format: str,
    *,
    batch: float = 1.0,
    bias: float = 0.0,
    kind: OpKind = OpKind.MATMUL,
) -> Op:
    """A weight GEMM `[m, k] @ [k, n]`, `batch` of them, each with its own weight.

    Weights `k·n` per GEMM at `weight_format` (scales included), `bias` elements at the
    activation format; activations read `m·k` and write `m·n` per GEMM.
    """
    weight_bytes = batch * k * n * bits_per_element(weight_format) / 8 + bias * ctx.act_bytes
    return pass_op(
        ctx,
        name,
        group,
        count,
        kind,
        m,
        n,
        ceil_int(k),
        batch=ceil_int(batch),
        flops=2.0 * batch * m * n * k,
        weight_bytes=weight_bytes,
        act_bytes=batch * m * (k + n) * ctx.act_bytes,
        weight_format=weight_format,
    )


def elementwise(
    ctx: Ctx,
    name: str,
    group: str,
    count: int,
    m: float,
    n: float,
    *,
    flops: float,
    act_elements: float,
    weight_bytes: float = 0.0,
) -> Op:
    """A vector-unit op over `m` rows of `n` features moving `act_elements` activations."""
    return pass_op(
        ctx,
        name,
        group,
        count,
        OpKind.ELEMENTWISE,
        m,
        n,
        flops=flops,
        weight_bytes=weight_bytes,
        act_bytes=act_elements * ctx.act_bytes,
    )


def comm_op(
    ctx: Ctx,
    name: str,
    group: str,
    count: int,
    n: float,
    payload_bytes: float,
    comm: CommKind,
    comm_group: int,
) -> Op:
    """A communication op alone: `payload_bytes` per device over `comm_group` devices."""
    return pass_op(
        ctx,
        name,
        group,
        count,
        OpKind.COMM,
        ctx.rows,
        n,
        comm_bytes=payload_bytes,
        comm=comm,
        comm_group=comm_group,
    )
