"""What the study's serving engine can load, applied to the design space and to designs.

A study names its engine once (`engine: vllm`, the same profile the performance model prices
with). Its deployment data (`quarch.perf.FusedGroup`, `quarch.perf.KernelSupport`) constrains
the search in two ways:

- **Fused groups share one scheme, by construction.** Every linear layer of a fused group
  (vLLM's `qkv_proj` = q/k/v, `gate_up_proj` = gate/up) must take its weight format, method and
  input format from one slot of the space, so no sampled design can give them two. The space's
  weight slots are per (group of layers, attention or MLP), which holds every fused group
  listed today; `check_fused_slots` proves it for the loaded model when the space is built and
  refuses a space that would split a group, rather than rejecting designs afterwards.
  `fused_conflicts` checks the same property on a finished `QuantConfig` (what the tests run on
  every trial).
- **Kernels exist, or the design is excluded.** For each part of each group, the (weight
  option, activation format) pair must have a kernel on the design's device architecture in
  the engine's table; `kernel_exclusion` names the first pair that has none, and the
  evaluator turns it into an infeasible constraint value and a reason the result keeps.
  Devices without a known architecture (the accelerator template, a device YAML outside the
  catalog) are not judged: the tables say nothing about them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from quarch.search._layout import ATTN, MLP, PARTS, ModelLayout
from quarch.search._space import HW_DEVICE, Design, DesignSpace
from quarch.search._study import FLOAT

if TYPE_CHECKING:
    from quarch.perf import Engine
    from quarch.quant import QuantConfig


def _engine(space: DesignSpace) -> Engine:
    from quarch.perf import load_engine

    return load_engine(space.engine)


def _siblings(layout: ModelLayout, layer: int) -> dict[str, dict[str, str]]:
    """Per parent module of `layer`: leaf name -> full name of its linear layers."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for li in layout.linears[layer]:
        parent, _, leaf = li.name.rpartition(".")
        out[parent][leaf] = li.name
    return out


def fused_members(layout: ModelLayout, engine: Engine) -> list[tuple[str, tuple[str, ...]]]:
    """Every fused group the model has under `engine`: (packed name, full member names); a
    group counts where at least two of its members sit under one parent module."""
    found = []
    for layer in range(layout.num_layers):
        for parent, leaves in _siblings(layout, layer).items():
            for g in engine.fused_groups:
                names = tuple(leaves[m] for m in g.members if m in leaves)
                if len(names) >= 2:
                    found.append((f"{parent}.{g.name}", names))
    return found


def check_fused_slots(space: DesignSpace) -> None:
    """Raise ValueError when a fused group of the engine would span two weight slots."""
    engine = _engine(space)
    if not engine.fused_groups:
        return
    part_of = {li.name: li.part for layer in space.layout.linears for li in layer}
    group_of = {layer: g.name for g in space.groups for layer in g.layers}
    for packed, names in fused_members(space.layout, engine):
        layer = _layer_index(space.layout, names[0])
        slots = {space.weight_slot(group_of[layer], part_of[n]) for n in names}
        if len(slots) > 1:
            raise ValueError(
                f"engine {engine.name!r} loads {', '.join(names)} as one layer {packed}, but the "
                f"space gives them separate slots {sorted(slots)}; one fused group needs one slot"
            )


def _layer_index(layout: ModelLayout, name: str) -> int:
    rest = name[len(layout.prefix) + 1 :]
    return int(rest.split(".", 1)[0])


def fused_conflicts(config: QuantConfig, layout: ModelLayout, engine: Engine) -> list[str]:
    """Fused groups whose members `config` gives different weight or input schemes (one line
    each, naming the members and their schemes); empty when the config can be loaded."""
    from quarch.quant import Role

    problems = []
    for packed, names in fused_members(layout, engine):
        for role in (Role.WEIGHT, Role.INPUT):
            schemes = {}
            for n in names:
                spec = config.spec_for(n, role)
                schemes[n] = None if spec is None else spec.to_dict()
            if len({repr(v) for v in schemes.values()}) > 1:
                shown = ", ".join(f"{n.rsplit('.', 1)[-1]}={v}" for n, v in schemes.items())
                problems.append(f"{packed} ({role}): {shown}")
    return problems


def architecture(space: DesignSpace, design: Design) -> str | None:
    """The catalog architecture of the design's device (None: template or unknown device)."""
    from quarch.perf import ARCHITECTURE

    if space.hardware.template is not None:
        return None
    return ARCHITECTURE.get(str(design[HW_DEVICE]))


def kernel_exclusion(space: DesignSpace, design: Design) -> str | None:
    """Why the study's engine cannot serve `design` on its device, or None when it can (or
    when the engine states no kernels, or the device's architecture is unknown)."""
    from quarch.perf import find_kernel, kernel_class

    engine = _engine(space)
    arch = architecture(space, design)
    if not engine.kernels or arch is None:
        return None
    for g in space.groups:
        act = design[f"a.{g.name}"]
        act_fmt = None if act == FLOAT else act
        for part in PARTS if space.split_attn_mlp else (ATTN,):
            opt = space.weight_option(design, g.name, part)
            if find_kernel(engine.kernels, opt.format, act_fmt, arch) is not None:
                continue
            w = kernel_class(opt.format)
            where = f"{g.name} {part if space.split_attn_mlp else ATTN + '+' + MLP}"
            return (
                f"{engine.name} has no kernel for {w} weights x {kernel_class(act_fmt)} "
                f"activations on {arch} ({where}: {opt.label} x {act}); "
                f"{_alternatives(engine, w, arch)}"
            )
    return None


def _alternatives(engine: Engine, weight_class: str, arch: str) -> str:
    acts = sorted({r.act for r in engine.kernels if r.weight == weight_class and arch in r.archs})
    if acts:
        return f"{weight_class} weights run there with {' or '.join(acts)} activations"
    archs = sorted({a for r in engine.kernels if r.weight == weight_class for a in r.archs})
    if archs:
        return f"{weight_class} weights have kernels on {', '.join(archs)}"
    return f"{engine.name} has no {weight_class} weight kernel on any device"
