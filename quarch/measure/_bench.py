"""Microbenchmarks: real torch work of known shape, each paired with the `Op` the perf model prices.

Every timed piece of work becomes a `Measurement`: its name, its op class (the row groups of
calibration and validation), the `quarch.perf.Op` describing the same work in the perf model's
terms (FLOPs, bytes, shape, formats), and its `Timing`. Ops are built with the same conventions
as the op graph (`quarch.perf`): a weight GEMM `[m, k] @ [k, n]` reads its `k·n` weights and `m·k`
activations and writes `m·n`; FLOPs count a multiply-add as 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch

from quarch.measure._timing import Timing, time_callable
from quarch.perf import Op, OpKind

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Format strings (`quarch.formats`) of the dtypes torch computes in, with their torch dtype."""


class OpClass(StrEnum):
    """The groups rows are summarised by: one per op kind timed alone, then composites."""

    MATMUL = "matmul"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    EMBEDDING = "embedding"
    COPY = "copy"
    READ = "read"
    LAUNCH = "launch"
    LAYER = "layer"
    MODEL = "model"


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One timed piece of work and what the perf model calls it.

    Fields:
        name: what was timed (`matmul fp32 128x960x576`, `smollm2 decode kv=512`).
        op_class: the summary group.
        ops: the perf model's ops for the same work, one instance each unless `Op.count` says
            otherwise (a whole layer or model is many ops); empty for copies, whose bytes are
            in `bytes_moved`.
        timing: the measured seconds per call.
        bytes_moved: bytes read plus written (copies; 0 otherwise).
        resident_bytes: bytes that stay resident between calls (weights, KV, activations): what
            decides the memory level the work is served from.
    """

    name: str
    op_class: OpClass
    ops: tuple[Op, ...]
    timing: Timing
    bytes_moved: float = 0.0
    resident_bytes: float = 0.0


def torch_dtype(fmt: str) -> torch.dtype:
    """The torch dtype of format `fmt`.

    Raises:
        ValueError: `fmt` is not one of `DTYPES`.
    """
    try:
        return DTYPES[fmt]
    except KeyError:
        raise ValueError(f"unknown compute dtype {fmt!r}; valid: {', '.join(DTYPES)}") from None


def matmul_op(m: int, n: int, k: int, fmt: str, *, name: str = "matmul") -> Op:
    """The op of `[m, k] @ [k, n]` with weights and activations in `fmt` (op-graph conventions)."""
    size = torch_dtype(fmt).itemsize
    return _measured_op(
        name,
        OpKind.MATMUL,
        (m, n, k),
        flops=2.0 * m * n * k,
        act_bytes=float(m * (k + n) * size),
        fmt=fmt,
        weight_bytes=float(k * n * size),
    )


def _measured_op(
    name: str,
    kind: OpKind,
    shape: tuple[int, int, int],
    *,
    flops: float,
    act_bytes: float,
    fmt: str,
    weight_bytes: float = 0.0,
) -> Op:
    """One instance of timed work (group `measure`), shape `(m, n, k)`, every operand in `fmt`."""
    m, n, k = shape
    return Op(
        name=name,
        kind=kind,
        group="measure",
        count=1,
        m=m,
        n=n,
        k=k,
        flops=flops,
        weight_bytes=weight_bytes,
        act_bytes=act_bytes,
        weight_format=fmt,
        act_format=fmt,
        kv_format=fmt,
    )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    # generated on the CPU from an explicit generator (reproducible, no global RNG), then moved
    return torch.randn(shape, generator=_gen(seed), dtype=torch.float32).to(device, dtype)


def time_matmul(
    m: int, n: int, k: int, fmt: str, *, device: str = "cpu", budget_s: float = 1.0, seed: int = 0
) -> Measurement:
    """Time `F.linear(x[m, k], w[n, k])` (what `nn.Linear` runs) in dtype `fmt`."""
    dtype = torch_dtype(fmt)
    x = _randn((m, k), dtype, device, seed)
    w = _randn((n, k), dtype, device, seed + 1) / k**0.5
    op = matmul_op(m, n, k, fmt, name=f"matmul {fmt} {m}x{n}x{k}")
    return _time_op(op, OpClass.MATMUL, lambda: torch.nn.functional.linear(x, w), device, budget_s)


def _time_op(
    op: Op, op_class: OpClass, fn: Callable[[], object], device: str, budget_s: float
) -> Measurement:
    """Time `fn`, the work of one instance of `op`, whose bytes all stay resident."""
    timing = time_callable(fn, device=device, budget_s=budget_s)
    return Measurement(
        name=op.name, op_class=op_class, ops=(op,), timing=timing, resident_bytes=op.memory_bytes
    )


def time_copy(
    elements: int, *, device: str = "cpu", budget_s: float = 1.0, fmt: str = "fp32"
) -> Measurement:
    """Time `dst.copy_(src)` of `elements` elements: read + write bytes are both counted."""
    dtype = torch_dtype(fmt)
    src = torch.ones(elements, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    moved = 2.0 * elements * dtype.itemsize
    return _time_stream(OpClass.COPY, moved, lambda: dst.copy_(src), device, budget_s)


def time_read(
    elements: int, *, device: str = "cpu", budget_s: float = 1.0, fmt: str = "fp32"
) -> Measurement:
    """Time `src.sum()` over `elements` elements: a read stream (the read bytes are counted).

    Weights and KV caches are read, not copied, so read bandwidth is what most memory-bound ops
    see; a copy also writes, and on CPUs each written line is first read for ownership.
    """
    dtype = torch_dtype(fmt)
    src = torch.ones(elements, dtype=dtype, device=device)
    moved = float(elements * dtype.itemsize)
    return _time_stream(OpClass.READ, moved, lambda: src.sum(), device, budget_s)


def _time_stream(
    op_class: OpClass, moved: float, fn: Callable[[], object], device: str, budget_s: float
) -> Measurement:
    """Time `fn`, a pure memory stream of `moved` bytes that all stay resident (no ops)."""
    timing = time_callable(fn, device=device, budget_s=budget_s)
    return Measurement(
        name=f"{op_class.value} {moved / 2**20:.3g} MiB",
        op_class=op_class,
        ops=(),
        timing=timing,
        bytes_moved=moved,
        resident_bytes=moved,
    )


def launch_op(name: str) -> Op:
    """The op of a one-element elementwise kernel: nothing but its fixed cost."""
    # two fp32 inputs read, one written
    return _measured_op(name, OpKind.ELEMENTWISE, (1, 1, 0), flops=1.0, act_bytes=12.0, fmt="fp32")


def time_launch(*, device: str = "cpu", budget_s: float = 0.5) -> list[Measurement]:
    """Time tiny kernels (one element) whose time is all fixed per-kernel cost."""
    a = torch.ones(1, device=device)
    b = torch.ones(1, device=device)
    out = torch.empty(1, device=device)
    kernels: dict[str, Callable[[], object]] = {
        "add": lambda: torch.add(a, b, out=out),
        "mul": lambda: torch.mul(a, b, out=out),
        "silu": lambda: torch.nn.functional.silu(a),
    }
    return [
        Measurement(
            name=f"launch {name}",
            op_class=OpClass.LAUNCH,
            ops=(launch_op(f"launch {name}"),),
            timing=time_callable(fn, device=device, budget_s=budget_s, min_sample_s=1e-3),
            resident_bytes=12.0,
        )
        for name, fn in kernels.items()
    ]


def silu_mul_op(rows: int, width: int, fmt: str, *, name: str = "silu_mul") -> Op:
    """`silu(gate) * up` over `rows × width`, as the op graph counts it (5 FLOPs per element:
    `quarch.perf` FLOPS_SILU_MUL; reads gate and up, writes the product)."""
    size = torch_dtype(fmt).itemsize
    return _measured_op(
        name,
        OpKind.ELEMENTWISE,
        (rows, width, 0),
        flops=5.0 * rows * width,
        act_bytes=3.0 * rows * width * size,
        fmt=fmt,
    )


def time_silu_mul(
    rows: int, width: int, fmt: str, *, device: str = "cpu", budget_s: float = 0.5, seed: int = 0
) -> Measurement:
    """Time `F.silu(gate) * up` (the gated MLP's activation, as HF LLaMA computes it)."""
    dtype = torch_dtype(fmt)
    gate = _randn((rows, width), dtype, device, seed)
    up = _randn((rows, width), dtype, device, seed + 1)
    op = silu_mul_op(rows, width, fmt, name=f"silu_mul {fmt} {rows}x{width}")
    fn = torch.nn.functional.silu
    return _time_op(op, OpClass.ELEMENTWISE, lambda: fn(gate) * up, device, budget_s)
