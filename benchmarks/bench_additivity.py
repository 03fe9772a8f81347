"""Where the proxy's sum fails on the default study, and what pair terms correct.

Reads a finished `quarch explore` output directory (default `quarch-out/explore`), loads the
model, and for the measured designs of its front plus `--random` random designs of the space:

1. the additivity check (`quarch.search._additivity.check_additivity`) on the sensitivity
   windows: per layer group, the sum of its slot costs against the group measured alone; across
   groups, the whole design against the sum of its measured groups;
2. pair terms measured for the within-group pairs of those designs (`measure_pairs`), and the
   proxy's error against the measured eval perplexity of the front designs, before and after.

    python benchmarks/bench_additivity.py [--out quarch-out/explore] [--random 4]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from quarch.search import StudyResult
from quarch.search._accuracy import AccuracyLab
from quarch.search._additivity import check_additivity, measure_pairs
from quarch.search._explore import load_study_model
from quarch.search._proxy import ProxyTable
from quarch.search._space import Design, build_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("quarch-out/explore"))
    parser.add_argument("--random", type=int, default=4)
    args = parser.parse_args()
    result = StudyResult.load(args.out)
    spec = result.spec
    table = ProxyTable.from_dict(json.loads((args.out / "sensitivity.json").read_text()))
    table.pairs = {}
    loaded = load_study_model(spec.model)
    lab = AccuracyLab(loaded.model, loaded.tokenizer, spec.accuracy)
    space = build_space(spec, lab.layout)
    names = [p.name for p in space.params]
    front = [p for p in result.front_points if not p.baseline]
    designs = [space.design({k: p.design[k] for k in names}) for p in front]
    rng = random.Random(0)
    for _ in range(args.random):
        designs.append(space.design({p.name: rng.choice(p.choices) for p in space.params}))
    t0 = time.perf_counter()
    report = check_additivity(lab, space, table, designs)
    print(
        f"additivity on the sensitivity windows ({table.signal}), {len(designs)} designs "
        f"({len(front)} front, {args.random} random), {time.perf_counter() - t0:.0f} s"
    )
    for g in report.groups:
        print(
            f"  group {g.group:<8} {g.designs} designs: measured / sum of slots "
            f"{g.ratio:.3f}, largest relative error {g.max_rel_error:.3f}"
        )
    print(f"  across groups: whole / sum of measured groups {report.cross_group_ratio:.3f}")
    for d, w, gs, ss in zip(
        designs, report.whole_measured, report.groups_sum, report.slots_sum, strict=True
    ):
        print(f"    {d.key} whole {w:.4f}  groups {gs:.4f}  slots {ss:.4f}")
    _proxy_vs_measured(front, designs, table, "before pair terms")
    t0 = time.perf_counter()
    new = measure_pairs(lab, space, table, designs[: len(front)])
    print(f"{len(new)} pair terms measured ({time.perf_counter() - t0:.0f} s); largest:")
    for key, (dn, kl) in sorted(new.items(), key=lambda kv: -abs(kv[1][1]))[:5]:
        print(f"    {key}: KL {kl:+.4f}  d NLL {dn:+.4f}")
    _proxy_vs_measured(front, designs, table, "after pair terms")


def _proxy_vs_measured(
    front: list[Any], designs: list[Design], table: ProxyTable, when: str
) -> None:
    errs = []
    for p, d in zip(front, designs, strict=False):
        real = float(p.final["ppl"])
        errs.append(abs(table.proxy_ppl(d) - real) / real)
    if errs:
        print(
            f"  proxy vs measured eval perplexity of the front ({when}): mean |rel error| "
            f"{sum(errs) / len(errs):.4f}, max {max(errs):.4f}"
        )
    else:
        print(f"  no measured front designs ({when})")


if __name__ == "__main__":
    main()
