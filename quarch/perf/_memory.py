"""Memory one device needs to serve a scenario: weights (with their scales), KV cache, activations.

Sharding follows `Scenario` (see its module doc): tensor parallelism splits attention heads, MLP
columns and the vocabulary; expert parallelism spreads routed experts; pipeline parallelism
splits the layers into `pp` contiguous stages (the first stages take one extra layer when the
count does not divide); attention replicas (`dp`) each hold the attention weights and their own
sequences' KV cache. The figure reported is the most loaded device.

Formulas:

- weights: per-device elements of each role × `Format.bits_per_element` of the role's format
  (scales and zero-points included; `weight_scale_bytes` is their share). Norm weights and biases
  are counted at the activation format (they are not quantized).
- KV cache: `batch / dp × (prompt_len + output_len)` tokens (at most `sliding_window` of
  them per sequence) × the stage's layers × the KV
  elements one token keeps per layer on this device × the KV format's bytes. GQA keeps
  `2 × kv_heads_per_device × head_dim` (a KV head is replicated when `tp > num_kv_heads`); MLA
  keeps `kv_lora_rank + qk_rope_head_dim`, replicated on every TP device.
- activations (peak, transient): during the prefill of the whole batch, the residual stream
  (`rows × hidden`) stays live while the op with the largest activation footprint (its inputs
  and outputs, from the prefill op graph) runs, plus the fp32 logits of the sampled rows:
  `rows·h·act_bytes + max_op(act_bytes) + seqs·vocab/tp·4`, where `rows = seqs × prompt_len`.

With a `Plan` (per-layer formats), every term is summed layer by layer: each pipeline stage
counts the weights, norms (at the layer's activation format), method overheads (the extra
weights of an `Overhead`, sharded like their layer, see `_plan.py`) and KV cache of its own
layers, and the most loaded stage is reported. The residual stream keeps the scenario's
activation format (a plan sets the format of what enters a layer's ops); the largest op comes
from the plan's prefill graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from quarch.models import ModelSpec
from quarch.perf._blocks import Block, plan_blocks
from quarch.perf._graph import prefill_ops
from quarch.perf._linears import expert_tp_size, part_linears
from quarch.perf._ops import OpKind
from quarch.perf._plan import Plan, check_plan
from quarch.perf._scenario import Scenario, bits_per_element, check_scenario, element_bits

_FP32_LOGIT_BYTES = 4


@dataclass(frozen=True, kw_only=True)
class MemoryBreakdown:
    """Bytes on the most loaded device (all fields in bytes).

    Fields:
        weight_bytes: weights on the device, scales and zero-points included.
        weight_scale_bytes: the part of `weight_bytes` that is scales and zero-points.
        kv_cache_bytes: the KV cache at its full length (prompt + output) for the device's
            sequences and layers.
        activation_bytes: the transient activation peak (see the module doc).
        stage: the pipeline stage (0-based) of the most loaded device.
    """

    weight_bytes: float
    weight_scale_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    stage: int = 0

    @property
    def total_bytes(self) -> float:
        """Weights + KV cache + activations."""
        return self.weight_bytes + self.kv_cache_bytes + self.activation_bytes


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """The contiguous layer ranges of the `pp` pipeline stages (earlier stages take the extra)."""
    base, extra = divmod(num_layers, pp)
    ranges, start = [], 0
    for stage in range(pp):
        size = base + (1 if stage < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


@lru_cache(maxsize=256)
def _stage_layer_counts(spec: ModelSpec, pp: int) -> tuple[tuple[int, int], ...]:
    """(dense layers, MoE layers) of each of the `pp` pipeline stages (see `stage_layers`)."""
    moe = spec.moe
    counts = []
    for layers in stage_layers(spec.num_layers, pp):
        experts = sum(1 for i in layers if moe is not None and moe.is_moe_layer(i))
        counts.append((len(layers) - experts, experts))
    return tuple(counts)


def kv_elements_per_token_per_layer(spec: ModelSpec, scenario: Scenario) -> float:
    """KV-cache elements one token keeps in one layer on one device (see the module doc)."""
    if spec.mla is not None:
        return float(spec.mla.kv_cache_dim)
    tp = scenario.tp
    kv_heads = spec.num_kv_heads / tp if spec.num_kv_heads >= tp else 1.0
    return kv_heads * (spec.head_dim + spec.v_head_dim)


def kv_cache_bytes_per_token(spec: ModelSpec, scenario: Scenario, *, stage: int = 0) -> float:
    """KV-cache bytes one token of one sequence takes on a device of pipeline stage `stage`."""
    layers = sum(_stage_layer_counts(spec, scenario.pp)[stage])
    per_layer = kv_elements_per_token_per_layer(spec, scenario)
    return layers * per_layer * bits_per_element(scenario.kv_format) / 8


def _attention_elements(spec: ModelSpec, tp: int) -> tuple[float, float]:
    """(matrix elements, norm/bias elements) of one layer's attention on one device."""
    h, heads = spec.hidden_size, spec.num_heads / tp
    mla = spec.mla
    if mla is not None:
        up = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        matrices = h * mla.kv_cache_dim + up + heads * mla.v_head_dim * h
        small = float(mla.kv_lora_rank)
        if mla.q_lora_rank is None:
            matrices += h * heads * mla.qk_head_dim
        else:
            matrices += h * mla.q_lora_rank + mla.q_lora_rank * heads * mla.qk_head_dim
            small += mla.q_lora_rank
        return matrices, small
    kv_heads = spec.num_kv_heads / tp if spec.num_kv_heads >= tp else 1.0
    qkv = (heads + 2 * kv_heads) * spec.head_dim
    matrices = h * qkv + heads * spec.v_head_dim * h
    small = (qkv if spec.qkv_bias else 0.0) + (2 * spec.head_dim if spec.qk_norm else 0.0)
    return matrices, small


def _layer_elements(
    spec: ModelSpec, scenario: Scenario, moe_layer: bool
) -> tuple[list[tuple[str, float]], float]:
    """Per-device weight elements of one layer by role, and its norm/bias elements."""
    h, tp = spec.hidden_size, scenario.tp
    attn, small = _attention_elements(spec, tp)
    small += 2 * h  # the two RMSNorms
    roles: list[tuple[str, float]] = [("attn", attn)]
    moe = spec.moe
    if not moe_layer or moe is None:
        roles.append(("mlp", spec.mlp_params(spec.intermediate_size) / tp))
        return roles, small
    router = moe.num_experts * h + (h if moe.shared_expert_gate else 0)
    small += moe.num_experts if moe.router_bias else 0
    local_experts = -(-moe.num_experts // scenario.ep)  # the device with the most experts
    roles.append(("router", float(router)))
    roles.append(("experts", local_experts * spec.expert_params / expert_tp_size(scenario)))
    if moe.num_shared_experts:
        shared = moe.num_shared_experts * spec.mlp_params(moe.shared_intermediate_size)
        roles.append(("shared_experts", shared / tp))
    return roles, small


def _stage_weights(
    spec: ModelSpec, scenario: Scenario, stage: int, plan: Plan | None
) -> tuple[float, float]:
    """(weight bytes, scale bytes) on one device of `stage`."""
    act_bytes = bits_per_element(scenario.act_format) / 8
    total = scale = 0.0

    def add(fmt: str, elements: float) -> None:
        nonlocal total, scale
        bits = bits_per_element(fmt)
        total += elements * bits / 8
        scale += elements * (bits - element_bits(fmt)) / 8

    for block, count in _stage_blocks(spec, scenario, plan, stage):
        s, group = block.scenario, block.group.name
        roles, small = _layer_elements(spec, s, block.group.moe)
        for role, elements in roles:
            add(s.weight_format_for(group, role), count * elements)
        total += count * small * bits_per_element(s.act_format) / 8
        for fmt, elements in _overhead_elements(spec, block):
            add(fmt, count * elements)
    table = spec.vocab_size * spec.hidden_size / scenario.tp  # vocab-parallel
    if stage == 0:
        add(scenario.weight_format_for("embed", "embedding"), table)
    if stage == scenario.pp - 1:
        total += spec.hidden_size * act_bytes  # final norm
        if not (spec.tied_embeddings and scenario.pp == 1):
            add(scenario.weight_format_for("head", "lm_head"), table)
    return total, scale


def _stage_blocks(
    spec: ModelSpec, scenario: Scenario, plan: Plan | None, stage: int
) -> list[tuple[Block, int]]:
    """Each block with its number of layers in pipeline stage `stage` (blocks without any left
    out)."""
    blocks = plan_blocks(spec, scenario, plan)
    if plan is None:
        counts = _stage_layer_counts(spec, scenario.pp)[stage]
        return [(b, counts[b.group.moe]) for b in blocks if counts[b.group.moe]]
    if scenario.pp == 1:
        return [(b, b.count) for b in blocks]
    stage_range = stage_layers(spec.num_layers, scenario.pp)[stage]
    out = []
    for b in blocks:
        count = sum(1 for i in b.layers if i in stage_range)
        if count:
            out.append((b, count))
    return out


def _overhead_elements(spec: ModelSpec, block: Block) -> list[tuple[str, float]]:
    """(format, elements) of the extra weights a method's overhead keeps on one device, per
    layer of the block."""
    layer = block.layer
    if layer is None:
        return []
    out = []
    for part in ("attn", "mlp"):
        overhead = layer.overhead(part)
        if overhead is None:
            continue
        for lin in part_linears(spec, block.scenario, block.group.moe, part, 0.0):
            for gemm in overhead.gemms:
                k, n = gemm.shape(lin.in_features, lin.out_features)
                out.append((gemm.weight_format, lin.copies * k * n))
    return out


def _activation_peak(spec: ModelSpec, scenario: Scenario, plan: Plan | None) -> float:
    act_bytes = bits_per_element(scenario.act_format) / 8
    seqs = scenario.seqs_per_replica
    rows = seqs * scenario.prompt_len
    ops = prefill_ops(spec, scenario, plan)
    largest = max(op.act_bytes for op in ops if op.kind is not OpKind.COMM)
    logits = seqs * spec.vocab_size / scenario.tp * _FP32_LOGIT_BYTES
    return rows * spec.hidden_size * act_bytes + largest + logits


def memory_per_device(
    spec: ModelSpec, scenario: Scenario, plan: Plan | None = None
) -> MemoryBreakdown:
    """Memory on the most loaded device when serving `scenario` (see the module doc), with
    each layer's formats and method overheads from `plan` when one is given.

    Raises:
        ValueError: a scenario that does not fit the model (see `check_scenario`), or a plan of
            another layer count.
        TypeError: a plan that is not a `Plan`.
    """
    check_plan(plan, spec.num_layers)
    return _memory_per_device(spec, scenario, plan)


@lru_cache(maxsize=64)  # small: see the graph caches in _graph.py
def _memory_per_device(spec: ModelSpec, scenario: Scenario, plan: Plan | None) -> MemoryBreakdown:
    check_scenario(spec, scenario)
    length = scenario.prompt_len + scenario.output_len
    if spec.sliding_window is not None:  # a sliding window keeps only its last tokens
        length = min(length, spec.sliding_window)
    tokens = scenario.seqs_per_replica * length
    activations = _activation_peak(spec, scenario, plan)
    per_layer = kv_elements_per_token_per_layer(spec, scenario)
    best: MemoryBreakdown | None = None
    for stage in range(scenario.pp):
        weights, scales = _stage_weights(spec, scenario, stage, plan)
        if plan is None:
            kv = tokens * kv_cache_bytes_per_token(spec, scenario, stage=stage)
        else:  # each layer's cache at its own KV format
            kv = tokens * sum(
                count * per_layer * bits_per_element(b.scenario.kv_format) / 8
                for b, count in _stage_blocks(spec, scenario, plan, stage)
            )
        candidate = MemoryBreakdown(
            weight_bytes=weights,
            weight_scale_bytes=scales,
            kv_cache_bytes=kv,
            activation_bytes=activations,
            stage=stage,
        )
        if best is None or candidate.total_bytes > best.total_bytes:
            best = candidate
    assert best is not None
    return best
