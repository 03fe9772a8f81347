"""The linear layers of one decoder layer on one device, and how MoE routing spreads tokens.

The op graph fuses some linear layers (Q, K and V into `qkv_proj`, gate and up into
`gate_up`); a method's `Overhead` applies to each linear layer of the checkpoint, so overheads
are priced over this list, which names the layers as HF checkpoints do. Widths are per device
after tensor parallelism (see `Scenario`): column-parallel layers split their output,
row-parallel layers their input, replicated layers neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from quarch.models import ModelSpec
from quarch.perf._scenario import Scenario


@dataclass(frozen=True, slots=True)
class Linear:
    """One linear layer on one device.

    Fields:
        name: `<part>.<layer>` (`attn.q_proj`, `mlp.down_proj`, `experts.gate_proj`).
        part: `attn` or `mlp` (for an MoE layer the router and experts are in `mlp`).
        in_features, out_features: per-device input and output widths.
        rows: token rows one GEMM of it processes in the pass (an expectation for experts).
        batch: GEMMs of it per layer instance in the pass (experts touched; 1 otherwise).
        copies: resident copies of its weights on the device (local experts; 1 otherwise).
    """

    name: str
    part: str
    in_features: float
    out_features: float
    rows: float
    batch: float = 1.0
    copies: float = 1.0


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


def moe_routing(spec: ModelSpec, scenario: Scenario, rows: float) -> tuple[float, float]:
    """(experts touched on this device, (token, expert) pairs on this device) for `rows` token
    rows of one attention replica (see `_graph`'s module doc for the routing model)."""
    moe = spec.moe
    assert moe is not None
    dispatch = scenario.dp > 1 and scenario.ep > 1  # DP attention: tokens travel to experts
    # tokens routed in the stage: one replica's rows, or every replica's under all-to-all
    stage_rows = rows * scenario.dp if dispatch else rows
    local_experts = moe.num_experts / scenario.ep
    touched = (
        local_experts
        * expected_experts_touched(moe.num_experts, moe.experts_per_token, stage_rows)
        / moe.num_experts
    )
    pairs = stage_rows * moe.experts_per_token / scenario.ep
    return touched, pairs


def _attention_linears(spec: ModelSpec, tp: int, rows: float) -> list[Linear]:
    h, heads = spec.hidden_size, spec.num_heads / tp
    shapes: list[tuple[str, float, float]]
    mla = spec.mla
    if mla is None:
        kv = spec.num_kv_heads / tp if spec.num_kv_heads >= tp else 1.0
        d, dv = spec.head_dim, spec.v_head_dim
        shapes = [("q_proj", h, heads * d), ("k_proj", h, kv * d), ("v_proj", h, kv * dv)]
    else:
        if mla.q_lora_rank is None:
            shapes = [("q_proj", h, heads * mla.qk_head_dim)]
        else:
            rank = mla.q_lora_rank
            shapes = [("q_a_proj", h, rank), ("q_b_proj", rank, heads * mla.qk_head_dim)]
        # kv_b_proj's overhead is priced on the new tokens' latents (as if applied when a
        # latent is written), not on the rebuilt cache of MLA's prefill
        up = heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        shapes += [("kv_a_proj_with_mqa", h, mla.kv_cache_dim), ("kv_b_proj", mla.kv_lora_rank, up)]
    shapes.append(("o_proj", heads * spec.v_head_dim, h))
    return [Linear(f"attn.{n}", "attn", k, m, rows) for n, k, m in shapes]


def _mlp_linears(
    spec: ModelSpec, prefix: str, width: float, rows: float, batch: float = 1.0, copies: float = 1.0
) -> list[Linear]:
    h = spec.hidden_size
    names = ("gate_proj", "up_proj") if spec.gated_mlp else ("up_proj",)
    out = [Linear(f"{prefix}.{n}", "mlp", h, width, rows, batch, copies) for n in names]
    out.append(Linear(f"{prefix}.down_proj", "mlp", width, h, rows, batch, copies))
    return out


def part_linears(
    spec: ModelSpec, scenario: Scenario, moe_layer: bool, part: str, rows: float
) -> list[Linear]:
    """The linear layers of `part` (`attn` or `mlp`) of one layer on one device, for a pass of
    `rows` token rows per attention replica (0 when only the weights matter)."""
    tp = scenario.tp
    if part == "attn":
        return _attention_linears(spec, tp, rows)
    moe = spec.moe
    if not moe_layer or moe is None:
        return _mlp_linears(spec, "mlp", spec.intermediate_size / tp, rows)
    h = spec.hidden_size
    router_n = moe.num_experts + (1 if moe.shared_expert_gate else 0)
    out = [Linear("router", "mlp", h, router_n, rows)]
    touched, pairs = moe_routing(spec, scenario, rows) if rows else (0.0, 0.0)
    width = moe.expert_intermediate_size / expert_tp_size(scenario)
    local = -(-moe.num_experts // scenario.ep)  # the device with the most experts
    expert_rows = pairs / touched if touched > 0 else 0.0
    out += _mlp_linears(spec, "experts", width, expert_rows, touched, local)
    if moe.num_shared_experts:
        shared = moe.num_shared_experts * moe.shared_intermediate_size / tp
        out += _mlp_linears(spec, "shared", shared, rows)
    return out
