"""Search quality: samplers and the exact solver against random sampling, and mixed designs
against uniform formats.

Both on the proxy objectives of the default study (the shipped SmolLM2-135M on an H100 SXM):
the sensitivity table, float NLL and α are read from a finished `quarch explore` output
directory (default `quarch-out/explore`, built by the README's main command); with none there,
this script runs the study's preparation first (model, table, baselines: minutes).

1. Hypervolume: each sampler runs the same number of trials from the same uniform-baseline
   seeds, for several seeds, in this one run; the hypervolume of each feasible front is taken
   with every objective divided by the float baseline's and the reference point at 1.1 × the
   worst uniform baseline (as `ExploreEnv` does). Samplers: random, NSGA-II, NSGA-III and
   `exact` (the exact front of the additive proxy, thinned to the trial budget, then NSGA-II);
   and the whole exact front on its own (no trial budget, deterministic). Printed: each run,
   and each sampler's hypervolume / random's over the seeds (mean, min-max), and the exact
   front's against NSGA-II's.
2. Mixed against uniform at equal bits: an NSGA-II search of the same weight slots (activations
   and KV cache kept float) for perplexity against bits per weight; for each uniform weight
   format, the lowest proxy perplexity of a mixed design with at most its bits per weight, and
   the fewest bits of a mixed design with at most its perplexity. When the output directory
   holds measured designs, the same comparison on measured perplexity.

    python benchmarks/bench_search.py [--out quarch-out/explore] [--trials 200] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from quarch.models import load_model_spec
from quarch.search import (
    Evaluator,
    PerfModel,
    ProxyTable,
    SearchSettings,
    build_space,
    default_study,
    hypervolume,
    layout_from_spec,
    prepare,
    run_search,
)
from quarch.search._exact import exact_front
from quarch.search._progress import Progress
from quarch.search._proxy import needed_entries
from quarch.search._runner import COMPLETE, MEMORY
from quarch.search._study import Sampler


def load_evaluator(out: Path) -> Evaluator:
    spec = default_study()
    table_path = out / "sensitivity.json"
    model_spec = load_model_spec("smollm2-135m")
    space = build_space(spec, layout_from_spec(model_spec))
    table = None
    if table_path.is_file():
        table = ProxyTable.from_dict(json.loads(table_path.read_text()))
        have = set(table.entries)
        if table.eval_float_nll is None or any(
            ProxyTable.key(s, c) not in have for s, c, _, _ in needed_entries(space)
        ):
            table = None
    if table is None:
        print(f"no finished default study in {out}; preparing one (model, table, baselines)")
        ctx = prepare(spec, out, Progress(True))
        table, space = ctx.proxy, ctx.space
        model_spec = ctx.perf.spec
    perf = PerfModel(space, model_spec, spec.scenarios)
    return Evaluator(space, table, perf, spec.objectives, spec.constraints)


def run(ev: Evaluator, sampler: Sampler, trials: int, seed: int) -> list[Any]:
    spec = default_study()
    settings = SearchSettings(
        sampler=sampler, trials=trials, seed=seed, population=spec.search.population
    )
    study = run_search(
        name=f"{sampler}-{seed}",
        url=MEMORY,
        settings=settings,
        space=ev.space,
        evaluator=ev,
        seeds=ev.space.baselines(),
    )
    return study.get_trials(deepcopy=False, states=COMPLETE)


def normaliser(ev: Evaluator) -> tuple[list[float], list[float]]:
    base = [ev.evaluate(d) for _, d in ev.space.baselines()]
    scale = [abs(v) or 1.0 for v in base[0].values]
    worst = [max(b.values[i] / scale[i] for b in base) for i in range(len(scale))]
    return scale, [1.1 * w for w in worst]


def front_hv(trials: list[Any], scale: list[float], ref: list[float]) -> float:
    pts = [
        [v / s for v, s in zip(t.values, scale, strict=True)]
        for t in trials
        if all(c <= 0 for c in t.constraints.values())
    ]
    return hypervolume(pts, ref)


def weights_only(ev: Evaluator) -> Evaluator:
    """The evaluator's space with activations and KV float, objectives perplexity and bits."""
    from quarch.search import study_from_dict

    data = default_study().to_dict()
    data["space"] = {**data["space"], "act": ["float"], "kv": ["float"]}
    data["objectives"] = ["ppl", "bits"]
    spec = study_from_dict(data)
    space = build_space(spec, ev.space.layout)
    perf = PerfModel(space, ev.perf.spec, spec.scenarios)
    return Evaluator(space, ev.proxy, perf, spec.objectives, spec.constraints)


def compare_uniform(ev: Evaluator, trials: int) -> None:
    wev = weights_only(ev)
    found = run(wev, Sampler.NSGA2, trials, 0)
    uniform = {d.key for _, d in wev.space.baselines()}
    rows = [
        wev.evaluate(wev.space.design(t.params)).metrics
        for t in found
        if t.user_attrs["key"] not in uniform
    ]
    print(
        f"\nmixed vs uniform at equal bits per weight (proxy perplexity; {len(rows)} mixed "
        f"designs from a {trials}-trial NSGA-II search of ppl against bits, A/KV float):"
    )
    print(
        f"  {'uniform':<12}{'bits':>6}{'ppl':>9} | {'best mixed at <= bits':>22}{'ppl':>9}"
        f"{'d ppl':>8} | {'fewest bits at <= ppl':>22}"
    )
    for name, d in wev.space.baselines():
        if not name.startswith("W "):
            continue
        m = wev.evaluate(d).metrics
        bits, ppl = float(m["bits"]), float(m["ppl"])
        under = [r for r in rows if r["bits"] <= bits + 1e-9]
        better = [r for r in rows if r["ppl"] <= ppl]
        best = min(under, key=lambda r: r["ppl"]) if under else None
        fewest = min(better, key=lambda r: r["bits"]) if better else None
        left = (
            f"{best['bits']:>22.2f}{best['ppl']:>9.3f}{best['ppl'] - ppl:>+8.3f}"
            if best
            else f"{'none':>22}{'':>17}"
        )
        right = f"{fewest['bits']:>22.2f}" if fewest else f"{'none':>22}"
        print(f"  {name[2:]:<12}{bits:>6.2f}{ppl:>9.3f} | {left} | {right}")
    uniform_rows = [wev.evaluate(d).metrics for _, d in wev.space.baselines()]
    exact = [e.metrics for e in exact_front(wev).evaluations]
    print(
        "  at a bits-per-weight budget, the best design of each kind within it (exact: the "
        f"exact solver's front, {len(exact)} designs):"
    )
    print(f"  {'budget':>8}{'best uniform':>26}{'best mixed':>26}{'exact':>26}")
    for budget in (4.5, 5.0, 5.5, 6.0, 7.0, 8.0):
        # 0.01: nvfp4's per-tensor scale puts it a hair above 4.5 bits
        best_u = min(
            (r for r in uniform_rows if r["bits"] <= budget + 0.01), key=lambda r: r["ppl"]
        )
        best_m = min(
            (r for r in rows if r["bits"] <= budget + 0.01), key=lambda r: r["ppl"], default=None
        )
        mixed = "none" if best_m is None else f"ppl {best_m['ppl']:.3f} at {best_m['bits']:.2f} b"
        uni = f"ppl {best_u['ppl']:.3f} at {best_u['bits']:.2f} b"
        best_x = min(
            (r for r in exact if r["bits"] <= budget + 0.01), key=lambda r: r["ppl"], default=None
        )
        ex = "none" if best_x is None else f"ppl {best_x['ppl']:.3f} at {best_x['bits']:.2f} b"
        print(f"  {budget:>8.2f}{uni:>26}{mixed:>26}{ex:>26}")
    _weights_only_hypervolume(wev, trials)


def _weights_only_hypervolume(wev: Evaluator, trials: int) -> None:
    """Hypervolume of ppl against bits (weights only): random, NSGA-II and the exact front."""
    scale, ref = normaliser(wev)
    exact = exact_front(wev)
    hv_exact = hypervolume(
        [[v / s for v, s in zip(e.values, scale, strict=True)] for e in exact.evaluations], ref
    )
    hv = {
        s: [front_hv(run(wev, s, trials, seed), scale, ref) for seed in range(3)]
        for s in (Sampler.RANDOM, Sampler.NSGA2)
    }
    print(
        f"  weights only, ppl vs bits, {trials} trials: hypervolume NSGA-II / random "
        f"{_ratio(hv[Sampler.NSGA2], hv[Sampler.RANDOM])}; exact front / random "
        f"{_ratio([hv_exact] * 3, hv[Sampler.RANDOM])}; exact front / NSGA-II "
        f"{_ratio([hv_exact] * 3, hv[Sampler.NSGA2])}"
    )


def _noise(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The paired 95 % interval of the NLL difference of two measured points, when both carry
    window NLLs of the same windows."""
    from quarch.eval import paired_interval

    wa, wb = a["measured"].get("window_nll") or [], b["measured"].get("window_nll") or []
    if not wa or len(wa) != len(wb):
        return ""
    iv = paired_interval(wa, wb)
    mark = "within noise" if iv.contains_zero else "separated"
    return f" d nll 95% [{iv.low:+.4f}, {iv.high:+.4f}] {mark}"


def compare_measured(out: Path) -> None:
    path = out / "points.json"
    if not path.is_file():
        return
    points = [p for p in json.loads(path.read_text()) if p.get("final") is not None]
    base = [p for p in points if p["baseline"] and p["name"].startswith("W ")]
    mixed = [p for p in points if not p["baseline"]]
    if not base or not mixed:
        return
    print(
        f"\nmeasured perplexity ({out}): uniform weight formats against the measured searched "
        "designs with at most their bits (which may also quantize activations and KV cache)"
    )
    for b in sorted(base, key=lambda p: p["final"]["bits"]):
        bits, ppl = b["final"]["bits"], b["final"]["ppl"]
        under = [p for p in mixed if p["final"]["bits"] <= bits + 1e-9]
        if not under:
            print(f"  {b['name'][2:]:<16}{bits:>6.2f}{ppl:>9.3f} | no measured design at ≤ bits")
            continue
        best = min(under, key=lambda p: p["final"]["ppl"])
        print(
            f"  {b['name'][2:]:<16}{bits:>6.2f}{ppl:>9.3f} | {best['name']:>8} "
            f"{best['final']['bits']:>6.2f}{best['final']['ppl']:>9.3f} "
            f"({best['final']['ppl'] - ppl:+.3f}){_noise(best, b)}"
        )


def _ratio(a: list[float], b: list[float]) -> str:
    """Per-seed ratios a/b: mean, min-max over seeds."""
    ratios = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    if not ratios:
        return "n/a"
    return (
        f"mean {statistics.mean(ratios):.4f} (min {min(ratios):.4f}, max {max(ratios):.4f}, "
        f"{len(ratios)} seeds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("quarch-out/explore"))
    parser.add_argument("--trials", type=int, default=default_study().search.trials)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    ev = load_evaluator(args.out)
    scale, ref = normaliser(ev)
    print(
        f"default study, proxy objectives {[o.key for o in ev.objectives]}, {args.trials} "
        f"trials per run, {len(ev.space.params)} params"
    )
    samplers = (Sampler.RANDOM, Sampler.NSGA2, Sampler.NSGA3, Sampler.EXACT)
    hv: dict[str, list[float]] = {s.value: [] for s in samplers}
    for seed in range(args.seeds):
        for sampler in samplers:
            t0 = time.perf_counter()
            trials = run(ev, sampler, args.trials, seed)
            value = front_hv(trials, scale, ref)
            hv[sampler.value].append(value)
            print(
                f"  seed {seed} {sampler.value:<7} hypervolume {value:.5f} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    t0 = time.perf_counter()
    exact = exact_front(ev)
    exact_hv = hypervolume(
        [[v / s for v, s in zip(e.values, scale, strict=True)] for e in exact.evaluations], ref
    )
    print(
        f"  exact front alone: {len(exact.designs)} designs ({exact.merged} merged), "
        f"hypervolume {exact_hv:.5f} ({time.perf_counter() - t0:.1f} s); largest relative "
        f"error of the group sum: {exact.decomposition_error}"
    )
    for name in ("nsga2", "nsga3", "exact"):
        ratio = _ratio(hv[name], hv["random"])
        print(f"hypervolume {name} / random at {args.trials} trials: {ratio}")
    print(
        f"hypervolume exact front / NSGA-II at {args.trials} trials: "
        f"{_ratio([exact_hv] * len(hv['nsga2']), hv['nsga2'])}"
    )
    compare_uniform(ev, args.trials)
    compare_measured(args.out)
    if not all(math.isfinite(v) for v in hv["nsga2"] + hv["random"]):
        raise SystemExit("hypervolume is not finite")


if __name__ == "__main__":
    main()
