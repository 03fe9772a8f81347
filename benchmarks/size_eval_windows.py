"""How many eval windows the main job needs to tell its front designs apart.

Reads a finished `quarch explore` output directory (default `quarch-out/explore`, the README's
main command), re-measures float and every front design on the first `--windows` eval windows
(every window's mean NLL), and prints:

- the spread of the window NLL of float (what an unpaired interval would face), and of the
  paired per-window differences between designs adjacent on the front (sorted by bits) and
  between each design and float (what the paired intervals face);
- for each pair, the fewest windows whose 95 % paired t-interval half-width is below the pair's
  mean difference (`quarch.eval.windows_needed`).

The rule the main job's window count follows: the median over adjacent front pairs of the
windows needed, capped by the time budget (see the README-e notes). Windows cost time linearly:
each measured design runs every window once.

    python benchmarks/size_eval_windows.py [--out quarch-out/explore] [--windows 16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from quarch.eval import mean_interval, paired_interval, windows_needed
from quarch.search import StudyResult
from quarch.search._accuracy import AccuracyLab
from quarch.search._explore import load_study_model
from quarch.search._space import build_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("quarch-out/explore"))
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument(
        "--save", type=Path, default=None, help="keep each design's window NLLs here (resumes)"
    )
    args = parser.parse_args()
    result = StudyResult.load(args.out)
    spec = result.spec
    loaded = load_study_model(spec.model)
    settings = replace(spec.accuracy, eval_windows=args.windows)
    lab = AccuracyLab(loaded.model, loaded.tokenizer, settings)
    space = build_space(spec, lab.layout)
    points = [p for p in result.front_points]
    names = [p.name for p in points]
    if "float" not in names:
        points.insert(0, next(p for p in result.points if p.name == "float"))
    nlls: dict[str, tuple[float, ...]] = {}
    if args.save is not None and args.save.is_file():
        saved = json.loads(args.save.read_text())
        nlls = {k: tuple(v) for k, v in saved.items() if len(v) == args.windows}
    t0 = time.perf_counter()
    measured = 0
    for p in points:
        if p.name not in nlls:
            design = space.design({k: p.design[k] for k in (q.name for q in space.params)})
            nlls[p.name] = lab.measure(space, design).window_nll
            measured += 1
            if args.save is not None:
                args.save.write_text(json.dumps({k: list(v) for k, v in nlls.items()}))
        iv = mean_interval(nlls[p.name])
        print(
            f"  {p.name:<16} bits {p.metrics['bits']:6.2f}  ppl {math.exp(iv.mean):8.3f}  "
            f"window NLL sd {iv.sd:.4f}",
            flush=True,
        )
    per_design_s = (time.perf_counter() - t0) / max(measured, 1)
    print(
        f"{args.windows} windows of {settings.eval_seqlen} tokens; {per_design_s:.1f} s per "
        f"design, {per_design_s / args.windows:.2f} s per window-design"
    )
    ordered = sorted(points, key=lambda p: float(p.metrics["bits"] or 0.0))
    needed: list[int] = []
    print("adjacent front designs (by bits): paired difference of mean NLL")
    for a, b in itertools.pairwise(ordered):
        iv = paired_interval(nlls[a.name], nlls[b.name])
        n = windows_needed(iv.sd, iv.mean)
        needed.append(n)
        print(
            f"  {a.name:>14} - {b.name:<14} d {iv.mean:+.4f}  sd {iv.sd:.4f}  95% "
            f"[{iv.low:+.4f}, {iv.high:+.4f}]  windows needed {n}"
        )
    print("each design against float:")
    for p in ordered:
        if p.name == "float":
            continue
        iv = paired_interval(nlls[p.name], nlls["float"])
        print(
            f"  {p.name:>14} d {iv.mean:+.4f}  sd {iv.sd:.4f}  windows needed "
            f"{windows_needed(iv.sd, iv.mean)}"
        )
    if needed:
        print(f"median windows needed over adjacent pairs: {statistics.median(needed):.0f}")


if __name__ == "__main__":
    main()
