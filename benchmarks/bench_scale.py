"""Scaling of a study's model-bound stages over workers: the local executor against Ray with
N = 1, 2, … actors.

For each executor the same work is timed, from an empty result store each time (nothing is
reused): the workers' start (Ray: starting the instance and every actor loading the model, in
parallel; every worker then runs the float model once, so no stage pays a first forward pass),
the sensitivity table (every cell and the float base), the uniform baselines measured on the
eval windows, and `--front` designs of the space drawn with a fixed seed measured the same way
(what the front stage measures). Printed: seconds per stage and each stage's speed-up over Ray
with one actor and over the local executor on one thread, all measured in this run.

The local executor runs in this process with PyTorch's default intra-op threads (one per core);
a Ray actor asks for one CPU, and Ray sets `OMP_NUM_THREADS` to it, so each actor computes on
one thread (https://docs.ray.io/en/latest/ray-core/scheduling/resources.html, "Ray sets
OMP_NUM_THREADS=<num_cpus>"). Ray with N actors on an N-core machine is therefore N
single-threaded processes against one N-threaded process: the speed-up over local is what
process parallelism gains over intra-op threads on these matrix sizes, and Ray with N = 1 shows
the price of one thread. The row `local 1t` is the local executor on one thread (this script
sets it for its own process), which separates the two effects. On a machine whose cores are
busy with other work, intra-op threads wait on each other and multi-threaded small matrix
products slow down sharply (oversubscription; PyTorch's CPU threading notes,
https://pytorch.org/docs/stable/notes/cpu_threading_torchscript_inference.html), which the
`local` row then shows.

    python benchmarks/bench_scale.py [--study STUDY.yaml] [--workers 1,2] [--front 6]
    python benchmarks/bench_scale.py --study benchmarks/bench_scale.yaml --no-local-threads
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import torch

from quarch.search import default_study, load_study
from quarch.search._accuracy import AccuracyLab
from quarch.search._executor import (
    Executor,
    LocalExecutor,
    Measure,
    StageWorker,
    model_fingerprint,
)
from quarch.search._explore import load_study_model
from quarch.search._runner import MEMORY, storage
from quarch.search._space import Design, DesignSpace, build_space
from quarch.search._stages import measure_stage, sensitivity_stage
from quarch.search._stored import ResultStore

STAGES = ("start", "sensitivity", "baselines", "front")


def _noop(*_: Any, **__: Any) -> None:
    pass


def random_designs(space: DesignSpace, n: int, seed: int = 0) -> list[Design]:
    """`n` distinct designs of the space, each sampled param drawn uniformly."""
    rng = random.Random(seed)
    out: dict[str, Design] = {}
    while len(out) < n:
        values = {p.name: rng.choice(p.choices) for p in space.params}
        design = space.design(values)
        out[design.key] = design
    return list(out.values())


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_stages(worker: StageWorker, executor: Executor, designs: list[Design]) -> dict[str, float]:
    """Seconds per stage on `executor`, from an empty in-memory result store."""
    store = ResultStore.for_storage(storage(MEMORY))
    lab, space, mid = worker.lab, worker.space, worker.model_id
    kw = {"store": store, "executor": executor, "model_id": mid, "update": _noop}
    baselines = [d for _, d in space.baselines()]
    # the float model measured once on each worker (no result kept, nothing quantized, so no
    # worker's weight cache is warmed): its first forward pass is paid at start, not by a stage
    warm = [Measure(baselines[0])] * executor.workers
    times = {"start": timed(lambda: list(executor.run(warm)))}
    times["sensitivity"] = timed(
        lambda: sensitivity_stage(lab, space, signal="kl", **kw)  # type: ignore[arg-type]
    )
    times["baselines"] = timed(lambda: measure_stage(lab, space, baselines, **kw))  # type: ignore[arg-type]
    times["front"] = timed(lambda: measure_stage(lab, space, designs, **kw))  # type: ignore[arg-type]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", help="study YAML (default: the built-in study, shipped model)")
    parser.add_argument("--workers", default="1,2", help="Ray actor counts, comma-separated")
    parser.add_argument("--front", type=int, default=6, help="front designs measured")
    parser.add_argument(
        "--no-local-threads",
        dest="local_threads",
        action="store_false",
        help="skip the local run on PyTorch's default threads (slow on a busy machine)",
    )
    args = parser.parse_args()
    spec = load_study(args.study) if args.study else default_study()
    t0 = time.perf_counter()
    loaded = load_study_model(spec.model)
    lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
    space = build_space(spec, lab.layout)
    worker = StageWorker(lab, space, model_fingerprint(loaded, lab.layout))
    print(f"model {spec.model}: loaded in {time.perf_counter() - t0:.1f} s in this process")
    designs = random_designs(space, args.front)

    def fresh() -> LocalExecutor:  # a new lab: empty weight cache and float statistics
        lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
        return LocalExecutor(StageWorker(lab, space, worker.model_id))

    results: dict[str, dict[str, float]] = {}
    if args.local_threads:
        results["local"] = run_stages(worker, fresh(), designs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this script's own process only: what a Ray actor computes on
    try:
        results["local 1t"] = run_stages(worker, fresh(), designs)
    finally:
        torch.set_num_threads(threads)
    from quarch.search._ray import RayExecutor

    for n in (int(w) for w in args.workers.split(",")):
        ex = RayExecutor(spec, workers=n, model_id=worker.model_id)
        try:
            results[f"ray N={n}"] = run_stages(worker, ex, designs)
        finally:
            ex.close()
    ray1 = results.get("ray N=1")
    print(f"\n{'executor':<10}" + "".join(f"{s:>13}" for s in STAGES) + f"{'stages':>10}")
    for name, t in results.items():
        work = sum(t[s] for s in STAGES[1:])
        print(f"{name:<10}" + "".join(f"{t[s]:>12.1f}s" for s in STAGES) + f"{work:>9.1f}s")
    for ref_name, ref in (("ray N=1", ray1), ("local 1t", results["local 1t"])):
        if ref is None:
            continue
        print(f"\nspeed-up over {ref_name} (its seconds / these seconds):")
        for name, t in results.items():
            ratios = "".join(f"{ref[s] / t[s]:>12.2f}x" for s in STAGES[1:])
            work = sum(ref[s] for s in STAGES[1:]) / sum(t[s] for s in STAGES[1:])
            print(f"{name:<10}{'':>13}{ratios}{work:>9.2f}x")


if __name__ == "__main__":
    main()
