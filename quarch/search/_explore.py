"""`explore`: a whole study, from the model to the front and the report.

1. Load the model; read its layout and (from its config, or the catalog) its `ModelSpec`.
2. The proxy table (`_proxy`): its cells read from the study's storage or measured.
3. The float model and every uniform baseline measured for real on the eval windows (or read
   from the study's storage); the proxy's α fitted on the baselines.
4. The search (`_runner`), resumed from the study's storage.
5. The proxy front (feasible, non-dominated among trials and baselines); up to
   `max_final_points` of it, evenly spread, measured for real; the final front is the
   non-dominated set of every measured design on measured perplexity. The proxy's error on
   the measured front points is reported.
   Steps 2, 3 and 5 run their model-bound work on an executor (this process by default, or
   Ray actors: `_executor`, `_ray`) and keep every result in the study's storage (`_stored`,
   `_stages`): a second machine or a re-run on the same storage reuses them and says so.
6. Outputs: `result.json` (the `StudyResult`, everything the report reads), `front.csv`,
   `front.json`, `points.json`, one QuantConfig YAML per front point in `configs/` and
   `study.yaml` (the resolved study). The report is drawn from `result.json` by
   `quarch.report`, which this package never imports.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from quarch._atomic import writable_dir, write_yaml
from quarch.search._accuracy import AccuracyLab, Measured
from quarch.search._collect import collect
from quarch.search._dashboard import attach_measured
from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._executor import (
    Executor,
    ExecutorKind,
    LocalExecutor,
    StageWorker,
    executor_kind,
    model_fingerprint,
)
from quarch.search._metrics import Metric
from quarch.search._outputs import prune_configs, write_configs, write_tables
from quarch.search._pareto import pareto_indices, spread
from quarch.search._perf import PerfModel
from quarch.search._progress import Progress
from quarch.search._proxy import ProxyTable
from quarch.search._result import StudyResult, write_json_atomic
from quarch.search._runner import COMPLETE, EvaluateFn, run_search, storage
from quarch.search._space import Design, DesignSpace, build_space
from quarch.search._stages import StageCount, measure_stage, sensitivity_stage
from quarch.search._storage_policy import check_storage
from quarch.search._stored import ResultStore
from quarch.search._study import FLOAT, StudySpec

DEFAULT_OUT = Path("quarch-out/explore")

log = logging.getLogger("quarch.search")


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


def study_url(spec: StudySpec, out_dir: Path) -> str:
    """The study's storage URL: `search.storage`, else an SQLite file in the output directory."""
    return spec.search.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"


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
    model_id: str
    store: ResultStore
    executor: Executor
    progress: Progress
    measured: dict[str, Measured]
    counts: dict[str, StageCount]

    def measure_all(self, stage: str, designs: list[Design], update: Any) -> None:
        """Read or measure every design not measured yet (in parallel on the executor)."""
        missing = [d for d in designs if d.key not in self.measured]
        got, count = measure_stage(
            self.lab,
            self.space,
            missing,
            store=self.store,
            executor=self.executor,
            model_id=self.model_id,
            update=update,
        )
        self.measured.update(got)
        self.count(stage, count, "measured designs")
        if got:
            write_json_atomic(
                self.out / "measured.json",
                {k: {**m.to_dict()} for k, m in self.measured.items()},
            )

    def measure(self, design: Design) -> Measured:
        if design.key not in self.measured:
            self.measure_all("front", [design], lambda *_, **__: None)
        return self.measured[design.key]

    def count(self, stage: str, count: StageCount, what: str) -> None:
        """Add a stage's counts and log them ("reused 42 sensitivity cells from storage")."""
        old = self.counts.get(stage, StageCount(0, 0))
        self.counts[stage] = StageCount(old.reused + count.reused, old.computed + count.computed)
        if count.reused or count.computed:
            message = (
                f"{stage}: reused {count.reused} {what} from storage, "
                f"computed {count.computed} on {self.executor.name} "
                f"({self.executor.workers} worker{'s' if self.executor.workers > 1 else ''})"
            )
            log.info(message)
            self.progress.log(message)


def _check_executor(executor: str, workers: int, address: str | None) -> ExecutorKind:
    """The executor's kind, its settings checked before the model is loaded."""
    kind = executor_kind(executor)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if kind is ExecutorKind.LOCAL and address is not None:
        raise ValueError(f"address {address!r} is for the ray executor only")
    if kind is ExecutorKind.RAY:
        from quarch.search._ray import require_ray

        require_ray()
    return kind


def _executor(
    kind: ExecutorKind, spec: StudySpec, worker: StageWorker, workers: int, address: str | None
) -> Executor:
    if kind is ExecutorKind.LOCAL:
        return LocalExecutor(worker)
    from quarch.search._ray import RayExecutor

    return RayExecutor(spec, workers=workers, address=address, model_id=worker.model_id)


def prepare(
    spec: StudySpec,
    out_dir: Path,
    progress: Progress,
    *,
    executor: str = ExecutorKind.LOCAL.value,
    workers: int = 1,
    address: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
) -> _Context:
    """Steps 1-3: model, space, performance model, proxy table, float and baselines measured.

    executor: where the model-bound work runs (`local`, or `ray` with `workers` actors on the
        Ray cluster at `address`, a local one when None); results are read from and written to
        the study's storage (`study_url`).
    device, dtype: where the model is measured and its weight dtype (`load_study_model`).
    """
    kind = _check_executor(executor, workers, address)
    writable_dir(out_dir)
    if not (out_dir / "study.yaml").exists():  # replaced once the stored study accepts `spec`
        write_yaml(out_dir / "study.yaml", spec.to_dict())
    with progress.stage("loading the model"):
        loaded = load_study_model(spec.model, device=device, dtype=dtype)
        lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
        model_spec = _model_spec(spec, loaded)
        space = build_space(spec, lab.layout)
        perf = PerfModel(space, model_spec, spec.scenarios)
    model_id = model_fingerprint(loaded, lab.layout)
    worker = StageWorker(lab, space, model_id)
    store = ResultStore.for_storage(storage(study_url(spec, out_dir)))
    ctx = _Context(
        spec,
        out_dir,
        lab,
        space,
        perf,
        ProxyTable(meta={}, base_nll=math.nan),
        model_spec.name,
        model_id,
        store,
        _executor(kind, spec, worker, workers, address),
        progress,
        {},
        {},
    )
    try:
        _tables(ctx)
    except BaseException:
        ctx.executor.close()
        raise
    return ctx


def _tables(ctx: _Context) -> None:
    """Steps 2-3 on a context: the sensitivity table, the baselines, α."""
    table_path = ctx.out / "sensitivity.json"
    with ctx.progress.stage("sensitivity table") as update:
        table, count = sensitivity_stage(
            ctx.lab,
            ctx.space,
            store=ctx.store,
            executor=ctx.executor,
            model_id=ctx.model_id,
            signal=ctx.spec.accuracy.proxy_signal,
            update=update,
        )
        ctx.proxy = table
        table.save(table_path)
    ctx.count("sensitivity", count, "sensitivity cells")
    baselines = ctx.space.baselines()
    with ctx.progress.stage("baselines (real perplexity)", len(baselines)) as update:
        ctx.measure_all("baselines", [d for _, d in baselines], update)
        table.eval_float_nll = ctx.measure(baselines[0][1]).nll
        table.fit_alpha([(design, ctx.measure(design).nll) for _, design in baselines])
        table.save(table_path)


def explore(
    spec: StudySpec,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    workers: int = 1,
    executor: str = ExecutorKind.LOCAL.value,
    address: str | None = None,
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
        workers: with the local executor, parallel search processes on this machine; with
            `executor="ray"`, Ray actors (each loading the model once) for the model-bound
            stages, while the search runs in this process (its trials are cheap proxy
            evaluations, and one sampler keeps the seed's trial sequence).
        executor: `local` (default) or `ray` (`pip install 'quarch[ray]'`).
        address: the Ray cluster to join (`ray start --head` prints it); None starts a local one.
        progress: show progress bars and stage times on stderr.
        evaluate: replaces the proxy evaluation of search trials (a hook for other fidelities).
        device, dtype: where the model is measured (`cpu`, `cuda[:N]`, `mps`) and its weight
            dtype (None: bfloat16 on GPUs, float32 on the CPU).
        trusted_storage: use `spec.search.storage` even outside `out_dir` (the caller chose
            it; a study file's own storage must lie inside, see `_storage_policy`).
    """
    out = Path(out_dir)
    check_storage(spec.search.storage, out, trusted=trusted_storage)
    if executor != ExecutorKind.LOCAL.value and device != "cpu":
        # Ray actors load the model on their own CPU today (quarch.search._ray)
        raise ValueError(f"--device {device} is not supported with --executor {executor} yet")
    prog = Progress(progress)
    ctx = prepare(
        spec,
        out,
        prog,
        executor=executor,
        workers=workers,
        address=address,
        device=device,
        dtype=dtype,
    )
    try:
        return _explore(ctx, workers=workers, evaluate=evaluate)
    finally:
        ctx.executor.close()


def _explore(ctx: _Context, *, workers: int, evaluate: EvaluateFn | None) -> StudyResult:
    """Steps 4-6 of `explore` on a prepared context."""
    spec, out, prog = ctx.spec, ctx.out, ctx.progress
    evaluator = Evaluator(ctx.space, ctx.proxy, ctx.perf, spec.objectives, spec.constraints)
    url = study_url(spec, out)
    with prog.stage(f"search ({spec.search.sampler.value})", spec.search.trials) as update:
        study = run_search(
            name=spec.name,
            url=url,
            settings=spec.search,
            space=ctx.space,
            evaluator=evaluator,
            seeds=ctx.space.baselines(),
            workers=workers if ctx.executor.name == ExecutorKind.LOCAL.value else 1,
            progress=update,
            evaluate=evaluate,
        )
    write_yaml(out / "study.yaml", spec.to_dict())  # the stored study accepted this spec
    with prog.stage("scoring the stored trials"):
        points = _points(ctx, evaluator, study)
    proxy_front = _proxy_front(points, spec)
    with prog.stage("measuring the front (real perplexity)", len(proxy_front)) as update:
        ctx.measure_all("front", [p.design for p in proxy_front], update)
        for p in proxy_front:
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
        "executor": ctx.executor.name,
        "executor_workers": ctx.executor.workers,
        "stored_results": {k: dict(c.__dict__) for k, c in ctx.counts.items()},
    }
