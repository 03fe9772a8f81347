"""A study: what to search, on which model and hardware, for which objectives, under which limits.

A `StudySpec` is read from YAML (`load_study(path)`, through quarch's bounded safe YAML
reader) or a mapping (`study_from_dict`), or built in Python; `default_study()` is what
`quarch explore` runs with no file. Every field is validated when read, and an error names the
field by its dotted path (`space.groups[1].weight[2]`) and, for closed choices, the valid values.
Unknown keys are errors.

The YAML form, with the defaults:

```yaml
name: explore                  # the Optuna study name
model: shipped                 # shipped | tiny-llama | tiny-moe | tiny-mla | GGUF | HF dir | hub id
model_spec: null               # catalog model for the perf model (default: the model's config)
serving_dtype: bf16            # the format float tensors are served in by the performance model
engine: ideal                  # serving engine (quarch/perf/engines): its costs in the perf model,
                               # its fused groups and kernel table constrain the designs
hardware:
  devices: [h100-sxm]          # catalog names or YAML paths; or `template:` (not both)
  template: null               # accelerator() params: a value, a list of choices, {low, high, log}
  price_per_hour_usd: null     # overrides every device's price ($ per device-hour)
scenarios:
  - {name: serve, batch: 8, prompt_len: 512, output_len: 128, tp: 1, pp: 1, ep: 1, dp: 1}
space:
  groups: 3                    # N equal runs of layers, or a list of "a-b" / {layers, name, ...}
  split_attn_mlp: true         # attention and MLP weights of a group choose separately
  weight: [float, fp8_e4m3, int4_g128, nvfp4]
  act: [float, fp8_e4m3_c]
  kv: [float, fp8_e4m3]
  methods: [rtn]               # or {name: lqer, rank: [8, 32]}: every listed value is a choice
objectives: [ppl, tpot, memory]   # ppl, bits, tpot, ttft, memory, energy, cost; `tpot@serve`
constraints: {fits_memory: true, tpot_slo_s: null, ppl_max_increase: null}
search: {sampler: nsga2, trials: 200, seed: 0, population: 40, storage: null}
# sampler: nsga2 | nsga3 | gp | tpe | random | grid | exact (the additive proxy's exact front)
accuracy:
  text: builtin                # builtin (quarch.eval's corpus) or a text file path
  eval_seqlen: 256             # final perplexity: GPTQ protocol on the eval part ...
  eval_windows: 4              # ... first N windows (95 % intervals over them)
  sensitivity_seqlen: 128      # the proxy table: windows of the calibration part
  sensitivity_windows: 2
  calib_seqlen: 256            # calibration windows for GPTQ / AWQ / SmoothQuant / LQER
  calib_windows: 16
  seed: 0
  max_final_points: 6          # front points measured for real (evenly spread when more)
  proxy_signal: kl             # kl | nll: the per-slot cost the proxy sums (see _proxy)
```
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quarch._checks import excerpt
from quarch._yaml import load_yaml_file
from quarch.search._fields import Fields, check_float, check_int
from quarch.search._study import (
    FLOAT,
    SERVING,
    AccuracySettings,
    Constraints,
    GroupSpec,
    HardwareSpec,
    MethodVariant,
    Metric,
    Objective,
    Sampler,
    ScenarioSpec,
    SearchSettings,
    SpaceSpec,
    StudySpec,
    TemplateParam,
    template_hardware,
)


def read_study_file(path: str | Path) -> dict[str, Any]:
    """The mapping a study YAML file holds ({} for an empty file), read with quarch's bounded
    YAML reader (size, alias expansion and errors that never echo the file's text).

    Raises:
        ValueError: a missing, oversized or malformed file.
        TypeError: a file that holds something other than a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"study file {str(p)!r} does not exist")
    data = load_yaml_file(p, where=f"study file {str(p)!r}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TypeError(f"{p}: a study file must hold a mapping, not {type(data).__name__}")
    return data


def load_study(path: str | Path) -> StudySpec:
    """Read a study YAML file (see the module doc). Raises ValueError/TypeError naming the field."""
    data = read_study_file(path)
    try:
        return study_from_dict(data)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{path}: {err}") from err


def study_from_dict(data: Mapping[str, Any]) -> StudySpec:
    """A `StudySpec` from the YAML form; every field is checked (see the module doc)."""
    f = Fields(data, "")
    name = f.take_str("name", "explore")
    model = f.take_str("model", "shipped")
    model_spec = f.take("model_spec", None)
    if model_spec is not None and not isinstance(model_spec, str):
        raise TypeError(f"model_spec: expected a catalog model name, got {model_spec!r}")
    serving = _format(f.take_str("serving_dtype", "bf16"), "serving_dtype")
    engine = _engine(f.take_str("engine", "ideal"))
    hardware = _hardware(f.take("hardware", None))
    scenarios = _scenarios(f.take("scenarios", None))
    space = _space(f.take("space", None))
    names = tuple(s.name for s in scenarios)
    objectives = _objectives(f.take("objectives", None), names)
    constraints = _constraints(f.take("constraints", None))
    search = _search(f.take("search", None))
    accuracy = _accuracy(f.take("accuracy", None))
    f.done()
    ranges = [p.name for p in hardware.template or () if p.low is not None]
    if search.sampler in (Sampler.GRID, Sampler.EXACT) and ranges:
        raise ValueError(
            f"search.sampler: {search.sampler.value} cannot sample hardware.template ranges "
            f"{ranges}"
        )
    if any(o.metric is Metric.COST for o in objectives):
        _check_priced(hardware)
    return StudySpec(
        name=name,
        model=model,
        model_spec=model_spec,
        serving_dtype=serving,
        engine=engine,
        hardware=hardware,
        scenarios=scenarios,
        space=space,
        objectives=objectives,
        constraints=constraints,
        search=search,
        accuracy=accuracy,
    )


def _engine(name: str) -> str:
    from quarch.perf import load_engine

    try:
        load_engine(name)
    except (ValueError, TypeError) as err:
        raise ValueError(f"engine: {err}") from None
    return name


def _format(text: object, where: str) -> str:
    from quarch.formats import Format

    if not isinstance(text, str):
        raise TypeError(f"{where}: expected a format string, got {text!r}")
    try:
        Format.parse(text)
    except ValueError as err:
        raise ValueError(f"{where}: unknown format {text!r}: {err}") from None
    return text


def _choices(values: list[Any], where: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(values):
        if v is None or v == FLOAT:
            out.append(FLOAT)
            continue
        out.append(_format(v, f"{where}[{i}]"))
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: duplicate choices in {out}")
    return tuple(out)


def _hardware(data: object) -> HardwareSpec:
    f = Fields(data, "hardware")
    has_devices, has_template = f.has("devices"), f.has("template")
    devices = f.take_list("devices", ["h100-sxm"])
    template = f.take("template", None)
    price = f.take_opt_float("price_per_hour_usd")
    f.done()
    if has_devices and has_template and template is not None:
        raise ValueError("hardware: give either devices or template, not both")
    if template is not None:
        return HardwareSpec(devices=(), template=_template(template), price_per_hour_usd=price)
    from quarch.hardware import load_hardware

    for i, name in enumerate(devices):
        if not isinstance(name, str):
            raise TypeError(f"hardware.devices[{i}]: expected a device name, got {name!r}")
        try:
            load_hardware(name)
        except (ValueError, OSError) as err:
            raise ValueError(f"hardware.devices[{i}]: {err}") from None
    if len(set(devices)) != len(devices):
        raise ValueError(f"hardware.devices: duplicate devices in {devices}")
    return HardwareSpec(devices=tuple(devices), price_per_hour_usd=price)


def _template_params() -> dict[str, Any]:
    import inspect

    from quarch.hardware import accelerator

    sig = inspect.signature(accelerator)
    return {n: p for n, p in sig.parameters.items() if n not in ("interconnect", "name")}


_INT_PARAMS = ("systolic_rows", "systolic_cols", "num_arrays", "memory_stacks_or_channels")
_STR_PARAMS = ("memory_tech",)


def _template(data: object) -> tuple[TemplateParam, ...]:
    valid = _template_params()
    f = Fields(data, "hardware.template")
    params = []
    for name in list(valid):
        if not f.has(name):
            f.take(name, None)
            continue
        params.append(_template_param(name, f.take(name), f.where(name)))
    f.done()
    given = {p.name for p in params}
    required = [n for n, p in valid.items() if p.default is p.empty and n not in given]
    if required:
        raise ValueError(f"hardware.template: missing required parameter(s) {required}")
    out = tuple(params)
    template_hardware(out, {p.name: p.reference for p in out})  # the reference design builds
    return out


def _template_param(name: str, value: object, where: str) -> TemplateParam:
    integer = name in _INT_PARAMS
    if name == "format_multipliers":
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: expected a mapping format -> multiplier, got {value!r}")
        return TemplateParam(name=name, choices=(dict(value),))
    if isinstance(value, Mapping):
        r = Fields(value, where)
        low = check_float(r.where("low"), r.take("low"))
        high = check_float(r.where("high"), r.take("high"))
        log = r.take_bool("log", False)
        r.done()
        if name in _STR_PARAMS:
            raise ValueError(f"{where}: {name} takes a list of choices, not a range")
        if low > high:
            raise ValueError(f"{where}: low={low:g} is above high={high:g}")
        if integer and (low != int(low) or high != int(high)):
            raise ValueError(f"{where}: {name} is an integer; give integer low/high")
        return TemplateParam(name=name, low=low, high=high, log=log, integer=integer)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"{where}: must not be empty")
    out: list[Any] = []
    for i, v in enumerate(values):
        w = f"{where}[{i}]" if isinstance(value, list) else where
        if name in _STR_PARAMS:
            if not isinstance(v, str):
                raise TypeError(f"{w}: expected a string, got {v!r}")
            out.append(v)
        elif integer:
            out.append(check_int(w, v))
        else:
            out.append(check_float(w, v))
    if len(set(map(str, out))) != len(out):
        raise ValueError(f"{where}: duplicate choices in {out}")
    return TemplateParam(name=name, choices=tuple(out), integer=integer)


def _check_priced(hw: HardwareSpec) -> None:
    if hw.price_per_hour_usd is not None:
        return
    if hw.template is not None:
        if not any(p.name == "price_per_hour_usd" for p in hw.template):
            raise ValueError(
                "objectives: cost needs a price; set hardware.price_per_hour_usd or "
                "hardware.template.price_per_hour_usd"
            )
        return
    from quarch.hardware import load_hardware

    unpriced = [d for d in hw.devices if load_hardware(d).price_per_hour_usd is None]
    if unpriced:
        raise ValueError(
            f"objectives: cost needs a price, and {unpriced} have none in the catalog; "
            "set hardware.price_per_hour_usd"
        )


def _scenarios(data: object) -> tuple[ScenarioSpec, ...]:
    if data is None:
        return (ScenarioSpec(name="serve"),)
    if not isinstance(data, list) or not data:
        raise TypeError(f"scenarios: expected a non-empty list of mappings, got {data!r}")
    out = []
    for i, item in enumerate(data):
        f = Fields(item, f"scenarios[{i}]")
        name = f.take_str("name", "serve" if len(data) == 1 else f"s{i}")
        if "@" in name:
            raise ValueError(f"scenarios[{i}].name: must not contain '@', got {name!r}")
        values: dict[str, Any] = {k: f.take_int(k, d) for k, d in SERVING.counts().items()}
        f.done()
        try:
            serving = dataclasses.replace(SERVING, **values)
        except ValueError as err:
            raise ValueError(f"scenarios[{i}]: {err}") from None
        out.append(ScenarioSpec(name=name, serving=serving))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"scenarios: duplicate names in {names}")
    return tuple(out)


def _methods(values: list[Any], where: str) -> tuple[MethodVariant, ...]:
    from quarch.quant import get_method

    out: list[MethodVariant] = []
    for i, item in enumerate(values):
        w = f"{where}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        f = Fields(item, w)
        name = f.take_str("name")
        try:
            method = get_method(name)
        except ValueError as err:
            raise ValueError(f"{w}.name: {err}") from None
        grids: dict[str, list[Any]] = {}
        for pname in method.params:
            if f.has(pname):
                grids[pname] = f.take_list(pname)
            else:
                f.take(pname, None)
        f.done()
        keys = sorted(grids)
        for combo in itertools.product(*(grids[k] for k in keys)):
            params = dict(zip(keys, combo, strict=True))
            try:
                method.resolve_params(params)
            except (ValueError, TypeError) as err:
                raise type(err)(f"{w}: {err}") from None
            out.append(MethodVariant(name=name, params=params))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: duplicate methods {labels}")
    return tuple(out)


def _layers(value: object, where: str) -> tuple[int, ...]:
    """`"a-b"` (inclusive), `[a, b, c]` or a single index."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (check_int(where, value, minimum=0),)
    if isinstance(value, str):
        parts = value.split("-")
        try:
            lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or hi is None or lo < 0 or hi < lo:
            raise ValueError(f"{where}: expected a layer range 'a-b' with a <= b, got {value!r}")
        return tuple(range(lo, hi + 1))
    if isinstance(value, list) and value:
        return tuple(check_int(f"{where}[{i}]", v, minimum=0) for i, v in enumerate(value))
    raise TypeError(f"{where}: expected 'a-b', a list of layer indices or an index, got {value!r}")


def _groups(data: object, where: str) -> int | tuple[GroupSpec, ...]:
    if isinstance(data, int) and not isinstance(data, bool):
        return check_int(where, data)
    if not isinstance(data, list) or not data:
        raise TypeError(f"{where}: expected a number of groups or a list, got {data!r}")
    out = []
    for i, item in enumerate(data):
        w = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            out.append(GroupSpec(layers=_layers(item, w)))
            continue
        f = Fields(item, w)
        name = f.take("name", None)
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ValueError(f"{w}.name: expected a name without dots, got {name!r}")
        layers = _layers(f.take("layers"), f.where("layers"))
        weight = f.take("weight", None)
        act = f.take("act", None)
        kv = f.take("kv", None)
        methods = f.take("methods", None)
        f.done()
        out.append(
            GroupSpec(
                name=name,
                layers=layers,
                weight=None if weight is None else _choices(_listed(weight), f"{w}.weight"),
                act=None if act is None else _choices(_listed(act), f"{w}.act"),
                kv=None if kv is None else _choices(_listed(kv), f"{w}.kv"),
                methods=None if methods is None else _methods(_listed(methods), f"{w}.methods"),
            )
        )
    return tuple(out)


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _space(data: object) -> SpaceSpec:
    d = SpaceSpec()
    f = Fields(data, "space")
    groups = _groups(f.take("groups", d.groups), "space.groups")
    split = f.take_bool("split_attn_mlp", d.split_attn_mlp)
    weight = _choices(f.take_list("weight", list(d.weight)), "space.weight")
    act = _choices(f.take_list("act", list(d.act)), "space.act")
    kv = _choices(f.take_list("kv", list(d.kv)), "space.kv")
    methods = _methods(f.take_list("methods", ["rtn"]), "space.methods")
    f.done()
    return SpaceSpec(
        groups=groups, split_attn_mlp=split, weight=weight, act=act, kv=kv, methods=methods
    )


def _objectives(data: object, scenarios: tuple[str, ...]) -> tuple[Objective, ...]:
    if data is None:
        data = ["ppl", "tpot", "memory"]
    if not isinstance(data, list) or not data:
        raise TypeError(f"objectives: expected a non-empty list, got {data!r}")
    out = []
    valid = ", ".join(m.value for m in Metric)
    for i, item in enumerate(data):
        w = f"objectives[{i}]"
        if not isinstance(item, str):
            raise TypeError(f"{w}: expected a metric name such as 'tpot@serve', got {item!r}")
        name, _, scen = item.partition("@")
        try:
            metric = Metric(name)
        except ValueError:
            raise ValueError(f"{w}: unknown metric {name!r}; valid: {valid}") from None
        if not metric.per_scenario:
            if scen:
                raise ValueError(f"{w}: {metric} does not depend on a scenario; drop '@{scen}'")
            out.append(Objective(metric=metric))
            continue
        if scen and scen not in scenarios:
            raise ValueError(f"{w}: unknown scenario {scen!r}; scenarios: {', '.join(scenarios)}")
        out.append(Objective(metric=metric, scenario=scen or scenarios[0]))
    keys = [o.key for o in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"objectives: duplicates in {keys}")
    if not any(o.metric is Metric.PPL for o in out):
        raise ValueError("objectives: must include ppl (the accuracy side of the front)")
    if len(out) < 2:
        raise ValueError("objectives: need ppl and at least one cost (bits, tpot, memory, ...)")
    return tuple(out)


def _constraints(data: object) -> Constraints:
    f = Fields(data, "constraints")
    fits = f.take_bool("fits_memory", True)
    slo = f.take_opt_float("tpot_slo_s")
    eps = f.take_opt_float("ppl_max_increase", positive=False)
    f.done()
    return Constraints(fits_memory=fits, tpot_slo_s=slo, ppl_max_increase=eps)


def _search(data: object) -> SearchSettings:
    d = SearchSettings()
    f = Fields(data, "search")
    sampler = Sampler(f.take_choice("sampler", tuple(s.value for s in Sampler), d.sampler.value))
    trials = f.take_int("trials", d.trials)
    seed = f.take_int("seed", d.seed, minimum=0)
    if seed >= 2**32:  # numpy's seed range, which Optuna's samplers use
        raise ValueError(f"search.seed: must be below 2**32 = {2**32}, got {excerpt(str(seed))}")
    population = f.take_int("population", d.population, minimum=2)
    storage = f.take("storage", None)
    f.done()
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise ValueError(
            f"search.storage: expected a database URL such as sqlite:///study.db, got {storage!r}"
        )
    return SearchSettings(
        sampler=sampler, trials=trials, seed=seed, population=population, storage=storage
    )


def _accuracy(data: object) -> AccuracySettings:
    d = AccuracySettings()
    f = Fields(data, "accuracy")
    text = f.take_str("text", d.text)
    if text != "builtin" and not Path(text).is_file():
        raise ValueError(f"accuracy.text: {text!r} is neither 'builtin' nor an existing file")
    values: dict[str, int] = {}
    for key in (
        "eval_seqlen",
        "eval_windows",
        "sensitivity_seqlen",
        "sensitivity_windows",
        "calib_seqlen",
        "calib_windows",
        "max_final_points",
    ):
        values[key] = f.take_int(key, getattr(d, key), minimum=2 if "seqlen" in key else 1)
    seed = f.take_int("seed", d.seed, minimum=0)
    signal = f.take_choice("proxy_signal", ("kl", "nll"), d.proxy_signal)
    f.done()
    return AccuracySettings(text=text, seed=seed, proxy_signal=signal, **values)
