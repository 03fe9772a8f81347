"""Files a study writes besides `result.json`: one QuantConfig per front point (from the live
space), and the front as CSV and JSON and every point as JSON (from the `StudyResult` alone)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quarch._atomic import atomic_open, write_text
from quarch.search._config import design_config
from quarch.search._metrics import METRICS, stored_value
from quarch.search._result import PointResult, StudyResult, write_json_atomic

if TYPE_CHECKING:
    from quarch.search._explore import Point
    from quarch.search._space import Design, DesignSpace
    from quarch.search._study import StudySpec


NOISE_COLUMNS = (
    "ppl_low",
    "ppl_high",
    "vs_float",
    "vs_float_low",
    "vs_float_high",
    "within_noise_of",
)
"""The interval columns of the front table (`_collect`'s noise marks): the measured
perplexity's 95 % interval, the ratio to float with its paired interval, and the front points
(and float) a point is within noise of (`;`-separated)."""


def noise_values(point: PointResult) -> dict[str, Any]:
    """A point's `NOISE_COLUMNS` (None where it was not measured, or measured without
    windows)."""
    m = point.measured or {}
    vs = m.get("vs_float") or {}
    same = m.get("within_noise_of")
    return {
        "ppl_low": m.get("ppl_low"),
        "ppl_high": m.get("ppl_high"),
        "vs_float": vs.get("ratio"),
        "vs_float_low": vs.get("low"),
        "vs_float_high": vs.get("high"),
        "within_noise_of": None if same is None else ";".join(same),
    }


def row_values(result: StudyResult, point: PointResult) -> dict[str, Any]:
    """The table's metrics of a point by metric key (measured perplexity where there is one;
    per-scenario metrics at the study's first scenario), plus `proxy_ppl` and the
    `NOISE_COLUMNS`."""
    scenario = result.scenarios[0]
    out: dict[str, Any] = {
        info.key: stored_value(point.metrics, info, scenario) for info in METRICS.values()
    }
    out["proxy_ppl"] = point.proxy.get("ppl")
    out.update(noise_values(point))
    return out


def _group_text(space: DesignSpace, design: Design, group: str) -> str:
    wa = design[space.weight_slot(group, "attn")]
    wm = design[space.weight_slot(group, "mlp")]
    text = f"W {wa}" if wa == wm else f"W attn {wa} mlp {wm}"
    act, kv = design[f"a.{group}"], design[f"kv.{group}"]
    if act != "float":
        text += f", A {act}"
    if kv != "float":
        text += f", KV {kv}"
    return text


def design_summary(space: DesignSpace, design: Design) -> str:
    """One line: per run of groups with the same choices, `layers: W …, A …, KV …` (float
    activations and KV cache left out)."""
    runs: list[tuple[list[int], str]] = []
    for g in space.groups:
        text = _group_text(space, design, g.name)
        if runs and runs[-1][1] == text and runs[-1][0][-1] + 1 == g.layers[0]:
            runs[-1][0].extend(g.layers)
        else:
            runs.append((list(g.layers), text))
    if len(runs) == 1 and len(runs[0][0]) == space.layout.num_layers:
        parts = [f"all layers: {runs[0][1]}"]
    else:
        parts = [f"L{r[0]}-{r[-1]}: {t}" if len(r) > 1 else f"L{r[0]}: {t}" for r, t in runs]
    if len(space.reference_hardware()) > 1 or space.hardware.template is not None:
        parts.append(hardware_label(space, design))
    return "; ".join(parts)


def hardware_label(space: DesignSpace, design: Design) -> str:
    """`device=h100-sxm`, or the template's `name=value` pairs."""
    return " ".join(f"{k}={v}" for k, v in space.hardware_values(design).items())


def config_name(point: Point) -> str:
    return f"{point.name.replace(' ', '_').replace('@', 'at')}-{point.key}.yaml"


CONFIG_HEAD = "# quarch explore: study "
"""The first line of every config `write_configs` writes (how `prune_configs` knows its own)."""


def write_configs(
    spec: StudySpec, space: DesignSpace, model_name: str, front: list[Point], out: Path
) -> dict[str, str]:
    """One QuantConfig YAML per front point in `out/configs`; their paths relative to `out`
    by design key."""
    folder = out / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for p in front:
        config = design_config(space, p.design, seed=spec.accuracy.seed)
        ppl, proxy_ppl = p.best.metrics["ppl"] or 0.0, p.proxy.metrics["ppl"] or 0.0
        head = [
            f"{CONFIG_HEAD}{spec.name!r}, model {model_name}, point {p.name} ({p.key})",
            f"# bits/weight {p.best.metrics['bits']:.3f}, measured ppl {ppl:.4f} "
            f"(proxy {proxy_ppl:.4f})",
            f"# {design_summary(space, p.design)}",
            "# apply with: quarch quantize --config THIS_FILE",
        ]
        path = folder / config_name(p)
        write_text(path, "\n".join(head) + "\n" + config.to_yaml())
        paths[p.key] = str(path.relative_to(out))
    return paths


def prune_configs(out: Path, keep: dict[str, str]) -> list[Path]:
    """Remove the configs of earlier fronts from `out/configs`: files that `write_configs`
    wrote (they start with `CONFIG_HEAD`) and that are not among `keep`'s paths (relative to
    `out`); a file the user put there stays. Returns the removed paths.

    Called after `result.json` names the new front, so that a kill at any moment leaves every
    config the stored result names in place."""
    folder = out / "configs"
    if not folder.is_dir():
        return []
    kept = {(out / p).resolve() for p in keep.values()}
    removed = []
    for path in sorted(folder.glob("*.yaml")):
        if path.resolve() in kept or not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
        if first.startswith(CONFIG_HEAD):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_tables(result: StudyResult, out: Path) -> None:
    """`front.csv`, `front.json` and `points.json` of a result."""
    _write_csv(result, out / "front.csv")
    rows = [{**p.to_dict(), "table": row_values(result, p)} for p in result.front_points]
    write_json_atomic(out / "front.json", rows)
    write_json_atomic(out / "points.json", [p.to_dict() for p in result.points])


def _write_csv(result: StudyResult, path: Path) -> None:
    keys = [info.key for info in METRICS.values()]
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "baseline", "config", *keys, "proxy_ppl", *NOISE_COLUMNS, "design"])
        for p in result.front_points:
            r = row_values(result, p)
            config = result.config_path(p) or p.config
            noise = [r[k] for k in NOISE_COLUMNS]
            w.writerow(
                [
                    p.name,
                    p.baseline,
                    config,
                    *[r[k] for k in keys],
                    r["proxy_ppl"],
                    *noise,
                    p.summary,
                ]
            )
