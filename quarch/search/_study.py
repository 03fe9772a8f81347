"""A study as plain data: what to search, on which model and hardware, for which objectives.

The spec dataclasses (`StudySpec` and its parts), their closed choices, the built-in default
(`default_study()`, what `quarch explore` runs with no file) and the YAML form back out
(`study_to_dict`). Reading and validating study files is `_parse.py`, whose docstring shows
every field with its default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from quarch.perf import Scenario
from quarch.search._metrics import Metric

FLOAT = "float"
"""The choice that keeps a tensor in floating point (served at `serving_dtype`)."""


class Sampler(StrEnum):
    """Optuna samplers a study can use."""

    NSGA2 = "nsga2"
    NSGA3 = "nsga3"  # reference-point NSGA-III, for 3+ objectives
    GP = "gp"  # Gaussian-process Bayesian optimisation (slow per trial; small budgets)
    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"
    EXACT = "exact"  # the exact front of the additive proxy first (`_exact`), then NSGA-II


@dataclass(frozen=True, kw_only=True)
class Objective:
    """One objective: a metric (its direction in `METRICS`), at one scenario for the
    per-scenario metrics."""

    metric: Metric
    scenario: str | None = None

    @property
    def key(self) -> str:
        """`ppl`, `bits` or `metric@scenario`: the name metrics are stored under."""
        return self.metric.value if self.scenario is None else f"{self.metric}@{self.scenario}"


SERVING = Scenario(batch=8, prompt_len=512, output_len=128)
"""A study scenario's counts where its YAML leaves them out."""


@dataclass(frozen=True, kw_only=True)
class ScenarioSpec:
    """A named serving scenario: perf's `Scenario`, whose counts (batch, lengths, parallelism)
    the study sets; its formats are replaced by each design's (`search._perf`)."""

    name: str
    serving: Scenario = SERVING


@dataclass(frozen=True, kw_only=True)
class MethodVariant:
    """A weight method with one value per parameter."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.label)

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"


@dataclass(frozen=True, kw_only=True)
class GroupSpec:
    """A run of layers and the choices its tensors may take.

    layers: the layer indices, or None for "the i-th of `count` equal runs" (resolved against
        the model's layer count by `resolve_groups`).
    """

    name: str | None = None
    layers: tuple[int, ...] | None = None
    weight: tuple[str, ...] | None = None
    act: tuple[str, ...] | None = None
    kv: tuple[str, ...] | None = None
    methods: tuple[MethodVariant, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class SpaceSpec:
    """The per-layer-group search space (see the module doc)."""

    groups: int | tuple[GroupSpec, ...] = 3
    split_attn_mlp: bool = True
    weight: tuple[str, ...] = (FLOAT, "fp8_e4m3", "int4_g128", "nvfp4")
    act: tuple[str, ...] = (FLOAT, "fp8_e4m3_c")
    kv: tuple[str, ...] = (FLOAT, "fp8_e4m3")
    methods: tuple[MethodVariant, ...] = (MethodVariant(name="rtn"),)


@dataclass(frozen=True, kw_only=True)
class Param:
    """One dimension: a list of choices (categorical; fixed when there is one), or a numeric
    range `[low, high]` (log-scaled and/or integer). The search space's sampled dimensions and
    the accelerator template's parameters are both `Param`s."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def categorical(self) -> bool:
        return self.low is None

    @property
    def fixed(self) -> bool:
        return self.low is None and len(self.choices) == 1

    @property
    def reference(self) -> Any:
        """The value baselines use: the first choice, or the low end of the range."""
        if self.low is not None:
            return int(self.low) if self.integer else self.low
        return self.choices[0]


TemplateParam = Param
"""A parameter of the accelerator template (`HardwareSpec.template`)."""


@dataclass(frozen=True, kw_only=True)
class HardwareSpec:
    """Catalog devices, or the accelerator template with parameter choices and ranges."""

    devices: tuple[str, ...] = ("h100-sxm",)
    template: tuple[TemplateParam, ...] | None = None
    price_per_hour_usd: float | None = None


@dataclass(frozen=True, kw_only=True)
class Constraints:
    """Limits a front point must meet.

    fits_memory: the model, KV cache and activations fit one device at every scenario.
    tpot_slo_s: time per output token at every scenario at most this.
    ppl_max_increase: perplexity at most float × (1 + this).
    """

    fits_memory: bool = True
    tpot_slo_s: float | None = None
    ppl_max_increase: float | None = None


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    sampler: Sampler = Sampler.NSGA2
    trials: int = 200
    seed: int = 0
    population: int = 40
    storage: str | None = None  # None: sqlite file in the output directory


@dataclass(frozen=True, kw_only=True)
class AccuracySettings:
    text: str = "builtin"
    eval_seqlen: int = 256
    # 4: the median, over pairs of designs adjacent on the default study's front, of the fewest
    # windows whose 95 % paired interval excludes zero (benchmarks/size_eval_windows.py:
    # 3, 4, 3 windows; paired spread 0.027-0.040 nats), within the main job's ~60 s budget
    eval_windows: int = 4
    sensitivity_seqlen: int = 128
    sensitivity_windows: int = 2
    calib_seqlen: int = 256
    calib_windows: int = 16
    seed: int = 0
    max_final_points: int = 6
    proxy_signal: str = "kl"


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A whole study (see the module doc for every field and its default)."""

    name: str = "explore"
    model: str = "shipped"
    model_spec: str | None = None
    serving_dtype: str = "bf16"
    engine: str = "ideal"
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    scenarios: tuple[ScenarioSpec, ...] = (ScenarioSpec(name="serve"),)
    space: SpaceSpec = field(default_factory=SpaceSpec)
    objectives: tuple[Objective, ...] = (
        Objective(metric=Metric.PPL),
        Objective(metric=Metric.TPOT, scenario="serve"),
        Objective(metric=Metric.MEMORY, scenario="serve"),
    )
    constraints: Constraints = field(default_factory=Constraints)
    search: SearchSettings = field(default_factory=SearchSettings)
    accuracy: AccuracySettings = field(default_factory=AccuracySettings)

    def to_dict(self) -> dict[str, Any]:
        """The study as plain data (the YAML form, every default written out; `_parse` reads
        it back)."""
        return study_to_dict(self)


def default_study() -> StudySpec:
    """The built-in study of `quarch explore`: the shipped SmolLM2-135M on one H100 SXM."""
    return StudySpec()


def template_hardware(params: Sequence[TemplateParam], values: Mapping[str, Any]) -> Any:
    """The `Hardware` of one template design point (`values` by parameter name)."""
    from quarch.hardware import accelerator

    kwargs = {p.name: values[p.name] for p in params}
    try:
        return accelerator(name="accelerator", **kwargs)
    except (ValueError, TypeError) as err:
        raise ValueError(f"hardware.template: {err}") from None


# ---- writing -------------------------------------------------------------------------------


def study_to_dict(spec: StudySpec) -> dict[str, Any]:
    hw: dict[str, Any] = {"price_per_hour_usd": spec.hardware.price_per_hour_usd}
    if spec.hardware.template is not None:
        hw["template"] = {p.name: _template_to_data(p) for p in spec.hardware.template}
    else:
        hw["devices"] = list(spec.hardware.devices)
    space = spec.space
    return {
        **{f.name: getattr(spec, f.name) for f in fields(spec)},  # the plain ones as they are
        "hardware": hw,
        "scenarios": [{"name": s.name, **s.serving.counts()} for s in spec.scenarios],
        "space": {
            "groups": space.groups
            if isinstance(space.groups, int)
            else [_group_to_data(g) for g in space.groups],
            "split_attn_mlp": space.split_attn_mlp,
            "weight": list(space.weight),
            "act": list(space.act),
            "kv": list(space.kv),
            "methods": [_method_to_data(m) for m in space.methods],
        },
        "objectives": [o.key for o in spec.objectives],
        "constraints": dict(spec.constraints.__dict__),
        "search": {**spec.search.__dict__, "sampler": spec.search.sampler.value},
        "accuracy": dict(spec.accuracy.__dict__),
    }


def _template_to_data(p: TemplateParam) -> Any:
    if p.low is not None:
        return {"low": p.low, "high": p.high, "log": p.log}
    return p.choices[0] if len(p.choices) == 1 else list(p.choices)


def _method_to_data(m: MethodVariant) -> Any:
    return m.name if not m.params else {"name": m.name, **dict(m.params)}


def _group_to_data(g: GroupSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"layers": list(g.layers or ())}
    if g.name is not None:
        out["name"] = g.name
    for key in ("weight", "act", "kv"):
        value = getattr(g, key)
        if value is not None:
            out[key] = list(value)
    if g.methods is not None:
        out["methods"] = [_method_to_data(m) for m in g.methods]
    return out
