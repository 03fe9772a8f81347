"""Roofline plots of a prediction: each op placed by arithmetic intensity and attained FLOP/s.

The roofs are the device's datasheet peaks: one horizontal line per matrix format it runs
natively and one for its vector units, and one diagonal per memory level (bandwidth × intensity).
Each op instance sits at `x = FLOPs / bytes moved`, `y = FLOPs / its predicted time`; its
distance under the roofs is the efficiency, padding, conversion and overhead the model charged.
Ops that compute nothing (communication, embedding gathers) have no place on log axes and are
listed in the figure's note instead.

Output: interactive HTML through plotly (always), and PNG through plotly's `kaleido` engine
(which needs Chrome or Chromium on the machine) or, failing that, matplotlib when installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarch._atomic import atomic_path, writable_dir
from quarch.hardware import Hardware
from quarch.perf._predict import Prediction


@dataclass(frozen=True, kw_only=True)
class RooflinePoint:
    """One op on the roofline: `phase` (prefill / decode), intensity, attained rate, share."""

    phase: str
    name: str
    kind: str
    bound: str
    intensity_flops_per_byte: float
    attained_flops_per_s: float
    share: float  # of the phase's time
    why: str


def roofline_points(prediction: Prediction) -> tuple[list[RooflinePoint], list[str]]:
    """The ops that compute and move bytes, as points, and the names of those left out."""
    points, skipped = [], []
    for phase, ops in (("prefill", prediction.prefill), ("decode", prediction.decode)):
        total = sum(t.total_s for t in ops) or 1.0
        for t in ops:
            op = t.op
            if op.flops <= 0 or op.memory_bytes <= 0:
                skipped.append(op.name)
                continue
            points.append(
                RooflinePoint(
                    phase=phase,
                    name=op.name,
                    kind=op.kind.value,
                    bound=t.bound.value,
                    intensity_flops_per_byte=op.flops / op.memory_bytes,
                    attained_flops_per_s=op.flops / t.time_s,
                    share=t.total_s / total,
                    why=t.why,
                )
            )
    return points, skipped


def _roofs(hw: Hardware, x_lo: float, x_hi: float) -> list[dict[str, Any]]:
    """Line segments of the roofs over intensities [x_lo, x_hi] (log-spaced ends)."""
    top = max(hw.matrix_flops_per_s.values())
    by_peak: dict[float, list[str]] = {}
    for fmt, peak in hw.matrix_flops_per_s.items():
        by_peak.setdefault(peak, []).append(fmt)  # formats sharing a rate share a roof
    roofs = []
    for peak, fmts in sorted(by_peak.items(), reverse=True):
        name = f"{'/'.join(fmts)} {peak / 1e12:.4g} TFLOP/s"
        roofs.append({"name": name, "x": [x_lo, x_hi], "y": [peak, peak], "dash": "solid"})
    v = hw.vector_flops_per_s
    roofs.append(
        {"name": f"vector {v / 1e12:.4g} TFLOP/s", "x": [x_lo, x_hi], "y": [v, v], "dash": "dot"}
    )
    for level in hw.memory:
        bw = level.bytes_per_s
        x_top = min(x_hi, top / bw)
        roofs.append(
            {
                "name": f"{level.name} {bw / 1e12:.3g} TB/s",
                "x": [x_lo, x_top],
                "y": [bw * x_lo, bw * x_top],
                "dash": "dash",
            }
        )
    return roofs


def _range(points: list[RooflinePoint], hw: Hardware) -> tuple[float, float]:
    xs = [p.intensity_flops_per_byte for p in points] or [1.0]
    top = max(hw.matrix_flops_per_s.values())
    ridge = top / min(level.bytes_per_s for level in hw.memory)
    lo = 10 ** math.floor(math.log10(min(min(xs), 1.0)))
    hi = 10 ** math.ceil(math.log10(max(max(xs), ridge) * 2))
    return lo, hi


def roofline_figure(prediction: Prediction, hw: Hardware) -> Any:
    """A plotly figure: roofs, and each op as a marker sized by its share of the phase's time."""
    import plotly.graph_objects as go

    points, skipped = roofline_points(prediction)
    x_lo, x_hi = _range(points, hw)
    fig = go.Figure()
    for roof in _roofs(hw, x_lo, x_hi):
        fig.add_trace(
            go.Scatter(
                x=roof["x"],
                y=roof["y"],
                mode="lines",
                name=roof["name"],
                line={"dash": roof["dash"], "width": 1.5},
                hoverinfo="name",
            )
        )
    symbols = {"prefill": "circle", "decode": "diamond"}
    for phase in ("prefill", "decode"):
        mine = [p for p in points if p.phase == phase]
        fig.add_trace(
            go.Scatter(
                x=[p.intensity_flops_per_byte for p in mine],
                y=[p.attained_flops_per_s for p in mine],
                mode="markers",
                name=phase,
                marker={
                    "symbol": symbols[phase],
                    "size": [8 + 30 * math.sqrt(p.share) for p in mine],
                    "line": {"width": 1},
                },
                text=[f"{p.name} ({p.share:.0%} of {phase})<br>{p.why}" for p in mine],
                hoverinfo="text",
            )
        )
    sc = prediction.scenario
    title = (
        f"{prediction.model} on {hw.display_name}: batch {sc.batch}, prompt {sc.prompt_len}, "
        f"output {sc.output_len}, tp {sc.tp}, weights {sc.weight_format}, kv {sc.kv_format}"
    )
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        xaxis={"type": "log", "title": "arithmetic intensity (FLOP per byte of memory traffic)"},
        yaxis={"type": "log", "title": "attained FLOP/s"},
        template="plotly_white",
        width=1000,
        height=650,
    )
    if skipped:
        fig.add_annotation(
            text="not plotted (no FLOPs): " + ", ".join(sorted(set(skipped)))[:300],
            xref="paper",
            yref="paper",
            x=0,
            y=-0.14,
            showarrow=False,
            font={"size": 10},
            align="left",
        )
    return fig


def _png_matplotlib(prediction: Prediction, hw: Hardware, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, _ = roofline_points(prediction)
    x_lo, x_hi = _range(points, hw)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    styles = {"solid": "-", "dot": ":", "dash": "--"}
    for roof in _roofs(hw, x_lo, x_hi):
        ax.plot(roof["x"], roof["y"], styles[roof["dash"]], label=roof["name"], linewidth=1.2)
    for phase, marker in (("prefill", "o"), ("decode", "D")):
        mine = [p for p in points if p.phase == phase]
        ax.scatter(
            [p.intensity_flops_per_byte for p in mine],
            [p.attained_flops_per_s for p in mine],
            s=[20 + 300 * p.share for p in mine],
            marker=marker,
            label=phase,
            edgecolors="black",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of memory traffic)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(f"{prediction.model} on {hw.display_name}", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_roofline(
    prediction: Prediction, hw: Hardware, out_dir: str | Path, *, png: bool = True
) -> dict[str, str]:
    """Write `roofline.html` (and `roofline.png`) into `out_dir`.

    Returns:
        `{"html": path, "png": path, "png_engine": "kaleido" | "matplotlib"}`, or with
        `"png_error"` saying why no PNG could be written (neither engine works here).
    """
    out = writable_dir(out_dir)
    fig = roofline_figure(prediction, hw)
    html = out / "roofline.html"
    with atomic_path(html) as tmp:
        fig.write_html(tmp, include_plotlyjs=True)
    result = {"html": str(html)}
    if not png:
        return result
    path = out / "roofline.png"
    errors = []
    try:
        with atomic_path(path) as tmp:
            fig.write_image(tmp)
        return result | {"png": str(path), "png_engine": "kaleido"}
    except Exception as err:  # kaleido missing, or no Chrome for it to drive
        errors.append(f"kaleido: {err}".splitlines()[0])
    try:
        _png_matplotlib(prediction, hw, path)
        return result | {"png": str(path), "png_engine": "matplotlib"}
    except ImportError as err:
        errors.append(f"matplotlib: {err}")
    return result | {"png_error": "; ".join(errors)}
