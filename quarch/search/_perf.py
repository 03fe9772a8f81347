"""The performance of a design: its `quarch.perf.Plan`, priced by `quarch.perf.predict`.

A design gives each layer its formats: the weight option of its attention and of its MLP (for a
mixture-of-experts layer the MLP option covers the experts and the shared experts, as the
design's rules quantize every linear layer of the MLP module, and the router where it is one of
them; transformers >= 5 routers are not, and stay at the serving dtype), the format of the
activations entering its linear layers, and of its KV cache; a weight option's method may add
an `Overhead` (LQER's low-rank GEMMs), declared in the method registry. `PerfModel` maps a
design to the `Plan` saying exactly that and calls `predict` once per scenario; `PerfMetrics`
is the search's view of the `Prediction`, read from its fields (no time, energy or cost formula
lives here).

"float" is priced at the study's serving dtype, and so are the tensors a design never
quantizes: the embedding, the final norm and LM head (the scenario's formats), and the residual
stream between the blocks.

Against the earlier per-combination assembly (uniform predictions mixed by layer share), the
numbers are equal (within float rounding) for pp = 1 and tp = 1, except for two terms that it
got slightly wrong: the final norm's weights are at the serving dtype (they were at the
layers' mean activation format), and the activation peak keeps the residual stream at the
serving dtype (it was the largest peak over the per-combination predictions, each with every
activation at the combination's format). Where they differ on purpose:

- pp > 1: each stage's memory counts its own layers (it was the layer-average stage).
- tp > 1: LQER's factors shard like their layer: a column-parallel layer keeps A `[in, r]`
  whole and splits B `[r, out/tp]`, a row-parallel one splits A `[in/tp, r]` and keeps B whole
  (both factors were split `tp` ways, and the GEMMs priced as if column-parallel).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from quarch.hardware import Hardware, load_hardware
from quarch.models import ModelSpec
from quarch.perf import LayerPlan, Plan, Prediction, predict
from quarch.search._layout import MLP
from quarch.search._space import HW_DEVICE, Design, DesignSpace
from quarch.search._study import FLOAT, ScenarioSpec, template_hardware


@dataclass(frozen=True, kw_only=True)
class PerfMetrics:
    """Predicted costs of one design at one scenario (seconds, bytes, joules, dollars)."""

    ttft_s: float
    tpot_s: float
    e2e_latency_s: float
    memory_bytes: float
    weight_bytes: float
    weight_scale_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    capacity_bytes: float
    fits: bool
    energy_per_token_j: float
    cost_per_million_tokens_usd: float | None
    memory_level: str
    prefill_flops: float  # whole pass, per device, all ops
    prefill_bytes: float
    decode_flops: float  # one mean decode step
    decode_bytes: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def metrics_of(p: Prediction, hw: Hardware) -> PerfMetrics:
    """The search's view of a prediction."""
    m = p.memory
    prefill_flops, prefill_bytes = p.work("prefill")
    decode_flops, decode_bytes = p.work("decode")
    return PerfMetrics(
        ttft_s=p.ttft_s,
        tpot_s=p.tpot_s,
        e2e_latency_s=p.e2e_latency_s,
        memory_bytes=m.total_bytes,
        weight_bytes=m.weight_bytes,
        weight_scale_bytes=m.weight_scale_bytes,
        kv_cache_bytes=m.kv_cache_bytes,
        activation_bytes=m.activation_bytes,
        capacity_bytes=p.memory_capacity_bytes,
        fits=p.fits,
        energy_per_token_j=p.energy_per_token_j,
        cost_per_million_tokens_usd=p.cost_per_million_tokens_usd,
        memory_level=hw.memory[p.memory_level].name,
        prefill_flops=prefill_flops,
        prefill_bytes=prefill_bytes,
        decode_flops=decode_flops,
        decode_bytes=decode_bytes,
    )


class PerfModel:
    """Predicts every scenario of a study for designs of a space (see the module doc)."""

    def __init__(
        self,
        space: DesignSpace,
        spec: ModelSpec,
        scenarios: tuple[ScenarioSpec, ...],
    ) -> None:
        if spec.num_layers != space.layout.num_layers:
            raise ValueError(
                f"model spec {spec.name} has {spec.num_layers} layers, the loaded model "
                f"{space.layout.num_layers}"
            )
        if spec.mla is not None:
            _check_no_kv_choice(space, spec)
        self.space = space
        self.spec = spec
        self.scenarios = scenarios
        # a router is quantized with its MLP only where it is a linear layer of the model
        # (transformers >= 5 routers are not `nn.Linear`); otherwise it stays at serving dtype
        self._router = None if _has_linear_router(space) else space.serving_dtype
        self._layer_plans: dict[tuple[str, str, str, str], LayerPlan] = {}
        serving = space.serving_dtype
        self._scenarios = {
            s.name: replace(s.serving, weight_format=serving, act_format=serving, kv_format=serving)
            for s in scenarios
        }
        ref = self.reference_hardware()
        for scenario in self._scenarios.values():  # fail early on parallelism the model cannot take
            predict(spec, ref, scenario)

    def reference_hardware(self) -> Hardware:
        return self.hardware(Design.of(self.space.reference_hardware()[0]))

    def hardware(self, design: Design) -> Hardware:
        values = self.space.hardware_values(design)
        return _hardware(
            tuple(sorted((k, _hashable(v)) for k, v in values.items())),
            self.space.hardware.template is not None,
            self.space.hardware.price_per_hour_usd,
        )

    def plan(self, design: Design) -> Plan:
        """The design's formats and method overheads, layer by layer."""
        return Plan.of(self._layer_plan(row) for row in self.space.layer_choices(design))

    def evaluate(self, design: Design) -> dict[str, PerfMetrics]:
        """Metrics per scenario name."""
        hw = self.hardware(design)
        plan = self.plan(design)
        return {
            name: metrics_of(predict(self.spec, hw, scenario, plan, engine=self.space.engine), hw)
            for name, scenario in self._scenarios.items()
        }

    def _layer_plan(self, row: tuple[str, str, str, str]) -> LayerPlan:
        found = self._layer_plans.get(row)
        if found is None:
            found = self._layer_plans[row] = _layer_plan(self.space, row, self._router)
        return found


def _check_no_kv_choice(space: DesignSpace, spec: ModelSpec) -> None:
    """MLA caches a latent; the accuracy side quantizes K/V per head after RoPE (transformers'
    attention interface sees the rebuilt keys and values), which is not the cache the
    performance model prices, so an MLA study keeps its KV cache float."""
    for g in space.groups:
        if any(kv != FLOAT for kv in g.kv):
            raise ValueError(
                f"space.kv: {list(g.kv)} for group {g.name} of {spec.name}, a multi-head latent "
                "attention model: KV-cache formats are not supported on MLA (its latent cache "
                "is not what the accuracy side quantizes); use kv: [float]"
            )


def _has_linear_router(space: DesignSpace) -> bool:
    return any(
        li.part == MLP and li.name.rsplit(".", 1)[-1] in ("gate", "router")
        for layer in space.layout.linears
        for li in layer
    )


def _layer_plan(
    space: DesignSpace, row: tuple[str, str, str, str], router: str | None
) -> LayerPlan:
    """(attention option, MLP option, act choice, KV choice) -> the layer's plan."""
    wa, wm, act, kv = row
    opts, fmt = space.options, space.perf_format
    return LayerPlan(
        attn=fmt(wa),
        mlp=fmt(wm),
        router=router,
        act=fmt(act),
        kv=fmt(kv),
        attn_overhead=opts[wa].overhead,
        mlp_overhead=opts[wm].overhead,
    )


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    return v


@lru_cache(maxsize=512)
def _hardware(values: tuple[tuple[str, Any], ...], template: bool, price: float | None) -> Hardware:
    d = dict(values)
    if template:
        from quarch.search._study import TemplateParam

        params = [TemplateParam(name=k, choices=(v,)) for k, v in d.items()]
        d = {k: dict(v) if k == "format_multipliers" else v for k, v in d.items()}
        hw = template_hardware(params, d)
    else:
        hw = load_hardware(d["device"])
    if price is not None:
        hw = replace(hw, price_per_hour_usd=price)
    return hw


__all__ = ["HW_DEVICE", "PerfMetrics", "PerfModel", "metrics_of"]
