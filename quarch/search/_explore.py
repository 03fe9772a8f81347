"""`explore`: a whole study, from the model to the front and the report.

1. Load the model; read its layout and (from its config, or the catalog) its `ModelSpec`.
2. The proxy table (`_proxy`), loaded from the output directory when it is there.
3. The float model and every uniform baseline measured for real on the eval windows (cached in
   `measured.json`); the proxy's α fitted on the baselines.
4. The search (`_runner`), resumed from the study's storage.
5. The proxy front (feasible, non-dominated among trials and baselines); up to
   `max_final_points` of it, evenly spread, measured for real; the final front is the
   non-dominated set of every measured design on measured perplexity. The proxy's error on
   the measured front points is reported.
6. Outputs: `result.json` (the `StudyResult`, everything the report reads), `front.csv`,
   `front.json`, `points.json`, one QuantConfig YAML per front point in `configs/` and
   `study.yaml` (the resolved study). The report is drawn from `result.json` by
   `quarch.report`, which this package never imports.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from quarch._atomic import writable_dir, write_yaml
from quarch.search._accuracy import AccuracyLab, Measured
from quarch.search._collect import collect
from quarch.search._dashboard import attach_measured
from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._metrics import Metric
from quarch.search._outputs import prune_configs, write_configs, write_tables
from quarch.search._pareto import pareto_indices, spread
from quarch.search._perf import PerfModel
from quarch.search._progress import Progress
from quarch.search._proxy import ProxyTable, build_table
from quarch.search._result import StudyResult, write_json_atomic
from quarch.search._runner import COMPLETE, EvaluateFn, run_search
from quarch.search._space import Design, DesignSpace, build_space
from quarch.search._storage_policy import check_storage
from quarch.search._study import FLOAT, StudySpec

DEFAULT_OUT = Path("quarch-out/explore")


@dataclass(kw_only=True)
class Point:
    """One evaluated design: a trial or a baseline, with its proxy and (if measured) real scores."""

    name: str
    design: Design
    proxy: Evaluation
    baseline: bool = False
    trial: int | None = None
    measured: Measured | None = None
    final: Evaluation | None = None

    @property
    def key(self) -> str:
        return self.design.key

    @property
    def best(self) -> Evaluation:
        """The measured evaluation when there is one, else the proxy's."""
        return self.final if self.final is not None else self.proxy


def load_study_model(source: str, *, device: str = "cpu", dtype: str | None = None) -> Any:
    """The `LoadedModel` of a study's `model` field, on `device` in `dtype` (None: bfloat16 on
    GPUs, float32 on the CPU; see `quarch._device`)."""
    from quarch._device import device_and_dtype
    from quarch.models import TINY_MODELS, load_model, tiny_model, unfuse_experts

    dev, torch_dtype = device_and_dtype(device, dtype)
    if source == "shipped":
        return load_model(dtype=torch_dtype, device=dev)
    if source in TINY_MODELS:
        tiny = tiny_model(source, seed=0, dtype=torch_dtype)
        tiny.model.to(dev)
        return tiny
    loaded = load_model(source, dtype=torch_dtype, device=dev)
    unfuse_experts(loaded.model)  # MoE: routed experts as linear layers (see search/_layout)
    return loaded


def _model_id(loaded: Any, lab: AccuracyLab) -> str:
    import hashlib

    first = lab.layout.linears[0][0].name
    w = loaded.model.get_submodule(first).weight.detach().float().cpu().contiguous()
    digest = hashlib.sha1(w.numpy().tobytes()).hexdigest()[:12]
    return f"{loaded.source}#{digest}"


def _model_spec(spec: StudySpec, loaded: Any) -> Any:
    from quarch.models import load_model_spec, spec_from_hf_config

    if spec.model_spec is not None:
        return load_model_spec(spec.model_spec)
    config = loaded.model.config.to_dict()
    from quarch.models import TINY_MODELS

    name = spec.model if spec.model in TINY_MODELS else Path(str(loaded.source)).stem
    return spec_from_hf_config(config, name=name, source=str(loaded.source))


@dataclass
class _Context:
    spec: StudySpec
    out: Path
    lab: AccuracyLab
    space: DesignSpace
    perf: PerfModel
    proxy: ProxyTable
    model_name: str
    measured: dict[str, Measured]

    def measure(self, design: Design) -> Measured:
        found = self.measured.get(design.key)
        if found is None:
            found = self.lab.measure(self.space, design)
            self.measured[design.key] = found
            write_json_atomic(
                self.out / "measured.json",
                {k: {**m.to_dict()} for k, m in self.measured.items()},
            )
        return found


def _load_measured(path: Path, lab: AccuracyLab) -> dict[str, Measured]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    w = lab.eval_windows
    out = {}
    for key, m in data.items():
        same = m.get("num_windows") == w.shape[0] and m.get("seqlen") == w.shape[1]
        if same and len(m.get("window_nll", ())) == w.shape[0]:  # older files lack windows
            out[key] = Measured.from_dict(m)
    return out


def prepare(
    spec: StudySpec,
    out_dir: Path,
    progress: Progress,
    *,
    device: str = "cpu",
    dtype: str | None = None,
) -> _Context:
    """Steps 1-3: model, space, performance model, proxy table, float and baselines measured."""
    writable_dir(out_dir)
    if not (out_dir / "study.yaml").exists():  # replaced once the stored study accepts `spec`
        write_yaml(out_dir / "study.yaml", spec.to_dict())
    with progress.stage("loading the model"):
        loaded = load_study_model(spec.model, device=device, dtype=dtype)
        lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
        model_spec = _model_spec(spec, loaded)
        space = build_space(spec, lab.layout)
        perf = PerfModel(space, model_spec, spec.scenarios)
    model_id = _model_id(loaded, lab)
    table_path = out_dir / "sensitivity.json"
    with progress.stage("sensitivity table") as update:
        table = build_table(
            lab,
            space,
            table_path,
            model_id=model_id,
            signal=spec.accuracy.proxy_signal,
            progress=update,
        )
    ctx = _Context(
        spec,
        out_dir,
        lab,
        space,
        perf,
        table,
        model_spec.name,
        _load_measured(out_dir / "measured.json", lab),
    )
    baselines = space.baselines()
    with progress.stage("baselines (real perplexity)", len(baselines)) as update:
        float_design = baselines[0][1]
        table.eval_float_nll = ctx.measure(float_design).nll
        pairs = []
        for i, (name, design) in enumerate(baselines):
            update(i, len(baselines), name)
            pairs.append((design, ctx.measure(design).nll))
        update(len(baselines), len(baselines))
        table.fit_alpha(pairs)
        table.save(table_path)
    return ctx


def explore(
    spec: StudySpec,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    workers: int = 1,
    progress: bool = True,
    evaluate: EvaluateFn | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    trusted_storage: bool = False,
) -> StudyResult:
    """Run (or resume) a study end to end, write its outputs and return its result (see the
    module doc). `quarch.report.write_report` draws the report from the result.

    Args:
        spec: the study.
        out_dir: where the storage, caches, configs and `result.json` go.
        workers: parallel search processes on this machine.
        progress: show progress bars and stage times on stderr.
        evaluate: replaces the proxy evaluation of search trials (a hook for other fidelities).
        device, dtype: where the model is measured (`cpu`, `cuda[:N]`, `mps`) and its weight
            dtype (None: bfloat16 on GPUs, float32 on the CPU).
        trusted_storage: use `spec.search.storage` even outside `out_dir` (the caller chose
            it; a study file's own storage must lie inside, see `_storage_policy`).
    """
    out = Path(out_dir)
    check_storage(spec.search.storage, out, trusted=trusted_storage)
    prog = Progress(progress)
    ctx = prepare(spec, out, prog, device=device, dtype=dtype)
    evaluator = Evaluator(ctx.space, ctx.proxy, ctx.perf, spec.objectives, spec.constraints)
    url = spec.search.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with prog.stage(f"search ({spec.search.sampler.value})", spec.search.trials) as update:
        study = run_search(
            name=spec.name,
            url=url,
            settings=spec.search,
            space=ctx.space,
            evaluator=evaluator,
            seeds=ctx.space.baselines(),
            workers=workers,
            progress=update,
            evaluate=evaluate,
        )
    write_yaml(out / "study.yaml", spec.to_dict())  # the stored study accepted this spec
    with prog.stage("scoring the stored trials"):
        points = _points(ctx, evaluator, study)
    proxy_front = _proxy_front(points, spec)
    with prog.stage("measuring the front (real perplexity)", len(proxy_front)) as update:
        for i, p in enumerate(proxy_front):
            update(i, len(proxy_front), p.name)
            _finalise(ctx, evaluator, p)
        # for optuna-dashboard: every trial of a measured design carries its real perplexity
        attach_measured(study, {key: m.nll for key, m in ctx.measured.items()})
    front = _final_front(points)
    with prog.stage("writing outputs"):
        configs = write_configs(spec, ctx.space, ctx.model_name, front, out)
        result = collect(
            spec=spec,
            space=ctx.space,
            perf=ctx.perf,
            proxy=ctx.proxy,
            model_name=ctx.model_name,
            points=points,
            front=front,
            proxy_front=proxy_front,
            configs=configs,
            trials=len(study.get_trials(deepcopy=False, states=COMPLETE)),
            proxy_error=proxy_error(proxy_front),
            eval_info=_eval_info(ctx),
            timings=prog.timings,
        ).with_out_dir(out)
        write_tables(result, out)
    result = replace(result, timings=dict(prog.timings))
    result.save(out)
    prune_configs(out, configs)  # after result.json names the new front's configs
    return result


def _points(ctx: _Context, evaluator: Evaluator, study: Any) -> list[Point]:
    points: dict[str, Point] = {}
    for name, design in ctx.space.baselines():
        p = Point(name=name, design=design, proxy=evaluator.evaluate(design), baseline=True)
        _finalise(ctx, evaluator, p)
        points[design.key] = p
    for t in study.get_trials(deepcopy=False, states=COMPLETE):
        design = ctx.space.design(dict(t.params))
        if design.key in points:
            if points[design.key].trial is None:
                points[design.key].trial = t.number
            continue
        ev = evaluator.evaluate(design)
        points[design.key] = Point(name=f"t{t.number}", design=design, proxy=ev, trial=t.number)
    return list(points.values())


def _finalise(ctx: _Context, evaluator: Evaluator, p: Point) -> None:
    if p.final is None:
        p.measured = ctx.measure(p.design)
        p.final = evaluator.evaluate(p.design, nll=p.measured.nll)


def _cost_key(spec: StudySpec) -> str:
    """The first objective that is not perplexity: the axis front points are spread along."""
    return next(o.key for o in spec.objectives if o.metric is not Metric.PPL)


def _proxy_front(points: list[Point], spec: StudySpec) -> list[Point]:
    feasible = [p for p in points if p.proxy.feasible]
    idx = pareto_indices([p.proxy.values for p in feasible])
    key = _cost_key(spec)
    along = [float(p.proxy.metrics[key] or 0.0) for p in feasible]
    chosen = spread(idx, along, spec.accuracy.max_final_points)
    return [feasible[i] for i in chosen]


def _final_front(points: list[Point]) -> list[Point]:
    measured = [p for p in points if p.final is not None and p.final.feasible]
    idx = pareto_indices([p.best.values for p in measured])
    front = [measured[i] for i in idx]
    return sorted(front, key=lambda p: p.best.metrics["bits"] or 0.0)


def proxy_error(points: list[Point]) -> dict[str, float]:
    """Relative error of the proxy perplexity against the measured one on `points`."""
    errs = []
    for p in points:
        if p.final is None or all(v == FLOAT for k, v in p.design.items if not k.startswith("hw")):
            continue
        real = float(p.final.metrics["ppl"] or 0.0)
        errs.append(abs(float(p.proxy.metrics["ppl"] or 0.0) - real) / real)
    if not errs:
        return {"points": 0.0, "mean_abs_rel": math.nan, "max_abs_rel": math.nan}
    return {
        "points": float(len(errs)),
        "mean_abs_rel": sum(errs) / len(errs),
        "max_abs_rel": max(errs),
    }


def _eval_info(ctx: _Context) -> dict[str, Any]:
    lab = ctx.lab
    e, s = lab.eval_windows, lab.sens_windows
    return {
        "eval_text": lab.eval_text.name,
        "eval_text_sha256": lab.eval_text.sha256,
        "eval_seqlen": int(e.shape[1]),
        "eval_windows": int(e.shape[0]),
        "eval_tokens": int(e.shape[0] * (e.shape[1] - 1)),
        "protocol": "gptq-nonoverlap (first N windows)",
        "sensitivity_text": lab.calib_text.name,
        "sensitivity_seqlen": int(s.shape[1]),
        "sensitivity_windows": int(s.shape[0]),
        "sensitivity_entries": len(ctx.proxy.entries),
        "alpha": dict(ctx.proxy.alpha),
        "signal": ctx.proxy.signal,
        "float_ppl": math.exp(ctx.proxy.eval_float_nll or 0.0),
        "weight_cache_hits": lab.cache.hits,
        "weight_cache_misses": lab.cache.misses,
    }
