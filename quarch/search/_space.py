"""The design space of a study, resolved against a model: groups of layers, slots, choices.

A **design** gives every slot one choice:

- `w.<group>.attn`, `w.<group>.mlp` (or `w.<group>` when attention and MLP choose together):
  the weight option of the group's linear layers: `float`, a format (`int4_g128`, rounded to
  nearest), or a format with a method (`int4_g128+gptq`, `mxfp4+lqer(rank=8)`);
- `a.<group>`: the format of the inputs of the group's linear layers (`float` or a format);
- `kv.<group>`: the format of the group's KV cache;
- `hw.device` when several devices are given, `hw.<parameter>` for the accelerator template.

Slots with a single choice are fixed and do not appear in the sampler's space. Groups are named
by their layers (`l0-4`) unless the study names them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from quarch.search._layout import ATTN, MLP, PARTS, ModelLayout
from quarch.search._study import (
    FLOAT,
    GroupSpec,
    HardwareSpec,
    MethodVariant,
    Param,
    SpaceSpec,
    StudySpec,
    TemplateParam,
)

if TYPE_CHECKING:
    from quarch.formats import Format
    from quarch.perf import Overhead

HW_DEVICE = "hw.device"


@dataclass(frozen=True, kw_only=True)
class WeightOption:
    """A weight choice: a format (None: float) and a method; hashed by its label, which names
    it uniquely in a space."""

    label: str
    format: Format | None
    method: MethodVariant = field(default_factory=lambda: MethodVariant(name="rtn"))

    def __hash__(self) -> int:
        return hash(self.label)

    @property
    def overhead(self) -> Overhead | None:
        """What the option's method adds to each linear layer (declared in its registry entry;
        e.g. LQER's low-rank GEMMs and factors), or None."""
        from quarch.quant import get_method

        return get_method(self.method.name).overhead_of(self.method.params)


def option_label(fmt: str | None, method: MethodVariant) -> str:
    if fmt is None:
        return FLOAT
    return fmt if method.name == "rtn" and not method.params else f"{fmt}+{method.label}"


@dataclass(frozen=True, kw_only=True)
class Group:
    """A run of layers with the choices of its slots (labels)."""

    name: str
    layers: tuple[int, ...]
    weight: tuple[str, ...]
    act: tuple[str, ...]
    kv: tuple[str, ...]


@dataclass(frozen=True)
class Design:
    """One point of the space: every slot's choice, as sorted (name, value) pairs."""

    items: tuple[tuple[str, Any], ...]

    @staticmethod
    def of(values: Mapping[str, Any]) -> Design:
        return Design(tuple(sorted(values.items())))

    @cached_property
    def values(self) -> dict[str, Any]:
        return dict(self.items)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @cached_property
    def key(self) -> str:
        """A short stable id: sha1 of the canonical JSON of the choices."""
        text = json.dumps(self.items, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def _group_name(layers: tuple[int, ...]) -> str:
    if layers == tuple(range(layers[0], layers[-1] + 1)):
        return f"l{layers[0]}" if len(layers) == 1 else f"l{layers[0]}-{layers[-1]}"
    return "l" + "_".join(str(i) for i in layers)


def _even_runs(num_layers: int, count: int) -> list[tuple[int, ...]]:
    if count > num_layers:
        raise ValueError(f"space.groups: {count} groups for a model with {num_layers} layers")
    base, extra = divmod(num_layers, count)
    runs, start = [], 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        runs.append(tuple(range(start, start + size)))
        start += size
    return runs


def _weight_labels(
    formats: Sequence[str], methods: Sequence[MethodVariant], options: dict[str, WeightOption]
) -> tuple[str, ...]:
    labels = []
    for fmt in formats:
        variants = [MethodVariant(name="rtn")] if fmt == FLOAT else methods
        for m in variants:
            f = None if fmt == FLOAT else fmt
            label = option_label(f, m)
            parsed = None if f is None else _parse_format(f)
            options.setdefault(label, WeightOption(label=label, format=parsed, method=m))
            labels.append(label)
    return tuple(labels)


def resolve_groups(
    space: SpaceSpec, num_layers: int, options: dict[str, WeightOption]
) -> tuple[Group, ...]:
    """The groups of `space` over a model of `num_layers` layers; fills `options` by label.

    Raises:
        ValueError: groups that overlap, leave layers out, or name layers the model lacks.
    """
    specs: Sequence[GroupSpec]
    if isinstance(space.groups, int):
        specs = [GroupSpec(layers=r) for r in _even_runs(num_layers, space.groups)]
    else:
        specs = space.groups
    seen: dict[int, int] = {}
    groups = []
    for i, g in enumerate(specs):
        layers = tuple(sorted(set(g.layers or ())))
        for layer in layers:
            if layer >= num_layers:
                raise ValueError(
                    f"space.groups[{i}].layers: layer {layer} does not exist "
                    f"(the model has {num_layers} layers: 0-{num_layers - 1})"
                )
            if layer in seen:
                raise ValueError(
                    f"space.groups[{i}].layers: layer {layer} is already in group {seen[layer]}"
                )
            seen[layer] = i
        methods = g.methods if g.methods is not None else space.methods
        groups.append(
            Group(
                name=g.name or _group_name(layers),
                layers=layers,
                weight=_weight_labels(g.weight or space.weight, methods, options),
                act=g.act or space.act,
                kv=g.kv or space.kv,
            )
        )
    missing = [i for i in range(num_layers) if i not in seen]
    if missing:
        raise ValueError(
            f"space.groups: layers {missing} are in no group; every layer needs one "
            "(give a group weight: [float] to keep layers float)"
        )
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"space.groups: duplicate group names {names}")
    return tuple(groups)


@dataclass(frozen=True, kw_only=True)
class DesignSpace:
    """The study's space over one model (see the module doc)."""

    layout: ModelLayout
    groups: tuple[Group, ...]
    split_attn_mlp: bool
    options: Mapping[str, WeightOption]
    hardware: HardwareSpec
    serving_dtype: str
    engine: str = "ideal"

    # ---- slots and params ----------------------------------------------------------------

    def weight_slot(self, group: str, part: str) -> str:
        return f"w.{group}.{part}" if self.split_attn_mlp else f"w.{group}"

    def slots(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """Every slot with its choices (fixed ones included)."""
        for g in self.groups:
            parts = PARTS if self.split_attn_mlp else (None,)
            for part in parts:
                yield (f"w.{g.name}.{part}" if part else f"w.{g.name}"), g.weight
            yield f"a.{g.name}", g.act
            yield f"kv.{g.name}", g.kv
        hw = self.hardware
        if hw.template is not None:
            for p in hw.template:
                if p.low is None:
                    yield f"hw.{p.name}", tuple(p.choices)
        else:
            yield HW_DEVICE, tuple(hw.devices)

    @cached_property
    def params(self) -> tuple[Param, ...]:
        """The sampled dimensions: slots with more than one choice, and template ranges."""
        out = [Param(name=n, choices=c) for n, c in self.slots() if len(c) > 1]
        for p in self.hardware.template or ():
            if p.low is not None:
                out.append(replace(p, name=f"hw.{p.name}", choices=()))
        return tuple(out)

    @cached_property
    def fixed(self) -> dict[str, Any]:
        return {n: c[0] for n, c in self.slots() if len(c) == 1}

    def design(self, values: Mapping[str, Any]) -> Design:
        """The design with `values` for the sampled params and the fixed slots filled in.

        Raises:
            ValueError: a missing or unknown param, or a value outside its choices or range.
        """
        params = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(params) - set(self.fixed))
        if unknown:
            raise ValueError(f"unknown design params {unknown}; params: {sorted(params)}")
        out = dict(self.fixed)
        for name, p in params.items():
            if name not in values:
                raise ValueError(f"design param {name!r} missing")
            out[name] = _check_value(p, values[name])
        for name, value in values.items():
            if name in self.fixed and value != self.fixed[name]:
                raise ValueError(f"design param {name!r} is fixed to {self.fixed[name]!r}")
        return Design.of(out)

    def sampled(self, design: Design) -> dict[str, Any]:
        """The sampled params of a design (what Optuna stores)."""
        return {p.name: design[p.name] for p in self.params}

    # ---- reading a design --------------------------------------------------------------

    def weight_option(self, design: Design, group: str, part: str) -> WeightOption:
        return self.options[design[self.weight_slot(group, part)]]

    def hardware_values(self, design: Design) -> dict[str, Any]:
        """Template parameter values, or `{"device": name}`."""
        if self.hardware.template is None:
            return {"device": design[HW_DEVICE]}
        return {p.name: design[f"hw.{p.name}"] for p in self.hardware.template}

    @cached_property
    def formats(self) -> dict[str, Format]:
        """Every choice's stored format, parsed once: a weight option's (by label), an
        activation or KV choice's; float: the serving dtype."""
        out = {FLOAT: _parse_format(self.serving_dtype)}
        out.update((k, o.format) for k, o in self.options.items() if o.format is not None)
        for g in self.groups:
            out.update((c, _parse_format(c)) for c in (*g.act, *g.kv) if c not in out)
        return out

    def perf_format(self, choice: str) -> str:
        """The format name the performance model prices a choice at (float: the serving dtype;
        a weight option: its format)."""
        return str(self.formats[choice])

    def layer_choices(self, design: Design) -> list[tuple[str, str, str, str]]:
        """Per layer: (attention weight option, MLP weight option, act choice, KV choice)."""
        out: list[tuple[str, str, str, str]] = [("", "", "", "")] * self.layout.num_layers
        for g in self.groups:
            row = (
                design[self.weight_slot(g.name, ATTN)],
                design[self.weight_slot(g.name, MLP)],
                design[f"a.{g.name}"],
                design[f"kv.{g.name}"],
            )
            for layer in g.layers:
                out[layer] = row
        return out

    # ---- baselines ---------------------------------------------------------------------

    def reference_hardware(self) -> list[dict[str, Any]]:
        """Hardware values baselines are evaluated at: every device, or the template's
        reference point (first choice / low end of each parameter)."""
        if self.hardware.template is None:
            return [{HW_DEVICE: d} for d in self.hardware.devices]
        return [{f"hw.{p.name}": p.reference for p in self.hardware.template}]

    def baselines(self) -> list[tuple[str, Design]]:
        """Uniform designs: float, each weight option, each activation and KV format everywhere
        (the other tensors float). Options missing from some group are skipped."""
        out: list[tuple[str, Design]] = []
        common_w = _common([g.weight for g in self.groups])
        common_a = _common([g.act for g in self.groups])
        common_kv = _common([g.kv for g in self.groups])
        uniform = [("float", FLOAT, FLOAT, FLOAT)]
        uniform += [(f"W {o}", o, FLOAT, FLOAT) for o in common_w if o != FLOAT]
        uniform += [(f"A {a}", FLOAT, a, FLOAT) for a in common_a if a != FLOAT]
        uniform += [(f"KV {k}", FLOAT, FLOAT, k) for k in common_kv if k != FLOAT]
        for hw in self.reference_hardware():
            suffix = f" @ {hw[HW_DEVICE]}" if len(self.reference_hardware()) > 1 else ""
            for name, w, a, kv in uniform:
                values: dict[str, Any] = dict(hw)
                for g in self.groups:
                    for part in PARTS if self.split_attn_mlp else (ATTN,):
                        values[self.weight_slot(g.name, part)] = w
                    values[f"a.{g.name}"] = a
                    values[f"kv.{g.name}"] = kv
                out.append((name + suffix, Design.of(values)))
        return out


def _common(lists: list[tuple[str, ...]]) -> list[str]:
    first = lists[0]
    return [c for c in first if all(c in other for other in lists[1:])]


def _check_value(p: Param, value: Any) -> Any:
    if p.categorical:
        if value not in p.choices:
            raise ValueError(f"design param {p.name!r}: {value!r} is not one of {list(p.choices)}")
        return value
    assert p.low is not None and p.high is not None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"design param {p.name!r}: expected a number, got {value!r}")
    if not p.low <= value <= p.high:
        raise ValueError(f"design param {p.name!r}: {value!r} is outside [{p.low}, {p.high}]")
    return int(value) if p.integer else float(value)


def build_space(study: StudySpec, layout: ModelLayout) -> DesignSpace:
    """The study's space over a model with this layout."""
    from quarch.search._engine_rules import check_fused_slots

    # float is always an option: the float reference (the first baseline) is measured even when
    # no group may choose float weights
    options = {FLOAT: WeightOption(label=FLOAT, format=None, method=MethodVariant(name="rtn"))}
    groups = resolve_groups(study.space, layout.num_layers, options)
    space = DesignSpace(
        layout=layout,
        groups=groups,
        split_attn_mlp=study.space.split_attn_mlp,
        options=options,
        hardware=study.hardware,
        serving_dtype=study.serving_dtype,
        engine=study.engine,
    )
    check_fused_slots(space)
    return space


def _parse_format(name: str) -> Format:
    """A study's format name (checked when the study was read) as a `Format`."""
    from quarch.formats import Format

    return Format.parse(name)


def template_reference(params: Sequence[TemplateParam]) -> dict[str, Any]:
    return {p.name: p.reference for p in params}
