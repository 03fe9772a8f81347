"""A mixed design as the performance model sees it: the formats of every layer, and what a
method adds.

A `Plan` gives each decoder layer (0-based index) a `LayerPlan`: the weight format of its
attention and its MLP (for a mixture-of-experts layer, the MLP format covers the router, the
routed experts and the shared experts unless a role is given on its own), the format of the
activations entering its ops, of its KV cache, and the `Overhead` a method adds to the linear
layers of each part. A field left `None` keeps what the `Scenario` says, so the plan of a
uniform design says nothing and prices exactly like no plan.

Formats are stored as format strings, as in `Scenario` and `Op`: a `LayerPlan` or `ExtraGemm`
takes a string or a `quarch.formats.Format` and keeps the format's canonical name
(`str(fmt)`), checked once when it is built (an unknown name raises `ValueError`); the op graph
passes them on unchanged. One representation across `Scenario`, `Plan` and `Op` keeps the
graph's caches keyed by cheap, hashable values.

An `Overhead` is data, not code: the extra GEMMs one linear layer `[in] -> [out]` gains, each
with dimensions that are the layer's `in`, its `out` or a fixed size (a rank), and the format of
its weight. The method registry (`quarch.quant`) declares a method's overhead as this object,
and the op graph turns it into ops named `<part op>.<gemm name>` (`dense.attn.q_proj.lowrank_a`),
so no module here knows any method by name. Under tensor parallelism a dimension that is the
layer's split dimension is split with it (a column-parallel layer splits `out`, a row-parallel
one `in`); fixed dimensions are replicated. The extra weights are resident (counted in memory)
and read once per GEMM.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from quarch.perf._scenario import bits_per_element, check_format

Dim = int | Literal["in", "out"]
"""A dimension of an extra GEMM: the linear layer's input or output width, or a fixed size."""

PLAN_ROLES = ("attn", "mlp", "router", "experts", "shared_experts")
"""Weight roles a `LayerPlan` sets; `router`, `experts`, `shared_experts` follow `mlp`."""


def _format_name(where: str, fmt: object) -> str:
    """The canonical name of a format given as a string or a `Format` (checked)."""
    from quarch.formats import Format  # deferred: keeps `import quarch.perf` light

    if isinstance(fmt, Format):
        return str(fmt)
    check_format(where, fmt)
    return str(fmt)


def _check_dim(where: str, dim: object) -> None:
    if dim in ("in", "out"):
        return
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"{where} must be 'in', 'out' or a positive integer, got {dim!r}")


@dataclass(frozen=True, kw_only=True)
class ExtraGemm:
    """One extra GEMM `[tokens, k] @ [k, n]` per linear layer, with a `k × n` weight.

    Fields:
        name: suffix of the op name (`lowrank_a`).
        k, n: each the layer's `"in"`, its `"out"` or a positive integer.
        weight_format: format of the extra weight (bytes at its bits per element).
    """

    name: str
    k: Dim
    n: Dim
    weight_format: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"ExtraGemm.name must be an identifier, got {self.name!r}")
        _check_dim("ExtraGemm.k", self.k)
        _check_dim("ExtraGemm.n", self.n)
        fmt = _format_name("ExtraGemm.weight_format", self.weight_format)
        object.__setattr__(self, "weight_format", fmt)

    def shape(self, in_features: float, out_features: float) -> tuple[float, float]:
        """(k, n) for a layer of these (per-device) widths."""
        return _size(self.k, in_features, out_features), _size(self.n, in_features, out_features)


def _size(dim: Dim, in_features: float, out_features: float) -> float:
    if dim == "in":
        return in_features
    if dim == "out":
        return out_features
    return float(dim)


@dataclass(frozen=True, kw_only=True)
class Overhead:
    """What a method adds to every linear layer it is applied to: extra GEMMs (run after the
    layer's own, on the same input rows) whose weights stay resident.

    Example, LQER's low-rank correction `y += (x A) B` of rank `r` in bf16:
    `Overhead(gemms=(ExtraGemm(name="lowrank_a", k="in", n=r, weight_format="bf16"),
    ExtraGemm(name="lowrank_b", k=r, n="out", weight_format="bf16")))`.
    """

    gemms: tuple[ExtraGemm, ...]

    def __post_init__(self) -> None:
        gemms = tuple(self.gemms)
        if not gemms or not all(isinstance(g, ExtraGemm) for g in gemms):
            raise TypeError(f"Overhead.gemms must be a non-empty tuple of ExtraGemm, got {gemms!r}")
        object.__setattr__(self, "gemms", gemms)

    def weight_bytes(self, in_features: float, out_features: float) -> float:
        """Bytes of the extra weights of one layer of these (per-device) widths."""
        total = 0.0
        for g in self.gemms:
            k, n = g.shape(in_features, out_features)
            total += k * n * bits_per_element(g.weight_format) / 8
        return total


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """The formats and overheads of one decoder layer; `None` keeps the scenario's.

    Formats are format strings (a `Format` is accepted and stored by its name).

    Fields:
        attn, mlp: weight formats of the attention and MLP linear layers.
        router, experts, shared_experts: weight formats of an MoE layer's roles (default: `mlp`).
        act: format of the activations entering the layer's ops.
        kv: format of the layer's KV cache.
        attn_overhead, mlp_overhead: what a method adds to each linear layer of the part.
    """

    attn: str | None = None
    mlp: str | None = None
    router: str | None = None
    experts: str | None = None
    shared_experts: str | None = None
    act: str | None = None
    kv: str | None = None
    attn_overhead: Overhead | None = None
    mlp_overhead: Overhead | None = None
    _hash: int = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return self._hash  # computed once: layer plans key the op-graph caches

    def __post_init__(self) -> None:
        for name in (*PLAN_ROLES, "act", "kv"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _format_name(f"LayerPlan.{name}", value))
        for name in ("attn_overhead", "mlp_overhead"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Overhead):
                raise TypeError(f"LayerPlan.{name} must be an Overhead or None, got {value!r}")
        values = tuple(getattr(self, f.name) for f in fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash(values))

    def weight_formats(self) -> dict[str, str]:
        """The weight format of each role this plan sets (MoE roles following `mlp`)."""
        out = {}
        for role in PLAN_ROLES:
            fmt = getattr(self, role)
            if fmt is None and role != "attn":
                fmt = self.mlp
            if fmt is not None:
                out[role] = fmt
        return out

    def overhead(self, part: str) -> Overhead | None:
        """The overhead of part `attn` or `mlp`."""
        return self.attn_overhead if part == "attn" else self.mlp_overhead


_DEFAULT = LayerPlan()

Run = tuple[int, int, LayerPlan]
"""Layers `start..stop-1` share one `LayerPlan`."""


@dataclass(frozen=True)
class Plan:
    """Per-layer formats of a model of `num_layers` layers, stored as runs of equal layers.

    Build it with `Plan.of(layer_plans)` (one per layer) or `Plan.uniform(layer_plan, n)`.
    """

    runs: tuple[Run, ...]
    _hash: int = field(init=False, repr=False, compare=False)
    _layers: tuple[LayerPlan, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        runs: list[Run] = []
        expect = 0
        for run in self.runs:
            if not isinstance(run, tuple) or len(run) != 3:
                raise ValueError(f"Plan run must be (start, stop, LayerPlan), got {run!r}")
            start, stop, layer = run
            if start != expect or not isinstance(stop, int) or stop <= start:
                raise ValueError(
                    f"Plan runs must cover layers 0.. contiguously: run {run[:2]} after {expect}"
                )
            if not isinstance(layer, LayerPlan):
                raise TypeError(f"Plan run {run[:2]}: expected a LayerPlan, got {layer!r}")
            runs.append((expect, stop, layer))
            expect = stop
        if not runs:
            raise ValueError("Plan needs at least one layer")
        object.__setattr__(self, "runs", tuple(runs))
        # computed once: plans key the op-graph caches
        object.__setattr__(self, "_hash", hash(self.runs))
        object.__setattr__(
            self, "_layers", tuple(lp for start, stop, lp in runs for _ in range(start, stop))
        )

    def __hash__(self) -> int:
        return self._hash

    @staticmethod
    def of(layers: Iterable[LayerPlan]) -> Plan:
        """The plan of these per-layer plans (layer 0 first), equal neighbours merged."""
        runs: list[Run] = []
        for i, layer in enumerate(layers):
            if runs and (runs[-1][2] is layer or runs[-1][2] == layer):
                runs[-1] = (runs[-1][0], i + 1, layer)
            else:
                runs.append((i, i + 1, layer))
        return Plan(tuple(runs))

    @staticmethod
    def uniform(layer: LayerPlan, num_layers: int) -> Plan:
        """Every one of `num_layers` layers planned alike."""
        return Plan(((0, num_layers, layer),))

    @property
    def num_layers(self) -> int:
        return self.runs[-1][1]

    def layer(self, index: int) -> LayerPlan:
        """The plan of layer `index`."""
        if not 0 <= index < len(self._layers):
            raise IndexError(f"layer {index} is outside the plan's {self.num_layers} layers")
        return self._layers[index]

    def __iter__(self) -> Iterator[LayerPlan]:
        return iter(self._layers)

    def blocks(self, layers: Sequence[int]) -> tuple[tuple[LayerPlan, tuple[int, ...]], ...]:
        """The distinct layer plans of `layers`, each with its layers, in order of first use."""
        found: dict[LayerPlan, list[int]] = {}
        plans = self._layers
        for i in layers:
            found.setdefault(plans[i], []).append(i)
        return tuple((p, tuple(ls)) for p, ls in found.items())


def check_plan(plan: object, num_layers: int) -> None:
    """Raise unless `plan` is None or a `Plan` of exactly `num_layers` layers."""
    if plan is None:
        return
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a quarch.perf.Plan or None, got {plan!r}")
    if plan.num_layers != num_layers:
        raise ValueError(f"plan covers {plan.num_layers} layers, the model has {num_layers}")


def layer_label(layers: Sequence[int]) -> str:
    """A short name of a set of layers: `0-3`, `0-3_8`, `5`."""
    parts, start = [], layers[0]
    prev = start
    for i in (*layers[1:], None):
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return "_".join(parts)
