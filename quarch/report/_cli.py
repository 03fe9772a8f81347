"""`quarch explore` and `quarch report`: the search, then its report (the layer above both
`quarch.search` and `quarch.report`, so neither package imports the other's CLI needs).

`explore` runs the study (`quarch.search.explore`, which stores `result.json`), draws
`report.html` from the returned `StudyResult` and prints the front table. `report OUT_DIR`
redraws the report and the table from the stored result alone: no model, no torch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarch._cli_util import DeviceOption, DtypeOption, user_errors

if TYPE_CHECKING:
    from quarch.search import StudyResult

_HELP = (
    "Search per-layer-group weight, activation and KV formats (and methods) for the Pareto front "
    "of perplexity against latency, memory, energy and cost on the target hardware; write the "
    "front, one QuantConfig YAML per front design and an HTML report. With no options: the "
    "shipped SmolLM2-135M on an H100 SXM. Re-running the same command resumes the study."
)


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def study_data(study: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The study's YAML mapping (or {}), with command-line overrides laid over it."""
    from quarch.search import read_study_file

    data: dict[str, Any] = {} if study is None else read_study_file(study)
    for path, value in overrides.items():
        if value is None:
            continue
        node = data
        *heads, last = path.split(".")
        for h in heads:
            node = node.setdefault(h, {})
            if not isinstance(node, dict):
                raise TypeError(f"{path}: {h} in the study file is not a mapping")
        node[last] = value
    return data


def _scenario_overrides(
    data: dict[str, Any], batch: int | None, prompt: int | None, output: int | None
) -> None:
    if batch is None and prompt is None and output is None:
        return
    scenarios = data.get("scenarios") or [{"name": "serve"}]
    if not isinstance(scenarios, list) or not scenarios or not isinstance(scenarios[0], dict):
        raise TypeError("scenarios: expected a list of mappings")
    first = scenarios[0]
    for key, value in (("batch", batch), ("prompt_len", prompt), ("output_len", output)):
        if value is not None:
            first[key] = value
    data["scenarios"] = scenarios


def register(app: typer.Typer) -> None:
    """Add `explore` and `report` to the `quarch` app."""
    _register_explore(app)
    _register_report(app)


def _console() -> Any:
    import sys

    from rich.console import Console

    # piped output: wide enough for the front table on one line per design
    return Console() if sys.stdout.isatty() else Console(width=170)


def _register_explore(app: typer.Typer) -> None:

    @app.command("explore", help=_HELP)
    def explore_cmd(
        study: Annotated[Path | None, typer.Argument(help="study YAML file")] = None,
        out: Annotated[Path, typer.Option(help="output directory")] = Path("quarch-out/explore"),
        model: Annotated[
            str | None, typer.Option(help="shipped | tiny-llama|moe|mla | path | hub id")
        ] = None,
        hw: Annotated[str | None, typer.Option(help="devices, comma-separated")] = None,
        engine: Annotated[
            str | None, typer.Option(help="serving engine: ideal | vllm | sglang | tensorrt-llm")
        ] = None,
        trials: Annotated[int | None, typer.Option(help="trials in all")] = None,
        sampler: Annotated[
            str | None, typer.Option(help="nsga2 | nsga3 | gp | tpe | random | grid | exact")
        ] = None,
        seed: Annotated[int | None, typer.Option(help="sampler seed")] = None,
        workers: Annotated[
            int, typer.Option(help="search processes (local) or Ray actors (--executor ray)")
        ] = 1,
        executor: Annotated[
            str, typer.Option(help="where model-bound stages run: local | ray")
        ] = "local",
        address: Annotated[
            str | None, typer.Option(help="Ray cluster address (default: a local one)")
        ] = None,
        storage: Annotated[str | None, typer.Option(help="database URL")] = None,
        allow_storage: Annotated[
            bool,
            typer.Option(
                "--allow-storage", help="use the study file's search.storage outside --out"
            ),
        ] = False,
        objectives: Annotated[str | None, typer.Option(help="e.g. ppl,tpot,memory")] = None,
        groups: Annotated[int | None, typer.Option(help="equal layer groups")] = None,
        weights: Annotated[str | None, typer.Option(help="weight choices, comma-sep")] = None,
        acts: Annotated[str | None, typer.Option(help="activation choices")] = None,
        kv: Annotated[str | None, typer.Option(help="KV-cache choices")] = None,
        methods: Annotated[str | None, typer.Option(help="weight methods, e.g. rtn,gptq")] = None,
        batch: Annotated[int | None, typer.Option(help="first scenario's batch")] = None,
        prompt: Annotated[int | None, typer.Option(help="first scenario's prompt length")] = None,
        output: Annotated[int | None, typer.Option(help="first scenario's output length")] = None,
        tpot_slo: Annotated[float | None, typer.Option(help="TPOT limit, seconds")] = None,
        ppl_max_increase: Annotated[
            float | None, typer.Option(help="perplexity at most float × (1 + this)")
        ] = None,
        device: DeviceOption = "cpu",
        dtype: DtypeOption = None,
        no_report: Annotated[bool, typer.Option("--no-report", help="skip report.html")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the front as JSON")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", help="no progress bars")] = False,
    ) -> None:
        from quarch.report import write_report
        from quarch.search import explore, study_from_dict

        console = _console()
        overrides = {
            "model": model,
            "hardware.devices": _csv(hw),
            "engine": engine,
            "search.trials": trials,
            "search.sampler": sampler,
            "search.seed": seed,
            "search.storage": storage,
            "objectives": _csv(objectives),
            "space.groups": groups,
            "space.weight": _csv(weights),
            "space.act": _csv(acts),
            "space.kv": _csv(kv),
            "space.methods": _csv(methods),
            "constraints.tpot_slo_s": tpot_slo,
            "constraints.ppl_max_increase": ppl_max_increase,
        }
        t0 = time.perf_counter()
        with user_errors(ImportError):  # a storage whose database driver is missing
            data = study_data(study, overrides)
            _scenario_overrides(data, batch, prompt, output)
            spec = study_from_dict(data)
            result = explore(
                spec,
                out,
                workers=workers,
                executor=executor,
                address=address,
                progress=not quiet,
                device=device,
                dtype=dtype,
                trusted_storage=storage is not None or allow_storage,
            )
            report = None if no_report else write_report(result)
        wall = time.perf_counter() - t0
        if as_json:
            print(json.dumps(_front_json(result), indent=1, default=str))
            return
        _summary(console, result, report)
        console.print(
            f"done in {wall:.0f} s; run the same command again to resume or extend "
            f"(storage: {out / 'study.db'} unless --storage is given)."
        )


def _register_report(app: typer.Typer) -> None:
    @app.command(
        "report",
        help="Redraw report.html and print the front table of a finished `quarch explore` "
        "study from its stored result.json (no model is loaded).",
    )
    def report_cmd(
        out_dir: Annotated[Path, typer.Argument(help="the study's output directory")],
        no_report: Annotated[
            bool, typer.Option("--no-report", help="print only, keep report.html")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the front as JSON")] = False,
    ) -> None:
        from quarch.report import write_report
        from quarch.search import StudyResult

        console = _console()
        with user_errors():
            result = StudyResult.load(out_dir)
            report = None if no_report else write_report(result)
        if as_json:
            print(json.dumps(_front_json(result), indent=1, default=str))
            return
        _summary(console, result, report)


def _front_json(result: StudyResult) -> list[dict[str, Any]]:
    """The front's points as JSON rows, each with its table metrics by key."""
    from quarch.search import METRICS, stored_value

    scenario = result.scenarios[0]
    rows = []
    for p in result.front_points:
        table = {i.key: stored_value(p.metrics, i, scenario) for i in METRICS.values()}
        table["proxy_ppl"] = p.proxy.get("ppl")
        rows.append({**p.to_dict(), "metrics": p.metrics, "table": table})
    return rows


def _summary(console: Any, result: StudyResult, report: Path | None) -> None:
    from quarch.report import front_table
    from quarch.report._html import percent

    console.print(front_table(result))
    err = result.proxy_error
    console.print(
        f"{len(result.front)} designs on the front out of {len(result.points)} evaluated "
        f"({result.trials} trials); proxy perplexity error on the measured front: mean "
        f"{percent(err['mean_abs_rel'])}, max {percent(err['max_abs_rel'])}."
    )
    out = result.out_dir or Path(".")
    console.print(
        f"QuantConfig per front design: [bold]{out / 'configs'}[/bold]/ "
        f"(apply with `quarch quantize --config FILE`)"
    )
    console.print(f"front table: {out / 'front.csv'}   all points: {out / 'points.json'}")
    excluded = sum(1 for p in result.points if p.excluded)
    if excluded:
        console.print(
            f"{excluded} designs excluded: engine {result.study.get('engine')} has no kernel for "
            "them on their device (reasons in points.json and the report)"
        )
    if report is not None:
        console.print(f"report: [bold green]{report}[/bold green] (opens offline)")
