"""One operator of a forward pass: what it computes and moves on one device, with no hardware in it.

`Op` is the contract between the workload side (`build_ops`, which knows models and parallelism)
and the machine side (roofline and efficiency, which knows devices). Everything a device needs to
price an op is here: its GEMM shape for efficiency modelling, its FLOPs, its bytes by kind, the
formats those bytes are in, and the communication that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OpKind(StrEnum):
    """What an op does, which decides the unit that runs it and how its shape is read.

    - `matmul`: a weight GEMM `[m, k] @ [k, n]`, `batch` independent ones (MoE experts); the
      LM head is a `matmul` named `lm_head`. Runs on matrix units at the rate of the
      (`weight_format`, `act_format`) pair.
    - `attention`: fused scores, softmax and values over the KV cache (FlashAttention style),
      grouped the way GQA kernels group it: `batch` = independent (sequence, KV head) pairs on
      this device, `m` = query rows sharing one KV head (query tokens × query heads per KV head),
      `n` = KV length attended by the last query, `k` = query/key width of the score GEMM (for
      MLA's absorbed decode: `kv_lora_rank + qk_rope_head_dim`, all heads sharing one latent).
      Runs on matrix units at the rate of the (`act_format`, `kv_format`) pair.
    - `elementwise`: norms, activation × gate, RoPE, residual adds, on vector units; `m` tokens by
      `n` features, `k` = 0.
    - `embedding`: a row gather from the embedding table; `m` tokens by `n` features.
    - `router`: the MoE gate GEMM `[m, k] @ [k, n]` (n = number of experts) plus top-k; priced like
      a matmul, kept apart because it is usually not quantized and its `n` is tiny.
    - `comm`: a collective or point-to-point transfer alone (no FLOPs, no memory bytes): it runs
      after the op that produced its data, not overlapped with it.
    """

    MATMUL = "matmul"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    EMBEDDING = "embedding"
    ROUTER = "router"
    COMM = "comm"


class CommKind(StrEnum):
    """The communication pattern of an op's `comm_bytes` over `comm_group` devices.

    - `none`: no communication (`comm_bytes` = 0, `comm_group` = 1).
    - `allreduce`: every device contributes a tensor of `comm_bytes` and receives the sum (TP after
      the row-parallel output projection and down projection). Ring cost: each device sends and
      receives `2 (p - 1) / p × comm_bytes`.
    - `alltoall`: every device sends `comm_bytes` in total, spread over the other devices, and
      receives about as much (MoE token dispatch and combine under expert parallelism). Each
      device sends `(p - 1) / p × comm_bytes` off-device.
    - `p2p`: one device sends `comm_bytes` to the next (pipeline stage boundary).
    """

    NONE = "none"
    ALLREDUCE = "allreduce"
    ALLTOALL = "alltoall"
    P2P = "p2p"


@dataclass(frozen=True, kw_only=True, slots=True)
class Op:
    """One operator of one forward pass, on one device, after parallelism.

    Fields:
        name: dotted name, unique within a graph: `embed`, `dense.attn.qkv_proj`,
            `moe.experts.gate_up`, `lm_head`, `pp.send` (group prefix, then role, then op).
        kind: see `OpKind`; decides which fields describe the shape.
        group: the layer group the op belongs to: `embed`, `head` (final norm + LM head), `pp`, or
            a `ModelSpec.layer_groups()` name (`dense`, `moe`).
        count: how many identical instances run in one forward pass through the whole pipeline
            (layers of the group × per-layer repeats). Totals are `count × flops` and so on. With
            pipeline parallelism each instance runs on the device of the stage holding its layer,
            one stage after another, so summing `count × time` over ops gives the latency of one
            forward pass.
        m, n, k: GEMM shape `[m, k] @ [k, n]` of one of `batch` independent GEMMs (see `OpKind`
            for attention and elementwise ops). Integers for tile and wave efficiency modelling;
            where the workload is an expectation (MoE tokens per expert, experts touched), the
            shape is rounded up and `flops` and bytes keep the exact expectation.
        batch: independent GEMMs of shape `m, n, k` in one instance (experts touched on this
            device; sequences × heads for attention); 1 otherwise.
        flops: floating-point operations of one instance, a multiply-add counted as 2. For
            attention, the two GEMMs (QK^T and PV) over attended pairs only (causal masking
            skipped); softmax exponentials are not included.
        weight_bytes: bytes of weights one instance reads from memory, on this device, at
            `weight_format`'s bits per element including its scales and zero-points.
        act_bytes: activation bytes one instance reads plus writes, at `act_format`.
        kv_bytes: KV-cache bytes one instance reads plus writes (attention: the cached tokens read
            and the new tokens' keys and values written), at `kv_format`.
        weight_format, act_format, kv_format: format strings (`quarch.formats.Format.parse`-able)
            of the operands. Always valid strings; which pair sets the compute rate depends on
            `kind`: matmul/router (weight, act), attention (act, kv), others act.
        comm_bytes: payload of the communication in bytes, per device, as `CommKind` defines.
        comm: the communication pattern; `none` for ops that do not communicate.
        comm_group: number of devices taking part in the communication (1 when `comm` is none).
    """

    name: str
    kind: OpKind
    group: str
    count: int
    m: int
    n: int
    k: int
    batch: int = 1
    flops: float = 0.0
    weight_bytes: float = 0.0
    act_bytes: float = 0.0
    kv_bytes: float = 0.0
    weight_format: str = "bf16"
    act_format: str = "bf16"
    kv_format: str = "bf16"
    comm_bytes: float = 0.0
    comm: CommKind = CommKind.NONE
    comm_group: int = 1

    @property
    def memory_bytes(self) -> float:
        """Bytes one instance moves to and from device memory: weights + activations + KV."""
        return self.weight_bytes + self.act_bytes + self.kv_bytes

    @property
    def total_flops(self) -> float:
        """FLOPs of all `count` instances."""
        return self.flops * self.count

    @property
    def total_memory_bytes(self) -> float:
        """Memory bytes of all `count` instances."""
        return self.memory_bytes * self.count

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per memory byte of one instance (0 for ops that move no memory bytes)."""
        moved = self.memory_bytes
        return self.flops / moved if moved > 0 else 0.0


# Building an `Op` through its frozen-dataclass `__init__` costs about 2-5 us (keyword parsing and
# one `object.__setattr__` per field), and a new scenario builds dozens of them. `new_op` sets the
# slots directly through their descriptors, which is what the frozen `__init__` does in the end,
# at well under half the cost. The fields and their order are `Op`'s own (checked at import).
_SLOTS = (
    "name",
    "kind",
    "group",
    "count",
    "m",
    "n",
    "k",
    "batch",
    "flops",
    "weight_bytes",
    "act_bytes",
    "kv_bytes",
    "weight_format",
    "act_format",
    "kv_format",
    "comm_bytes",
    "comm",
    "comm_group",
)
assert Op.__slots__ == _SLOTS, "new_op must set exactly Op's fields"
(
    _set_name,
    _set_kind,
    _set_group,
    _set_count,
    _set_m,
    _set_n,
    _set_k,
    _set_batch,
    _set_flops,
    _set_weight_bytes,
    _set_act_bytes,
    _set_kv_bytes,
    _set_weight_format,
    _set_act_format,
    _set_kv_format,
    _set_comm_bytes,
    _set_comm,
    _set_comm_group,
) = (Op.__dict__[name].__set__ for name in _SLOTS)
_new = object.__new__


def new_op(
    name: str,
    kind: OpKind,
    group: str,
    count: int,
    m: int,
    n: int,
    k: int,
    batch: int,
    flops: float,
    weight_bytes: float,
    act_bytes: float,
    kv_bytes: float,
    weight_format: str,
    act_format: str,
    kv_format: str,
    comm_bytes: float,
    comm: CommKind,
    comm_group: int,
) -> Op:
    """`Op(...)` with every field given positionally, built without the dataclass `__init__`
    (equal to the `Op` the keyword constructor gives; for the graph builders' hot path)."""
    op = _new(Op)
    _set_name(op, name)
    _set_kind(op, kind)
    _set_group(op, group)
    _set_count(op, count)
    _set_m(op, m)
    _set_n(op, n)
    _set_k(op, k)
    _set_batch(op, batch)
    _set_flops(op, flops)
    _set_weight_bytes(op, weight_bytes)
    _set_act_bytes(op, act_bytes)
    _set_kv_bytes(op, kv_bytes)
    _set_weight_format(op, weight_format)
    _set_act_format(op, act_format)
    _set_kv_format(op, kv_format)
    _set_comm_bytes(op, comm_bytes)
    _set_comm(op, comm)
    _set_comm_group(op, comm_group)
    return op
