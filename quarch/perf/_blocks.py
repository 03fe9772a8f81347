"""How a `Plan` splits each layer group of a model into blocks of equally planned layers.

A block is priced as one block of ops (see `_graph.py`): the group's ops built with the block's
`Scenario` (the scenario with the layer plan's weight formats as `<group>.<role>` overrides, the
most specific key, and its activation and KV formats), counted over the block's layers. The
memory model (`_memory.py`) counts each block's layers on each pipeline stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from quarch.models import LayerGroup, ModelSpec
from quarch.perf._plan import LayerPlan, Plan, layer_label
from quarch.perf._scenario import Scenario


@dataclass(frozen=True, slots=True)
class Block:
    """Layers of one layer group that plan alike, priced as one block of ops.

    `scenario` is the scenario with the block's formats; `prefix` names its ops (the group
    name, or `<group>[<layers>]` when the group has several blocks); `layer` its plan.
    """

    group: LayerGroup
    count: int
    scenario: Scenario
    prefix: str
    layer: LayerPlan | None
    layers: tuple[int, ...] = ()  # the block's layer indices (with a plan)


@lru_cache(maxsize=256)
def group_layers(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The decoder layer indices of each layer group (`dense`, `moe`)."""
    moe = spec.moe
    out: dict[str, list[int]] = {g.name: [] for g in spec.layer_groups()}
    for i in range(spec.num_layers):
        out["moe" if moe is not None and moe.is_moe_layer(i) else "dense"].append(i)
    return {name: tuple(layers) for name, layers in out.items()}


@lru_cache(maxsize=256)
def plan_blocks(spec: ModelSpec, scenario: Scenario, plan: Plan | None) -> tuple[Block, ...]:
    """The blocks of every layer group, in group order (one per group without a plan)."""
    if plan is None:
        return tuple(Block(g, g.count, scenario, g.name, None) for g in spec.layer_groups())
    layers = group_layers(spec)
    out = []
    for g in spec.layer_groups():
        found = plan.blocks(layers[g.name])
        for layer, indices in found:
            prefix = g.name if len(found) == 1 else f"{g.name}[{layer_label(indices)}]"
            block_scenario = _block_scenario(scenario, g.name, layer)
            out.append(Block(g, len(indices), block_scenario, prefix, layer, indices))
    return tuple(out)


@lru_cache(maxsize=1024)
def _block_scenario(scenario: Scenario, group: str, layer: LayerPlan) -> Scenario:
    """`scenario` with the formats `layer` sets for the layers of `group`."""
    formats = layer.weight_formats()
    if not formats and layer.act is None and layer.kv is None:
        return scenario
    overrides = dict(scenario.weight_overrides)
    for role, fmt in formats.items():
        overrides[f"{group}.{role}"] = fmt  # the most specific key: it wins
    return replace(
        scenario,
        act_format=layer.act or scenario.act_format,
        kv_format=layer.kv or scenario.kv_format,
        weight_overrides=overrides,
    )
